"""`facesrv reembed` on real photos, both databases: a model change re-embeds every kept face,
searches answer throughout and after with the same candidates, a face whose image was not kept
is reported and left out by the new model, a killed run resumes, a finished one does nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from app.cli import main
from app.config import get_settings
from app.db.models import Face, Image, IndexChange
from app.db.session import session_scope
from app.services.confidence import get_confidence_map
from app.services.detection import get_analyzer
from app.services.reembed import NOT_KEPT, Progress, calibration_note, reembed
from app.vision.manifest import load_manifest
from tests.conftest import Credentials, forget_process_state
from tests.photos import celeba_identities
from tests.utils.api import detect_face, post, reply

RENAMED = "w600k_mbf_renamed.onnx"


def call(client: TestClient, creds: Credentials, path: str, **body: object) -> dict:
    answer = reply(post(client, path, creds, **body))
    assert answer["_code"] == 200, answer
    return answer


class Stop(Exception):
    """Kills a run between two batches, as a Ctrl-C or an OOM kill would."""


def renamed_manifest(tmp_path: Path) -> tuple[Path, Path]:
    """The same recognition weights under another file name: another model to the store."""
    source = load_manifest(get_settings().model_manifest)
    models = tmp_path / "models-new"
    models.mkdir()
    for spec in source.models.values():
        (models / spec.file).symlink_to(get_settings().models_dir / spec.file)
    shutil.copyfile(get_settings().models_dir / source.models["recognition"].file, models / RENAMED)
    raw = json.loads(get_settings().model_manifest.read_text())
    raw["models"]["recognition"]["file"] = RENAMED
    manifest = tmp_path / "manifest-new.json"
    manifest.write_text(json.dumps(raw))
    return manifest, models


def face_rows(public_ids: list[str]) -> dict[str, tuple]:
    with session_scope() as db:
        rows = db.execute(
            select(
                Face.public_id, Face.embedding_model, Face.embedding, Face.alt_embedding_model
            ).where(Face.public_id.in_(public_ids))
        ).all()
    return {row[0]: tuple(row[1:]) for row in rows}


def log_length() -> int:
    with session_scope() as db:
        return db.scalar(select(func.count()).select_from(IndexChange))


def test_reembed_after_model_change(
    client: TestClient, account: Credentials, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACESRV_KEEP_IMAGES", "1")
    get_settings.cache_clear()
    old_model = load_manifest(get_settings().model_manifest).models["recognition"].identity
    trios = [images[:3] for images in list(celeba_identities().values())[:3]]
    faces = [[detect_face(client, account, image) for image in trio] for trio in trios]
    every = [face for trio in faces for face in trio]
    stale = faces[2][1]  # detected as if FACESRV_KEEP_IMAGES had been off
    with session_scope() as db:
        image_id = db.scalar(select(Face.image_id).where(Face.public_id == stale))
        db.execute(update(Image).where(Image.id == image_id).values(data=None))
    assert {row[0] for row in face_rows(every).values()} == {old_model}

    faceset = call(client, account, "/faceset/create", name="all", face_id=every)["faceset_id"]
    persons = [
        call(client, account, "/person/create", name=f"p{i}", face_id=trio[:2])["person_id"]
        for i, trio in enumerate(faces)
    ]
    group = call(client, account, "/group/create", name="g", person_id=persons)["group_id"]
    probes = [trio[2] for trio in faces]

    def answers() -> tuple[list[list[str]], list[list[str]]]:
        searched = [
            [
                c["face_id"]
                for c in call(
                    client, account, "/face/search", face_id=p, faceset_id=faceset, top=4
                )["candidates"]
            ]
            for p in probes
        ]
        identified = [
            [
                c["person_id"]
                for c in call(client, account, "/face/identification", face_id=p, group_id=group)[
                    "candidates"
                ]
            ]
            for p in probes
        ]
        return searched, identified

    before = answers()
    assert stale in {face for found in before[0] for face in found}
    manifest, models = renamed_manifest(tmp_path)
    target = load_manifest(manifest).models["recognition"].identity
    assert target != old_model
    note, fits = calibration_note(load_manifest(manifest))
    assert fits and "the same weights" in note

    # A run killed after its first batch: nothing switched, searches unchanged.
    seen: list[Progress] = []

    def killed(progress: Progress) -> None:
        seen.append(progress)
        assert answers() == before  # the server (old model) answers between batches
        raise Stop

    log_before = log_length()
    with pytest.raises(Stop):
        reembed(manifest, models, api_id=account.api_id, batch_size=2, progress=killed)
    rows = face_rows(every)
    prepared = [face for face, row in rows.items() if row[2] == target]
    assert len(prepared) == seen[0].done == 2
    assert {row[0] for row in rows.values()} == {old_model}  # nothing switched yet
    assert log_length() == log_before
    assert answers() == before

    # The rerun resumes: computes only what is left, answers between batches, then switches.
    during: list[Progress] = []

    def watched(progress: Progress) -> None:
        during.append(progress)
        assert answers() == before

    report = reembed(manifest, models, api_id=account.api_id, batch_size=2, progress=watched)
    assert report.computed == len(every) - 1 - len(prepared)
    assert len(during) >= 2 and during[-1].done == report.computed
    assert report.switched == len(every) - 1
    assert [(s.face_id, s.reason, s.model) for s in report.stale] == [(stale, NOT_KEPT, old_model)]
    rows = face_rows(every)
    for face, (model, _, alt_model) in rows.items():
        if face == stale:
            assert (model, alt_model) == (old_model, None)
        else:
            assert (model, alt_model) == (target, old_model)
    assert log_length() > log_before  # every switched member logged for every worker
    assert answers() == before  # a server still on the old model answers as before

    # Restart on the new manifest: same candidates, less the face the new model cannot compare.
    monkeypatch.setenv("FACESRV_MODEL_MANIFEST", str(manifest))
    monkeypatch.setenv("FACESRV_MODELS_DIR", str(models))
    forget_process_state()
    get_analyzer.cache_clear()
    get_confidence_map.cache_clear()
    try:
        searched, identified = answers()
        assert identified == before[1]
        for new, old in zip(searched, before[0], strict=True):
            kept = [face for face in old if face != stale]
            assert new[: len(kept)] == kept  # the stale face's place goes to the next one
            assert stale not in new
        refused = reply(post(client, "/face/search", account, face_id=stale, faceset_id=faceset))
        assert (refused["_code"], refused["status"]) == (400, "INVALID_FACE")
        second = reply(
            post(client, "/face/verification", account, face_id=probes[0], face2_id=stale)
        )
        assert (second["_code"], second["status"]) == (400, "INVALID_FACE2")
        assert "not kept" in second["reason"]
        fresh = detect_face(client, account, trios[0][0])
        assert face_rows([fresh])[fresh][0] == target  # new faces record the model at detection

        # Done: a rerun (through the command) computes and switches nothing, logs nothing.
        embeddings = {face: row[1] for face, row in face_rows(every).items()}
        log_after = log_length()
        report_file = tmp_path / "stale.jsonl"
        rerun = ["reembed", "--account", account.api_id, "--batch-size", "2"]
        assert main([*rerun, "--report", str(report_file)]) == 0
        assert {face: row[1] for face, row in face_rows(every).items()} == embeddings
        assert log_length() == log_after
        lines = [json.loads(line) for line in report_file.read_text().splitlines()]
        assert [(line["face_id"], line["reason"]) for line in lines] == [(stale, NOT_KEPT)]
    finally:
        get_analyzer.cache_clear()
        get_confidence_map.cache_clear()


def test_calibration_of_another_model_is_said_loudly(tmp_path: Path) -> None:
    """New weights under the old knots: a warning naming both models, and no refit."""
    raw = json.loads(get_settings().model_manifest.read_text())
    raw["models"]["recognition"].update(file="other.onnx", sha256="ab" * 32)
    other = tmp_path / "other.json"
    other.write_text(json.dumps(raw))
    note, fits = calibration_note(load_manifest(other))
    assert not fits
    assert note.startswith("WARNING") and "NOT for the new model other.onnx@abab" in note
    assert "w600k_mbf.onnx" in note and "Nothing was refitted" in note
    assert (
        load_manifest(other).calibration.knots
        == load_manifest(get_settings().model_manifest).calibration.knots
    )
    del raw["calibration"]["fitted_for"]
    other.write_text(json.dumps(raw))
    note, fits = calibration_note(load_manifest(other))
    assert not fits and "does not say which model" in note

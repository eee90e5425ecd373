"""Fits the attribute rules on MTFL and CelebA and prints the held-out report.

Reproduces `app/vision/attribute_coefficients.json`:
- smile / eyeglass / sunglass from the shared MTFL training set (`../shared/data/mtfl-train`,
  10,000 faces of 80x80 px), with accuracy and AUC on a held-out part, plus the gender network and
  the expression network's `happy` against MTFL's smile label (neither is fitted here);
- attractive / eye_open / mouth_open from the 288 CelebA photos with labels
  (`../shared/data/celeba-dev/attributes.tsv`), with AUC from identity-grouped cross-validation,
  attractive's AUC within each gender and age group, and every other attribute and emotion that
  a CelebA label can check; the screaming and confused ramps are placed on the measured spread of
  mouth gap and brow height (there is no label for either).

    .venv/bin/python bench/fit_attributes.py            # ~5 min of extraction on 2 cores, cached
    .venv/bin/python bench/fit_attributes.py --no-write # report only, JSON untouched

Preparation, identical to what tests/vision/test_attributes.py does: each 80x80 image is upscaled
2x (bicubic, 160 px: SCRFD finds nearly every face there, and the 106-point model sees a face of
the size it was trained on), then run through `FaceAnalyzer.analyze` exactly as the server runs it;
the largest face is kept. Faces the detector misses are dropped and counted.

Split: a face is held out when the SHA-1 of its *source key* falls in the last quarter: the person
name for lfw_5590 (each name appears once here, and never in net_7876 as far as names tell), the
source photo id for net_7876 (`123_0_0.jpg` and `_-20_123_0.jpg` are faces of photo 123, so
all faces of one photo land on the same side).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

from app.config import get_settings
from app.vision import attributes as rules
from app.vision.geometry import apply_affine
from app.vision.pipeline import FaceAnalyzer

REPO = Path(__file__).resolve().parents[1]
MTFL = REPO.parent / "shared" / "data" / "mtfl-train"
CELEBA = REPO.parent / "shared" / "data" / "celeba-dev"
CACHE = Path("/tmp/facesrv_mtfl_features.npz")
CELEBA_CACHE = Path("/tmp/facesrv_celeba_features.npz")
# The expression network's classes by SenseTime name, the column order of `expression` above.
EXPRESSIONS = ("angry", "disgust", "scared", "happy", "sad", "surprised", "calm")
UPSCALE = 2
HOLDOUT_FRACTION = 0.25
FOLDS = 5
# Eye-band darkness at which the sunglass ramp is 1/2, and its width: chosen from the darkness
# distribution of MTFL faces with and without glasses and a look at the darkest crops (see
# docs/attributes.md): clear glasses and bare eyes sit at 0.6-0.9, dark lenses below ~0.45.
SUNGLASS_RULE = {"darkness_half": 0.45, "darkness_width": 0.04}
PENALTIES = (0.01, 0.1, 1.0, 10.0, 100.0)  # L2 strengths tried, chosen by cross-validated AUC


@dataclass(frozen=True)
class Label:
    """One line of MTFL's labels.txt (the 5 points are in the original photo's frame: unused)."""

    path: str  # relative, forward slashes
    male: bool
    smile: bool
    glasses: bool

    @property
    def source_key(self) -> str:
        """Person (lfw) or source photo (net): faces sharing it must not straddle the split."""
        folder, name = self.path.split("/")
        stem = name.removesuffix(".jpg")
        if folder == "lfw_5590":
            return "lfw:" + stem.rsplit("_", 1)[0]
        parts = stem.split("_")
        return "net:" + (parts[2] if stem.startswith("_") else parts[0])

    @property
    def held_out(self) -> bool:
        digest = hashlib.sha1(self.source_key.encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2**32 >= 1 - HOLDOUT_FRACTION


def read_labels(root: Path = MTFL) -> list[Label]:
    labels = []
    for line in (root / "labels.txt").read_text().splitlines():
        fields = line.split()
        if len(fields) < 15:
            continue
        labels.append(
            Label(
                path=fields[0].replace("\\", "/"),
                male=fields[11] == "1",
                smile=fields[12] == "1",
                glasses=fields[13] == "1",
            )
        )
    return labels


def load_face_image(path: Path, upscale: int = UPSCALE) -> np.ndarray:
    """A photo as the rules are fitted and tested on it: RGB, MTFL's upscaled 2x bicubic."""
    image = Image.open(path).convert("RGB")
    if upscale != 1:
        size = (image.width * upscale, image.height * upscale)
        image = image.resize(size, Image.Resampling.BICUBIC)
    return np.asarray(image)


_analyzer: FaceAnalyzer | None = None
EVIDENCE = ("crop", "landmarks106", "embedding", "male", "age", "expression")


def _init_worker() -> None:
    global _analyzer
    settings = get_settings()
    _analyzer = FaceAnalyzer.load(settings.model_manifest, settings.models_dir, threads=1)


def _extract_one(job: tuple[str, int]) -> dict[str, np.ndarray] | None:
    """Everything the rules and the report need for the largest face, or None if none found."""
    assert _analyzer is not None
    path, upscale = job
    rgb = load_face_image(Path(path), upscale)
    faces = _analyzer.analyze(rgb)
    if not faces:
        return None
    face = faces[0]
    kps = face.kps[None]
    image = Image.fromarray(rgb)
    (expression,) = _analyzer.expression.predict(image, kps)
    return {
        "crop": _analyzer.align(rgb, kps)[0],
        "landmarks106": apply_affine(
            face.landmarks106, _analyzer.recognizer.alignment(face.kps)
        ).astype(np.float32),
        "embedding": face.embedding,
        "male": _analyzer.gender.predict(image, kps)[:1].astype(np.float32),
        "age": _analyzer.age.predict(image, kps)[:1].astype(np.float32),
        "expression": np.array([expression[k] for k in EXPRESSIONS], np.float32),
    }


def models_key() -> str:
    """Hash of the manifest's models and their options: a cache made with others is stale."""
    raw = json.loads(get_settings().model_manifest.read_text())
    return hashlib.sha256(json.dumps(raw["models"], sort_keys=True).encode()).hexdigest()


def extract(paths: list[Path], upscale: int, cache: Path, workers: int) -> dict[str, np.ndarray]:
    """Per-face evidence for every detected face, cached in /tmp (keyed by paths and models)."""
    names = [str(path) for path in paths]
    key = models_key()
    if cache.is_file():
        cached = dict(np.load(cache))
        if list(cached["paths"]) == names and str(cached.get("models_key")) == key:
            return cached
    started = time.perf_counter()
    with Pool(workers, initializer=_init_worker) as pool:
        results = pool.map(_extract_one, [(name, upscale) for name in names], chunksize=16)
    print(f"extracted {len(paths)} faces in {time.perf_counter() - started:.0f} s")
    found = np.array([r is not None for r in results])
    arrays = {k: np.stack([r[k] for r in results if r is not None]) for k in EVIDENCE}
    arrays["male"] = arrays["male"][:, 0]
    arrays["age"] = arrays["age"][:, 0]
    data = {"paths": np.array(names), "models_key": np.array(key), "found": found, **arrays}
    np.savez(cache, **data)
    return data


def fit_logistic(x: np.ndarray, y: np.ndarray, penalty: float) -> tuple[np.ndarray, float]:
    """L2-penalised logistic regression by Newton's method (IRLS); the bias is not penalised.

    Newton converges in ~10 steps on these sizes (<= 7,500 x 513) and needs no step size.
    """
    design = np.column_stack([x, np.ones(len(x))])
    ridge = np.full(design.shape[1], penalty)
    ridge[-1] = 0.0
    beta = np.zeros(design.shape[1])
    for _ in range(50):
        p = rules.sigmoid(design @ beta)
        gradient = design.T @ (p - y) + ridge * beta
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(ridge)
        step = np.linalg.solve(hessian + 1e-9 * np.eye(len(beta)), gradient)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return beta[:-1], float(beta[-1])


def auc(scores: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half)."""
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)
    positives = y.astype(bool)
    n_pos, n_neg = positives.sum(), (~positives).sum()
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def folds_of(n: int) -> np.ndarray:
    return np.arange(n) % FOLDS


def grouped_folds(groups: list[str], salt: str = "") -> np.ndarray:
    """Fold of each sample by the SHA-1 of its group (identity): a person never straddles two.

    Inner cross-validation (penalty choice inside an outer fold) uses another salt, so that its
    folds are not the outer ones with one missing.
    """
    return np.array([hashlib.sha1((salt + g).encode()).digest()[0] % FOLDS for g in groups])


def standardised_model(x: np.ndarray, y: np.ndarray, penalty: float) -> dict[str, object]:
    """Logistic model on z-scored features, stored the way `rules.linear` reads it."""
    mean, scale = x.mean(axis=0), x.std(axis=0).clip(1e-9)
    weights, bias = fit_logistic((x - mean) / scale, y, penalty)
    return {"mean": mean, "scale": scale, "weights": weights, "bias": bias}


def out_of_fold(
    x: np.ndarray, y: np.ndarray, penalty: float, folds: np.ndarray | None = None
) -> np.ndarray:
    """Logits for each training face from a model that did not see it (for stacking and CV)."""
    folds = folds_of(len(y)) if folds is None else folds
    logits = np.empty(len(y))
    for k in np.unique(folds):
        model = standardised_model(x[folds != k], y[folds != k], penalty)
        logits[folds == k] = rules.linear(x[folds == k], model)
    return logits


def best_penalty(x: np.ndarray, y: np.ndarray, folds: np.ndarray | None = None) -> float:
    scored = {p: auc(out_of_fold(x, y, p, folds), y) for p in PENALTIES}
    return max(scored, key=scored.__getitem__)


def fit(x: np.ndarray, y: np.ndarray) -> tuple[dict[str, object], float]:
    penalty = best_penalty(x, y)
    return standardised_model(x, y, penalty), penalty


def report_line(name: str, scores: np.ndarray, y: np.ndarray, threshold: float = 0.0) -> dict:
    """Accuracy at the rule's decision threshold and AUC, printed and returned for the JSON."""
    accuracy = float(((scores >= threshold) == y.astype(bool)).mean())
    figures = {
        "n": int(len(y)),
        "positives": int(y.sum()),
        "accuracy": round(accuracy, 4),
        "auc": round(auc(scores, y), 4),
    }
    print(
        f"  {name:<34} n={len(y):5d} pos={int(y.sum()):5d} "
        f"acc={accuracy:.3f} auc={figures['auc']:.3f}"
    )
    return figures


def jsonable(model: dict[str, object]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in model.items():
        if isinstance(value, dict):
            out[key] = jsonable(value)
        elif isinstance(value, np.ndarray):
            out[key] = [float(f"{v:.6g}") for v in value]
        else:
            out[key] = float(f"{value:.6g}") if isinstance(value, float) else value
    return out


def embedding_model(x: np.ndarray, y: np.ndarray, penalty: float) -> dict[str, object]:
    """512-d classifier with standardisation folded into the weights (513 numbers, not 1,537)."""
    model = standardised_model(x, y, penalty)
    weights = np.asarray(model["weights"]) / np.asarray(model["scale"])
    bias = float(model["bias"]) - float(weights @ np.asarray(model["mean"]))
    return {"mean": 0.0, "scale": 1.0, "weights": weights, "bias": bias}


def stacked(
    features: np.ndarray,
    embeddings: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    held: np.ndarray,
    names: tuple[str, ...],
) -> dict[str, object]:
    """Fits features + embedding logit (out-of-fold on train); prints each part's held-out AUC.

    The `names` feature columns are also scored one by one, to show what each measure is worth
    on its own.
    """
    for i, name in enumerate(names):
        print(f"    single feature {name:<12} AUC {auc(features[held, i], y[held]):.3f}")
    alone, _ = fit(features[train], y[train])
    report_line("hand-made features only", rules.linear(features[held], alone), y[held])
    penalty = best_penalty(embeddings[train], y[train])
    embedding = embedding_model(embeddings[train], y[train], penalty)
    report_line("embedding only", rules.linear(embeddings[held], embedding), y[held])
    oof = out_of_fold(embeddings[train], y[train], penalty)
    combined, _ = fit(np.column_stack([features[train], oof]), y[train])
    return {"embedding": embedding, "combined": combined}


def embedding_pcs(embeddings: np.ndarray, count: int) -> np.ndarray:
    """The first principal components of the MTFL embeddings (unsupervised, other people)."""
    reference = np.load(CACHE)["embedding"].astype(np.float64)
    mean = reference.mean(axis=0)
    _, _, axes = np.linalg.svd(reference - mean, full_matrices=False)
    return (embeddings - mean) @ axes[:count].T


def ramp_rule(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """A one-feature logistic fit written as `rules.ramp` reads it: {half, width}."""
    model = standardised_model(x[:, None], y, 0.0)
    weight = float(np.asarray(model["weights"])[0]) / float(np.asarray(model["scale"])[0])
    half = float(np.asarray(model["mean"])[0]) - float(model["bias"]) / weight
    return {"half": round(half, 5), "width": round(1.0 / weight, 5)}


def cross_validated(
    fit_and_score: Callable[[np.ndarray, np.ndarray], np.ndarray], n: int, folds: np.ndarray
) -> np.ndarray:
    """Scores for every sample from `fit_and_score(train_mask, test_mask)` over the folds."""
    scores = np.empty(n)
    for k in np.unique(folds):
        test = folds == k
        scores[test] = fit_and_score(~test, test)
    return scores


def read_celeba() -> tuple[list[dict[str, str]], dict[str, str]]:
    """The labelled CelebA rows (image + 40 labels) and every image's identity."""
    with (CELEBA / "attributes.tsv").open() as handle:
        labelled = list(csv.DictReader(handle, delimiter="\t"))
    with (CELEBA / "identities.tsv").open() as handle:
        identity = {row["image"]: row["identity"] for row in csv.DictReader(handle, delimiter="\t")}
    return labelled, identity


def celeba_part(
    workers: int, mtfl_models: dict[str, dict[str, object]]
) -> tuple[dict[str, object], dict[str, dict]]:
    """Fits attractive, eye_open, mouth_open on CelebA; checks the rest against its labels.

    `mtfl_models` are the smile and eyeglass models this run just fitted: attractive takes the
    smile logit as an input, and it must be the logit the server will compute.

    Returns the coefficients to write and the report. Figures are identity-grouped 5-fold
    cross-validated (each face scored by a model fitted without that person); the shipped
    models are then fitted on all 288 faces.
    """
    labelled, identity = read_celeba()
    data = extract([CELEBA / "images" / row["image"] for row in labelled], 1, CELEBA_CACHE, workers)
    rows = [row for row, found in zip(labelled, data["found"], strict=True) if found]
    label = {name: np.array([row[name] == "1" for row in rows], np.float64) for name in rows[0]}
    people = [identity[row["image"]] for row in rows]
    folds = grouped_folds(people)
    print(
        f"\nCelebA: {len(rows)} of {len(labelled)} labelled photos detected, {len(set(people))} "
        f"identities, "
        f"{FOLDS}-fold cross-validation grouped by identity"
    )
    embeddings = data["embedding"].astype(np.float64)
    geometry = rules.face_geometry(data["landmarks106"])
    smile_logit = rules.stacked_logit(
        rules.smile_features(data["landmarks106"]), embeddings, mtfl_models["smile"]
    )
    y = label["Attractive"]
    report: dict[str, dict] = {}

    def grouped_fit(x: np.ndarray, train: np.ndarray) -> dict[str, object]:
        """Penalty by inner identity-grouped CV on the training part, then a fit on all of it."""
        inner = grouped_folds([people[i] for i in np.flatnonzero(train)], salt="inner")
        return standardised_model(x[train], y[train], best_penalty(x[train], y[train], inner))

    candidates = {
        "age + gender outputs only": np.column_stack([data["age"], data["male"]]),
        "+ embedding PCA-20 (tried)": np.column_stack(
            [data["age"], data["male"], embedding_pcs(embeddings, 20)]
        ),
        "shipped: + smile, eye, mouth, brow": rules.attractive_features(
            data["age"], data["male"], smile_logit, geometry
        ),
    }
    print("attractive (logistic over the outputs of other attributes; the embedding overfits):")
    for name, x in candidates.items():
        scores = cross_validated(
            lambda tr, te, x=x: rules.linear(x[te], grouped_fit(x, tr)), len(rows), folds
        )
        report_line(name, scores, y)
    attractive = scores
    report["attractive"] = report_line("cross-validated (shipped)", attractive, y)
    for name, mask in (
        ("women", label["Male"] == 0),
        ("men", label["Male"] == 1),
        ("Young", label["Young"] == 1),
        ("not Young", label["Young"] == 0),
    ):
        report[f"attractive, {name}"] = report_line(f"  within {name}", attractive[mask], y[mask])
        print(
            f"    {name:<10} label rate {y[mask].mean():.2f}, "
            f"mean predicted P {rules.sigmoid(attractive[mask]).mean():.2f}"
        )
    x = candidates["shipped: + smile, eye, mouth, brow"]
    attractive_model = standardised_model(x, y, best_penalty(x, y, folds))

    print("eye_open (eye aspect ratio; positive = not Narrow_Eyes) and mouth_open:")
    openness = {
        "eye_open": (geometry[:, 0], 1 - label["Narrow_Eyes"]),
        "mouth_open": (geometry[:, 1], label["Mouth_Slightly_Open"]),
    }
    ramps = {}
    for name, (x, target) in openness.items():
        scores = cross_validated(
            lambda tr, te, x=x, target=target: rules.ramp(x[te], ramp_rule(x[tr], target[tr])),
            len(rows), folds,
        )  # fmt: skip
        report[name] = report_line(f"{name} cross-validated", scores - 0.5, target)
        ramps[name] = ramp_rule(x, target)
        print(f"    shipped ramp {ramps[name]}")

    print("attributes fitted elsewhere, checked against CelebA labels (no fitting here):")
    eyeglass_logit = rules.stacked_logit(
        rules.edge_features(data["crop"]), embeddings, mtfl_models["eyeglass"]
    )
    happy = data["expression"][:, EXPRESSIONS.index("happy")].astype(np.float64)
    for name, scores, target, threshold in (
        ("smile vs Smiling", smile_logit, label["Smiling"], 0.0),
        ("emotion happy vs Smiling", happy, label["Smiling"], 0.5),
        ("eyeglass vs Eyeglasses", eyeglass_logit, label["Eyeglasses"], 0.0),
        ("gender vs Male", data["male"], label["Male"], 0.5),
        ("-age vs Young (at 35)", -data["age"], label["Young"], -35.0),
    ):
        report[name] = report_line(name, scores, target, threshold)

    print("screaming and confused ramps (no label: placed on the measured spread):")
    gap_q = np.percentile(geometry[:, 1], [50, 90, 99])
    brow_q = np.percentile(geometry[:, 2], [1, 5, 50])
    print(f"  mouth gap 50/90/99%: {' '.join(f'{v:.3f}' for v in gap_q)}")
    print(f"  brow height 1/5/50%: {' '.join(f'{v:.3f}' for v in brow_q)}")
    # A scream opens the mouth past what 99% of these photos show (90% of them are at or
    # below the open-mouth smile); brows count as lowered below the lowest 5%.
    screaming = {
        "half": round(float(gap_q[2]), 4),
        "width": round(float(gap_q[2] - gap_q[1]) / 4, 4),
    }
    confused = {
        "half": round(float(brow_q[1]), 4),
        "width": round(float(brow_q[2] - brow_q[1]) / 4, 4),
    }
    print(f"  screaming ramp {screaming}, confused ramp {confused}")
    out = {
        "attractive": jsonable(attractive_model) | {"features": list(rules.ATTRACTIVE_FEATURES)},
        **ramps,
        "screaming": screaming,
        "confused": confused,
    }
    return out, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-write", action="store_true", help="report only")
    args = parser.parse_args()
    labels = read_labels()
    data = extract([MTFL / label.path for label in labels], UPSCALE, CACHE, args.workers)
    kept = [label for label, found in zip(labels, data["found"], strict=True) if found]
    held = np.array([label.held_out for label in kept])
    train = ~held
    smile = np.array([label.smile for label in kept], np.float64)
    glasses = np.array([label.glasses for label in kept], np.float64)
    male = np.array([label.male for label in kept], np.float64)
    print(
        f"{len(kept)} of {len(labels)} faces detected and used; "
        f"train {int(train.sum())}, held out {int(held.sum())} (split by source key)"
    )
    report: dict[str, dict] = {}

    embeddings = data["embedding"].astype(np.float64)
    print("smile (106-point mouth geometry + embedding classifier, stacked logistic):")
    geometry = rules.smile_features(data["landmarks106"])
    named = rules.SMILE_FEATURES[: len(rules.SMILE_FEATURES) - 2 * len(rules.MOUTH)]
    smile_model = stacked(geometry, embeddings, smile, train, held, named)
    report["smile"] = report_line(
        "held out (combined)",
        rules.stacked_logit(geometry[held], embeddings[held], smile_model),
        smile[held],
    )

    print("eyeglass (frame edges + embedding classifier, stacked logistic):")
    edges = rules.edge_features(data["crop"])
    eyeglass = stacked(edges, embeddings, glasses, train, held, rules.EDGE_FEATURES)
    eyeglass_held = rules.stacked_logit(edges[held], embeddings[held], eyeglass)
    report["eyeglass"] = report_line("held out (combined)", eyeglass_held, glasses[held])

    print("happy (the expression network, not fitted here) against the smile label:")
    happy = data["expression"][:, EXPRESSIONS.index("happy")].astype(np.float64)
    report["happy vs smile"] = report_line("held out", happy[held] - 0.5, smile[held])

    print("gender (the installed network, not fitted here; P(male) >= 0.5):")
    report["gender"] = report_line("held out", data["male"][held] - 0.5, male[held])
    report_line("all detected faces", data["male"] - 0.5, male)
    ages = data["age"]
    print(
        f"age (network, no labels): median {np.median(ages):.1f}, "
        f"5-95% {np.percentile(ages, 5):.1f}-{np.percentile(ages, 95):.1f} years"
    )

    print("sunglass (rule; MTFL has no sunglasses label):")
    darkness = rules.eye_band_darkness(data["crop"])
    for name, mask in (("glasses", glasses == 1), ("no glasses", glasses == 0)):
        q = np.percentile(darkness[mask], [5, 25, 50, 75, 95])
        print(f"  eye-band darkness, {name:<10} 5/25/50/75/95%: " + " ".join(f"{v:.2f}" for v in q))
    p_eyeglass = rules.sigmoid(rules.stacked_logit(edges, embeddings, eyeglass))
    sunglass = rules.sunglass_probability(p_eyeglass, darkness, SUNGLASS_RULE)
    flagged = sunglass >= 0.5
    print(
        f"  flagged as sunglasses: {int(flagged[glasses == 1].sum())} of "
        f"{int((glasses == 1).sum())} glasses faces, {int(flagged[glasses == 0].sum())} of "
        f"{int((glasses == 0).sum())} faces without glasses"
    )

    celeba, celeba_report = celeba_part(args.workers, {"smile": smile_model, "eyeglass": eyeglass})
    if not args.no_write:
        out = {
            "source": "bench/fit_attributes.py on MTFL train (../shared/data/mtfl-train) and "
            "the labelled CelebA photos (../shared/data/celeba-dev/attributes.tsv)",
            "held_out": report,
            "cross_validated_celeba": celeba_report,
            "smile": jsonable(smile_model) | {"features": list(rules.SMILE_FEATURES)},
            "eyeglass": jsonable(eyeglass) | {"features": list(rules.EDGE_FEATURES)},
            "sunglass": SUNGLASS_RULE,
            **celeba,
        }
        rules.COEFFICIENTS.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {rules.COEFFICIENTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()

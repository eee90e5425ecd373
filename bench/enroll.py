"""`facesrv enroll` in-process against detection alone, on the same photos in the same run.

Bulk enrolment should cost little beyond the models: reading, hashing and the store's writes
(one transaction per photo: image, face, person, group) overlap the next photos' inference. This
measures that: the same photos through `detection.analyse` only (read, decode, detect, landmarks,
embedding, in the same thread pool), then through `app.tools.enroll` into a fresh SQLite store,
then detection alone again, so a drift in the machine's load shows as a gap between the two
detection rows. Target: enrolment within 10% of detection alone.

    .venv/bin/python bench/enroll.py                # 1,000 CelebA photos, minutes on 2 cores
    .venv/bin/python bench/enroll.py --photos 100   # quick look

Photos are the CelebA dev set, filed as one folder per identity; past the set's size a photo is
reused with a few bytes appended after its end (so its SHA-256, and thus its enrolment, differs).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from host import cpu_model, load_average

REPO = Path(__file__).resolve().parent.parent
CELEBA = REPO.parent / "shared" / "data" / "celeba-dev"
sys.path.insert(0, str(REPO))


def machine() -> str:
    import onnxruntime

    return (
        f"platform     {platform.platform()}\n"
        f"python       {platform.python_version()}\n"
        f"cpu          {cpu_model()}\n"
        f"cores        {os.cpu_count()} (affinity {len(os.sched_getaffinity(0))})\n"
        f"onnxruntime  {onnxruntime.__version__} {onnxruntime.get_available_providers()}"
    )


def lay_out(root: Path, count: int) -> list[Path]:
    """`count` photos under root/IDENTITY/, CelebA's, reused (made distinct) past its size."""
    with open(CELEBA / "identities.tsv", newline="") as table:
        rows = sorted(
            (row["identity"], row["image"]) for row in csv.DictReader(table, delimiter="\t")
        )
    paths = []
    for index in range(count):
        identity, image = rows[index % len(rows)]
        data = (CELEBA / "images" / image).read_bytes()
        copy = index // len(rows)
        if copy:
            data += b"\0" * copy  # after the JPEG's end: the same pixels, another digest
        folder = root / f"identity-{identity}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / (image if not copy else f"{Path(image).stem}-{copy}.jpg")
        path.write_bytes(data)
        paths.append(path)
    return paths


def timed(label: str, run: Callable[[], int], count: int) -> float:
    started = time.perf_counter()
    done = run()
    seconds = time.perf_counter() - started
    rate = count / seconds
    print(f"{label:<36} {rate:8.2f} photos/s   {seconds:7.1f} s   ({done} of {count} ok)")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="facesrv-bench-enroll-"))
    from app.config import get_settings

    os.environ.setdefault("FACESRV_MODELS_DIR", str(get_settings().models_dir))
    os.environ["FACESRV_DATA_DIR"] = str(work / "data")
    os.environ["FACESRV_DATABASE_URL"] = f"sqlite:///{work / 'data' / 'bench.db'}"
    get_settings.cache_clear()

    from app.db.migrate import upgrade
    from app.db.session import session_scope
    from app.errors import ApiError
    from app.services import detection
    from app.services.accounts import create_account, parse_quota
    from app.tools.enroll import Store, enroll, read_plan

    print(machine())
    paths = lay_out(work / "photos", args.photos)
    upgrade(get_settings().database_url)
    big = parse_quota(
        f"groups=10,persons={args.photos},facesets=10,persons_per_group={args.photos},"
        f"faces_per_person=100,faces_per_faceset={args.photos}"
    )
    with session_scope() as db:
        account, _ = create_account(db, name="bench", rate_limit="1000q/1s", quota=big)
        api_id = account.api_id
    print(f"photos       {len(paths)} in {len({p.parent for p in paths})} identity folders, "
          f"{args.workers} workers")  # fmt: skip

    def detect_all() -> int:
        def one(path: Path) -> bool:
            try:
                analysis = detection.analyse(
                    path.read_bytes(), attributes=False, emotions=False, auto_rotate=False
                )
            except ApiError:
                return False
            return bool(analysis.faces)

        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            return sum(pool.map(one, paths))

    summaries = []

    def enroll_all() -> int:
        summary = enroll(
            read_plan(work / "photos", group="bench"),
            Store(api_id),
            errors_path=work / "errors.tsv",
            workers=args.workers,
            progress=False,
        )
        summaries.append(summary)
        return summary.enrolled

    for path in paths[:10]:  # warm-up: models loaded, first-run allocations done
        detection.analyse(path.read_bytes(), attributes=False, emotions=False, auto_rotate=False)
    print(f"load avg     {load_average()} (before)")
    first = timed("detection alone", detect_all, len(paths))
    enrolled = timed("enroll (in-process, SQLite)", enroll_all, len(paths))
    second = timed("detection alone, again", detect_all, len(paths))
    print(f"load avg     {load_average()} (after)")
    print("enroll run   " + "\n             ".join(summaries[0].lines()[:2]))
    alone = (first + second) / 2
    print(f"enroll / detection alone: {enrolled / alone:.1%} (target >= 90%)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""/face/search on a faceset of N faces (1M by default), over real HTTP, on this machine.

What it measures, through the product's own paths:
  1. setup (not product): N synthetic unit vectors and 200 probe faces written straight into a
     fresh store (SQLite by default), the N as one faceset;
  2. /face/training on the faceset: the server reads N embeddings from the store, builds the
     index (sign-code scan plus exact re-rank past FACESRV_EXACT_INDEX_MAX) and snapshots it;
  3. restart: time from launching `uvicorn app.main:create_app` to the first /face/search
     answered (the snapshot is loaded, then the change log replayed);
  4. latency of /face/search (top=3), server-side (Server-Timing header) and at the client, and
     recall@1 of its top candidate against exact search over the same vectors;
  5. memory per face: the server's resident memory after the load minus before it, over N;
  6. /faceset/add_face of the probe faces one at a time into the big faceset, server-side, each
     followed by a search that must find it.

Genuine probes are base vectors plus noise, renormalised (cosine ~0.8 to their source, like a
second photo of an enrolled person), so recall@1 has a clear true answer; stranger probes are
fresh random vectors, whose exact top 1 is barely better than the next thousand (reported
apart). Usage: .venv/bin/python bench/search.py [--n 1000000] [--backend faiss|milvus|both]

With `--backend both` the same store is measured on FAISS, then on Milvus once per
`--milvus-index` (FLAT, IVF_FLAT and HNSW by default), and a side-by-side table ends the output.
Milvus is a real Milvus server: the one at `--milvus-uri`, or one this script starts from the
`milvus` package (the standalone server binary) in its temporary folder, whose resident memory
is reported beside facesrv's; `--milvus lite` measures embedded milvus-lite instead.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import faiss
import httpx
import numpy as np
from host import cpu_model, load_average
from sqlalchemy import insert, select

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DIM = 512
PROBES = 200
STRANGERS = 50


def machine() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        milvus = (
            f"milvus (server) {version('milvus')}, milvus-lite {version('milvus-lite')}, "
            f"pymilvus {version('pymilvus')}"
        )
    except PackageNotFoundError:
        milvus = "no milvus packages"
    memory = Path("/proc/meminfo").read_text().split()[1] if Path("/proc/meminfo").exists() else 0
    return (
        f"{platform.platform()} | {cpu_model()} | {os.cpu_count()} cores | "
        f"{int(memory) // 1024**2} GB | faiss {faiss.__version__} | {milvus} | "
        f"Python {platform.python_version()}"
    )


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def populate(
    database_url: str, n: int, seed: int
) -> tuple[str, str, str, list[str], np.ndarray, np.ndarray]:
    """Write the account, N faces in one faceset and the probes; returns ids and vectors."""
    from app.config import get_settings
    from app.db.migrate import upgrade
    from app.db.models import Face, Faceset, FacesetFace
    from app.db.session import session_scope
    from app.services.accounts import create_account, parse_quota
    from app.vision.manifest import load_manifest

    upgrade(database_url)
    rng = np.random.default_rng(seed)
    expires = datetime.now(UTC) + timedelta(days=5)
    quota = parse_quota(
        f"groups=1,persons=1,facesets=1,persons_per_group=1,faces_per_person=1,"
        f"faces_per_faceset={n + PROBES + STRANGERS}"
    )
    with session_scope() as db:
        account, secret = create_account(db, name="bench", rate_limit="1000000q/1s", quota=quota)
        faceset = Faceset(account_id=account.id, name="bench")
        db.add(faceset)
        db.flush()
        account_id, api_id, faceset_row, faceset_id = (
            account.id,
            account.api_id,
            faceset.id,
            faceset.public_id,
        )
    base_sample = np.empty((PROBES, DIM), np.float32)
    sample_rows = rng.choice(n, PROBES, replace=False)
    all_vectors = np.empty((n, DIM), np.float32)
    batch = 20_000
    face_fields = {
        "account_id": account_id,
        "rect_left": 0,
        "rect_top": 0,
        "rect_right": 1,
        "rect_bottom": 1,
        "eye_dist": 1,
        "landmarks21": [],
        "landmarks106": [],
        "expires_at": expires,
        # The server compares only its own model's embeddings (app.services.embeddings).
        "embedding_model": load_manifest(get_settings().model_manifest)
        .models["recognition"]
        .identity,
    }
    started = time.perf_counter()
    first_id = None
    for start in range(0, n, batch):
        vectors = unit(rng.standard_normal((min(batch, n - start), DIM), dtype=np.float32))
        all_vectors[start : start + len(vectors)] = vectors
        with session_scope() as db:
            ids = db.scalars(
                insert(Face).returning(Face.id),
                [
                    {**face_fields, "public_id": f"{start + i:032x}", "embedding": v.tobytes()}
                    for i, v in enumerate(vectors)
                ],
            ).all()
            first_id = first_id if first_id is not None else ids[0]
            db.execute(
                insert(FacesetFace),
                [{"faceset_id": faceset_row, "face_id": face_id} for face_id in ids],
            )
        print(f"\r  stored {start + len(vectors):,} / {n:,} faces", end="", flush=True)
    print(f"\n  setup: {time.perf_counter() - started:.0f} s")
    base_sample[:] = all_vectors[sample_rows]
    noise = rng.standard_normal((PROBES, DIM), dtype=np.float32) * 0.035
    strangers = rng.standard_normal((STRANGERS, DIM), dtype=np.float32)
    probes = np.concatenate([unit(base_sample + noise), unit(strangers)])
    with session_scope() as db:
        probe_ids = [f"{n + i:032x}" for i in range(PROBES + STRANGERS)]
        db.execute(
            insert(Face),
            [
                {**face_fields, "public_id": pid, "embedding": v.tobytes()}
                for pid, v in zip(probe_ids, probes, strict=True)
            ],
        )
        assert db.scalar(select(Face.id).where(Face.public_id == f"{0:032x}")) == first_id
    return api_id, secret, faceset_id, probe_ids, probes, all_vectors


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(
    pid: int, window_s: float = 5.0, idle_cores: float = 0.1, limit_s: float = 3600
) -> float:
    """Seconds until the process stays under `idle_cores` of CPU for a whole window: a Milvus
    2.3 server merges the small segments of a bulk fill once they are indexed, then indexes the
    merged ones again, in the background, after the build has returned."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        before = cpu_seconds(pid)
        time.sleep(window_s)
        if (cpu_seconds(pid) - before) / window_s < idle_cores:
            break
    return time.perf_counter() - started


class Server:
    def __init__(self, env: dict[str, str], port: int) -> None:
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app.main:create_app",
                "--factory",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            cwd=REPO,
            env=env,
        )
        self.base = f"http://127.0.0.1:{port}"
        while True:
            try:
                httpx.get(f"{self.base}/info/api", timeout=1)
                break
            except httpx.HTTPError:
                if self.process.poll() is not None:
                    raise SystemExit("server exited") from None
                time.sleep(0.05)

    def rss_mb(self) -> float:
        return rss_mb(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def write_then_search(
    client: httpx.Client,
    creds: dict[str, str],
    faceset_id: str,
    face_ids: list[str],
) -> tuple[list[float], int]:
    """Add each face alone to the big faceset, then search for it: a write on a big account,
    then the log replay that makes it searchable at once."""
    add_ms, found = [], 0
    for face_id in face_ids:
        added = client.post(
            "/faceset/add_face", json={**creds, "faceset_id": faceset_id, "face_id": face_id}
        )
        assert added.status_code == 200, added.text
        add_ms.append(float(added.headers["server-timing"].split("dur=")[1]))
        response = client.post(
            "/face/search", json={**creds, "face_id": face_id, "faceset_id": faceset_id, "top": 1}
        )
        found += response.json()["candidates"][0]["face_id"] == face_id
    return add_ms, found


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(values, p))


def run_backend(
    label: str,
    env: dict[str, str],
    args: argparse.Namespace,
    creds: dict[str, str],
    faceset_id: str,
    probe_ids: list[str],
    expected: list[str],
    milvus_pid: int | None = None,
) -> dict[str, float]:
    """Every phase of the module docstring on one vector backend; returns its figures."""
    figures: dict[str, float] = {}
    print(f"--- {label} ---", flush=True)
    server = Server(env, args.port)
    rss_before = server.rss_mb()
    milvus_before = rss_mb(milvus_pid) if milvus_pid else 0.0
    started = time.perf_counter()
    trained = httpx.post(
        f"{server.base}/face/training", timeout=7200, json={**creds, "faceset_id": faceset_id}
    )
    assert trained.status_code == 200, trained.text
    figures["training_s"] = time.perf_counter() - started
    print(f"/face/training (read from the store, build, persist): {figures['training_s']:.1f} s")
    server.stop()
    figures["milvus_settle_s"] = float("nan")
    if milvus_pid:
        figures["milvus_settle_s"] = settle(milvus_pid)
        print(
            "the Milvus server kept working (merging segments, indexing them again) for "
            f"{figures['milvus_settle_s']:.0f} s after /face/training returned; measured after"
        )

    server = Server(env, args.port)
    rss_idle = server.rss_mb()
    first = httpx.post(
        f"{server.base}/face/search",
        timeout=7200,
        json={**creds, "face_id": probe_ids[0], "faceset_id": faceset_id},
    )
    assert first.status_code == 200, first.text
    figures["ready_s"] = time.perf_counter() - server.started
    print(f"restart to ready (process start to first search answered): {figures['ready_s']:.1f} s")
    loaded_mb = server.rss_mb() - rss_idle
    figures["kb_per_face"] = loaded_mb * 1024 / args.n
    print(
        f"memory: {loaded_mb:.0f} MB for the loaded faceset = {figures['kb_per_face']:.2f} KB a "
        f"face, in the facesrv process (server idle {rss_idle:.0f} MB; before training "
        f"{rss_before:.0f} MB)"
    )
    figures["milvus_kb_per_face"] = float("nan")
    if milvus_pid:
        grown = rss_mb(milvus_pid) - milvus_before
        figures["milvus_kb_per_face"] = grown * 1024 / args.n
        print(
            f"memory: the Milvus server grew {grown:.0f} MB = "
            f"{figures['milvus_kb_per_face']:.2f} KB a face ({rss_mb(milvus_pid):.0f} MB now)"
        )

    server_ms, client_ms, hits = [], [], np.zeros(len(probe_ids), bool)
    with httpx.Client(base_url=server.base, timeout=600) as client:
        for q in range(args.queries):
            i = q % PROBES  # timings on genuine probes; strangers only for their recall below
            t0 = time.perf_counter()
            response = client.post(
                "/face/search",
                json={**creds, "face_id": probe_ids[i], "faceset_id": faceset_id, "top": 3},
            )
            client_ms.append((time.perf_counter() - t0) * 1000)
            server_ms.append(float(response.headers["server-timing"].split("dur=")[1]))
            hits[i] = response.json()["candidates"][0]["face_id"] == expected[i]
        for i in range(PROBES, PROBES + STRANGERS):
            response = client.post(
                "/face/search", json={**creds, "face_id": probe_ids[i], "faceset_id": faceset_id}
            )
            hits[i] = response.json()["candidates"][0]["face_id"] == expected[i]
        add_ms, found_at_once = write_then_search(client, creds, faceset_id, probe_ids[: args.adds])
        # Out again, so that the next backend starts from the same faceset.
        removed = client.post(
            "/faceset/remove_face",
            json={**creds, "faceset_id": faceset_id, "face_id": probe_ids[: args.adds]},
        )
        assert removed.status_code == 200, removed.text
    server.stop()

    genuine = min(args.queries, PROBES)
    figures |= {
        "p50_ms": pct(server_ms, 50),
        "p99_ms": pct(server_ms, 99),
        "recall_genuine": float(hits[:genuine].mean()),
        "recall_strangers": float(hits[PROBES:].mean()),
        "add_p50_ms": pct(add_ms, 50),
        "add_p99_ms": pct(add_ms, 99),
        "found_at_once": found_at_once / len(add_ms),
    }
    print(f"/face/search top=3, {args.queries} queries, 1 client (load avg {load_average()}):")
    print(f"  server-side  p50 {figures['p50_ms']:.2f} ms  p99 {figures['p99_ms']:.2f} ms")
    print(
        f"  at client    p50 {pct(client_ms, 50):.2f} ms  p99 {pct(client_ms, 99):.2f} ms  "
        f"mean {statistics.fmean(client_ms):.2f} ms"
    )
    print(
        f"  recall@1 vs exact search: genuine {figures['recall_genuine']:.3f} ({genuine} "
        f"probes), strangers {figures['recall_strangers']:.3f} ({STRANGERS} probes)"
    )
    print(
        f"/faceset/add_face, one face at a time into the {args.n:,}-face faceset, then at once "
        f"/face/search for it, {len(add_ms)} times:"
    )
    print(
        f"  add_face server-side  p50 {figures['add_p50_ms']:.2f} ms  "
        f"p99 {figures['add_p99_ms']:.2f} ms"
    )
    print(f"  found by the next search: {found_at_once} / {len(add_ms)}", flush=True)
    return figures


ROWS = [
    ("/face/training (build from the store)", "training_s", "{:.1f} s"),
    ("Milvus busy after training (background indexing)", "milvus_settle_s", "{:.0f} s"),
    ("restart to first search answered", "ready_s", "{:.1f} s"),
    ("memory per face (facesrv process)", "kb_per_face", "{:.2f} KB"),
    ("memory per face (Milvus server process)", "milvus_kb_per_face", "{:.2f} KB"),
    ("/face/search p50 (server-side)", "p50_ms", "{:.1f} ms"),
    ("/face/search p99 (server-side)", "p99_ms", "{:.1f} ms"),
    ("recall@1, genuine probes", "recall_genuine", "{:.3f}"),
    ("recall@1, strangers", "recall_strangers", "{:.3f}"),
    ("add_face p50 (server-side)", "add_p50_ms", "{:.1f} ms"),
    ("add_face p99 (server-side)", "add_p99_ms", "{:.1f} ms"),
    ("added face found by the next search", "found_at_once", "{:.0%}"),
]


DEFAULT_INDEXES = ["FLAT", "IVF_FLAT:nlist=1024,nprobe=32", "HNSW:M=16,efConstruction=64,ef=128"]


@contextmanager
def milvus_engine(args: argparse.Namespace, work: Path) -> Iterator[tuple[str, int | None]]:
    """(URI, server pid or None): the given server, a milvus-lite folder, or a Milvus server
    started here (stopped at the end)."""
    if args.milvus_uri:
        yield args.milvus_uri, None
    elif args.milvus == "lite":
        yield str(work / "milvus.db"), None
    else:
        from tests.utils.milvus_server import milvus_server

        with milvus_server(work / "milvus-server") as running:
            print(f"Milvus server started in {running.started_seconds:.1f} s at {running.uri}")
            yield running.uri, running.pid


def drop_collections(uri: str) -> None:
    if "://" not in uri:
        shutil.rmtree(uri, ignore_errors=True)
        return
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri)
    for name in client.list_collections():
        for alias in client.list_aliases(name).get("aliases", []):
            client.drop_alias(alias)
        client.drop_collection(name)
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument(
        "--adds", type=int, default=PROBES + STRANGERS, help="add_face calls (default: every probe)"
    )
    parser.add_argument(
        "--backend",
        choices=["faiss", "milvus", "both"],
        default="faiss",
        help="FACESRV_VECTOR_BACKEND to measure; both: one after the other on the same store",
    )
    parser.add_argument(
        "--milvus-index",
        action="append",
        help="FACESRV_MILVUS_INDEX to measure, repeatable (default: FLAT, "
        f"{' and '.join(DEFAULT_INDEXES[1:])})",
    )
    parser.add_argument(
        "--milvus",
        choices=["server", "lite"],
        default="server",
        help="a Milvus server (default; started here unless --milvus-uri) or milvus-lite",
    )
    parser.add_argument("--milvus-uri", help="an existing Milvus server, e.g. http://host:19530")
    parser.add_argument("--database-url", help="default: a SQLite file in a temporary folder")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--keep", action="store_true", help="keep the temporary data folder")
    args = parser.parse_args()

    print(f"machine: {machine()}")
    work = Path(tempfile.mkdtemp(prefix="facesrv-bench-search-"))
    database_url = args.database_url or f"sqlite:///{work / 'facesrv.db'}"
    from app.config import Settings

    env = {
        **os.environ,
        "FACESRV_DATA_DIR": str(work),
        "FACESRV_DATABASE_URL": database_url,
        # The installed model pack stays where it is; only the data moves to the temporary folder.
        "FACESRV_MODELS_DIR": str(Settings.from_env().models_dir),
        "FACESRV_MILVUS_URI": str(work / "milvus.db"),
    }
    os.environ.update(env)
    print(f"faceset of {args.n:,} synthetic faces in {database_url.split(':')[0]}")
    api_id, secret, faceset_id, probe_ids, probes, vectors = populate(
        database_url, args.n, args.seed
    )
    creds = {"api_id": api_id, "api_secret": secret}
    exact = faiss.IndexFlatIP(DIM)
    exact.add(vectors)
    _, truth = exact.search(probes, 1)
    expected = [f"{row:032x}" for row in truth[:, 0]]
    del exact, vectors

    results = {}
    if args.backend in ("faiss", "both"):
        faiss_env = {**env, "FACESRV_VECTOR_BACKEND": "faiss"}
        results["faiss"] = run_backend(
            "faiss", faiss_env, args, creds, faceset_id, probe_ids, expected
        )
    if args.backend in ("milvus", "both"):
        with milvus_engine(args, work) as (uri, pid):
            for index in args.milvus_index or DEFAULT_INDEXES:
                label = f"milvus {args.milvus} {index.split(':')[0]}"
                milvus_env = {
                    **env,
                    "FACESRV_VECTOR_BACKEND": "milvus",
                    "FACESRV_MILVUS_URI": uri,
                    "FACESRV_MILVUS_INDEX": index,
                }
                print(f"milvus index: {index}")
                drop_collections(uri)  # each index type builds its own collection
                results[label] = run_backend(
                    label, milvus_env, args, creds, faceset_id, probe_ids, expected, pid
                )

    print(f"\n{args.n:,} faces, side by side:")
    print("| | " + " | ".join(results) + " |")
    print("|---" * (len(results) + 1) + "|")
    for label, key, fmt in ROWS:
        cells = ["-" if math.isnan(r[key]) else fmt.format(r[key]) for r in results.values()]
        print(f"| {label} | " + " | ".join(cells) + " |")
    if args.keep:
        print(f"data kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

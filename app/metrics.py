"""The process's Prometheus metrics, in one place, named after the `prometheus_client` conventions.

`facesrv serve` points PROMETHEUS_MULTIPROC_DIR at a fresh folder before any worker starts, so
each worker writes its samples there and /metrics (whichever worker answers) reads them all:
counters and histograms add up over the workers, gauges say what each worker holds (`liveall`:
one sample per live worker, labelled `pid`) or the most any of them does (`livemax`).

Nothing here may be imported by the CLI before `serve` has set that variable: prometheus_client
decides at import whether values live in memory or in those files (tests/test_metrics.py).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Seconds: from a cached /info call (~1 ms) to a crowd photo on CPU (~seconds).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
INFERENCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

REQUESTS = Counter(
    "facesrv_requests",
    "API requests answered, by route, dialect, HTTP status and the body's status code",
    ["endpoint", "dialect", "http_status", "status"],
)
REQUEST_SECONDS = Histogram(
    "facesrv_request_duration_seconds",
    "Time from the request's arrival to its response's start, by route and dialect",
    ["endpoint", "dialect"],
    buckets=LATENCY_BUCKETS,
)
INFERENCE_SECONDS = Histogram(
    "facesrv_inference_duration_seconds",
    "Time of one ONNX Runtime call (a batch), by model file",
    ["model"],
    buckets=INFERENCE_BUCKETS,
)
FACES_DETECTED = Counter("facesrv_faces_detected", "Faces found in analysed images")
RATE_LIMIT_REFUSALS = Counter(
    "facesrv_rate_limit_refusals",
    "Calls refused for the account's rate limit (`account`) or failed authentications (`auth`)",
    ["reason"],
)
UPKEEP_PASSES = Counter(
    "facesrv_upkeep_passes", "Background upkeep passes, by job and outcome", ["job", "outcome"]
)
INDEX_COLLECTIONS = Gauge(
    "facesrv_index_collections",
    "Facesets and groups whose index this worker has loaded",
    multiprocess_mode="liveall",
)
INDEX_VECTORS = Gauge(
    "facesrv_index_vectors",
    "Live faces in this worker's loaded indexes",
    multiprocess_mode="liveall",
)
INDEX_MEMORY = Gauge(
    "facesrv_index_memory_bytes",
    "Bytes of vectors and codes in this worker's loaded indexes",
    multiprocess_mode="liveall",
)
CHANGE_LOG_LAG = Gauge(
    "facesrv_index_change_log_lag",
    "Index changes committed to the store that a worker's loaded indexes have not yet applied "
    "(the largest over accounts; applied at the next search of the account)",
    multiprocess_mode="livemax",
)

# Seconds: a local milvus-lite call (~1 ms) to a 1M-face collection built from the store (minutes).
MILVUS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0)
MILVUS_SECONDS = Histogram(
    "facesrv_milvus_duration_seconds",
    "Time of one call to Milvus (FACESRV_VECTOR_BACKEND=milvus), by operation",
    ["operation"],
    buckets=MILVUS_BUCKETS,
)
MILVUS_ERRORS = Counter(
    "facesrv_milvus_errors",
    "Calls to Milvus that failed, by operation (a missing collection is rebuilt from the store)",
    ["operation"],
)
MILVUS_SYNCS = Counter(
    "facesrv_milvus_syncs",
    "Catch-ups of an account's Milvus collections with the change log, by what they did: "
    "`replayed` log rows, `built` a collection from the store, or found it `current` already",
    ["outcome"],
)
MILVUS_SYNC_ROWS = Counter(
    "facesrv_milvus_sync_rows", "Change-log rows (faces) applied to Milvus collections"
)


def exposition() -> tuple[bytes, str]:
    """The text format of every worker's metrics (or this process's, when not multi-process)."""
    if os.environ.get(MULTIPROCESS_ENV):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST

"""Settings, read once from `FACESRV_*` environment variables.

Every knob has an embedded default so that `facesrv serve` works on a fresh machine with no
configuration: a SQLite file under ./data, CPU inference, 127.0.0.1:8000.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    return os.environ.get(f"FACESRV_{name}", default)


def _env_int(name: str, default: int) -> int:
    return int(_env(name, str(default)))


def _env_bool(name: str, default: bool) -> bool:
    return _env(name, "1" if default else "0").strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in _env(name, "").split(",") if item.strip())


# How Heroku, docker images and libpq spell a PostgreSQL URL; SQLAlchemy wants a driver named
# (`postgres://` it refuses, `postgresql://` means psycopg2, which is not installed).
POSTGRES_SCHEMES = ("postgres://", "postgresql://")


def database_url(url: str) -> str:
    """`url` with a PostgreSQL scheme spelled for the installed driver (psycopg 3)."""
    for scheme in POSTGRES_SCHEMES:
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url.removeprefix(scheme)
    return url


# The seed's image limit (uploads and downloads alike), and what one request body may carry.
DEFAULT_MAX_IMAGE_BYTES = 5 * 1024 * 1024
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    redis_url: str | None
    host: str
    port: int
    workers: int
    default_rate_limit: str
    default_quota: str
    models_dir: Path
    model_manifest: Path
    url_allowlist: tuple[str, ...]
    keep_images: bool
    thumbnails: bool  # keep a small JPEG crop per face (the web console's thumbnails)
    async_threshold: int
    exact_index_max: int
    index_rerank: int
    index_log_days: int
    vector_backend: str  # "faiss" (per-worker indexes) or "milvus" (one shared copy)
    milvus_uri: str  # a local path ending in .db (milvus-lite) or http://host:19530
    milvus_index: str  # "FLAT", or e.g. "HNSW:M=32,efConstruction=200,ef=256"
    log_level: str
    attractive: bool
    fetch_timeout_s: float
    inference_slots: int
    inference_batch: int  # most rows one shared model call takes (1: no batching)
    fetch_slots: int
    matching_slots: int
    body_timeout_s: float
    unauthenticated_reads: int
    auth_failure_limit: str
    secret_key: str | None  # base64 of 32 bytes; else the key file in data_dir
    max_image_bytes: int
    max_body_bytes: int
    log_format: str  # "text" or "json"
    metrics_token: str | None  # /metrics wants it as a Bearer token; unset: loopback only

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = Path(_env("DATA_DIR", "./data")).resolve()
        redis_url = _env("REDIS_URL", "") or None
        return cls(
            data_dir=data_dir,
            database_url=database_url(_env("DATABASE_URL", f"sqlite:///{data_dir / 'facesrv.db'}")),
            redis_url=redis_url,
            host=_env("HOST", "127.0.0.1"),
            port=_env_int("PORT", 8000),
            workers=_env_int("WORKERS", 1),
            default_rate_limit=_env("DEFAULT_RATE_LIMIT", "50q/10s"),
            default_quota=_env(
                "DEFAULT_QUOTA",
                "groups=10,persons=80,facesets=15,persons_per_group=30,"
                "faces_per_person=10,faces_per_faceset=50",
            ),
            models_dir=Path(_env("MODELS_DIR", str(data_dir / "models"))).resolve(),
            model_manifest=Path(
                _env("MODEL_MANIFEST", str(REPO_ROOT / "models" / "manifest.json"))
            ).resolve(),
            url_allowlist=_env_list("URL_ALLOWLIST"),
            keep_images=_env_bool("KEEP_IMAGES", False),
            thumbnails=_env_bool("THUMBNAILS", True),
            async_threshold=_env_int("ASYNC_THRESHOLD", 0),
            exact_index_max=_env_int("EXACT_INDEX_MAX", 50_000),
            index_rerank=_env_int("INDEX_RERANK", 256),
            index_log_days=_env_int("INDEX_LOG_DAYS", 7),
            vector_backend=_env("VECTOR_BACKEND", "faiss").strip().lower(),
            milvus_uri=_env("MILVUS_URI", str(data_dir / "milvus.db")),
            milvus_index=_env("MILVUS_INDEX", "FLAT"),
            log_level=_env("LOG_LEVEL", "info"),
            attractive=_env_bool("ATTRACTIVE", True),
            fetch_timeout_s=float(_env("FETCH_TIMEOUT", "5")),
            inference_slots=_env_int("INFERENCE_SLOTS", 4),
            inference_batch=_env_int("INFERENCE_BATCH", 8),
            fetch_slots=_env_int("FETCH_SLOTS", 8),
            matching_slots=_env_int("MATCHING_SLOTS", 4),
            body_timeout_s=float(_env("BODY_TIMEOUT", "60")),
            unauthenticated_reads=_env_int("UNAUTHENTICATED_READS", 8),
            auth_failure_limit=_env("AUTH_FAILURE_LIMIT", "30q/60s"),
            secret_key=_env("SECRET_KEY", "") or None,
            max_image_bytes=_env_int("MAX_IMAGE_BYTES", DEFAULT_MAX_IMAGE_BYTES),
            max_body_bytes=_env_int("MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            log_format=_env("LOG_FORMAT", "text").strip().lower(),
            metrics_token=_env("METRICS_TOKEN", "") or None,
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests call `get_settings.cache_clear()` after changing env."""
    return Settings.from_env()

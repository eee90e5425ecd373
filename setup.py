"""facesrv's runtime dependencies: the CPU build by default, the CUDA build with FACESRV_BUILD=gpu.

pyproject.toml declares `dependencies` dynamic and everything else statically. They are computed
here because the two builds differ by replacement, not addition, which an extra cannot express:
onnxruntime-gpu cannot be installed beside onnxruntime (both ship the `onnxruntime` package, and
whichever lands last wins), and faiss-gpu-cu12 takes the place of faiss-cpu. So:

    pip install -e .                      # CPU: onnxruntime + faiss-cpu
    FACESRV_BUILD=gpu pip install -e .    # CUDA 12: onnxruntime-gpu + faiss-gpu-cu12

Switching an existing environment from one build to the other still leaves the old wheels behind
(pip never removes what a project stops requiring); use a fresh venv, as Dockerfile.cuda does.
"""

import os

from setuptools import setup

COMMON = [
    "fastapi>=0.115",
    "uvicorn>=0.30",
    "sqlalchemy>=2.0",
    "alembic>=1.13",
    "pillow>=10",
    "numpy>=1.26",
    "python-multipart>=0.0.9",
    "psycopg[binary]>=3.1",
    "redis>=5",
    # `facesrv models install` converts Keras HDF5 weights to ONNX (app/vision/keras_onnx.py).
    "h5py>=3.10",
    "onnx>=1.16",
    # AES-GCM for the signing keys of the HMAC dialects, sealed at rest
    # (app/services/credentials.py).
    "cryptography>=42",
    # Prometheus /metrics (app/metrics.py), multi-process aware.
    "prometheus-client>=0.20",
    # Swagger UI and ReDoc assets served by the server itself, so /docs works offline.
    "fastapi-offline==1.7.7",
    # `facesrv enroll`'s progress bar: rate and ETA (app/tools/enroll.py).
    "tqdm>=4.66",
]

# The inference runtime and the vector index, per build. app/vision/runtime.py picks the CUDA
# execution provider when onnxruntime has it; flat indexes move to the GPU when faiss can.
BUILDS = {
    "cpu": ["onnxruntime>=1.18", "faiss-cpu>=1.8"],
    "gpu": ["onnxruntime-gpu>=1.18", "faiss-gpu-cu12>=1.8"],
}


def build_name() -> str:
    name = os.environ.get("FACESRV_BUILD", "").strip().lower() or "cpu"
    if name not in BUILDS:
        raise SystemExit(f"FACESRV_BUILD={name!r}: expected one of {', '.join(sorted(BUILDS))}")
    return name


setup(install_requires=COMMON + BUILDS[build_name()])

# facesrv, CPU build (onnxruntime + faiss-cpu). The CUDA build is Dockerfile.cuda.
#   docker build -t facesrv .
# Runs as the unprivileged user facesrv (uid 10001). /data (FACESRV_DATA_DIR: database when SQLite,
# sealing key, index snapshots) belongs to that user; the models are fetched and verified at build
# time into FACESRV_MODELS_DIR, outside /data, read-only to the server.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FACESRV_HOST=0.0.0.0 \
    FACESRV_PORT=8000 \
    FACESRV_DATA_DIR=/data \
    FACESRV_MODELS_DIR=/opt/facesrv-models

RUN groupadd --system --gid 10001 facesrv \
    && useradd --system --uid 10001 --gid facesrv --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin facesrv \
    && mkdir -p /data \
    && chown facesrv:facesrv /data

WORKDIR /srv/facesrv
COPY docker/constraints.txt ./docker/constraints.txt
COPY pyproject.toml setup.py README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
COPY models ./models
# Editable, like the README: migrations and the manifest are found beside the app package.
# FACESRV_EXTRAS: optional extras, e.g. "[milvus]" for FACESRV_VECTOR_BACKEND=milvus against a
# Milvus server (docker-compose.yml's milvus profile); none by default.
ARG FACESRV_EXTRAS=""
RUN pip install -c docker/constraints.txt -e ".${FACESRV_EXTRAS}" && facesrv models install

USER facesrv
VOLUME /data
EXPOSE 8000
# /readyz answers 200 once the models are loaded and the database answers at the current schema,
# 503 before (urlopen raises on a 503, so the check fails).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('FACESRV_PORT', '8000'), timeout=4)"]
CMD ["facesrv", "serve"]

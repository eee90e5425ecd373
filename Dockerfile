# facesrv: CPU image. For CUDA, start from an nvidia/cuda runtime image and install ".[gpu]"
# after removing onnxruntime and faiss-cpu (see pyproject.toml).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    FACESRV_HOST=0.0.0.0 \
    FACESRV_DATA_DIR=/data \
    FACESRV_MODELS_DIR=/opt/facesrv-models

WORKDIR /srv/facesrv
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
COPY models ./models
RUN pip install -e . && facesrv models install

VOLUME /data
EXPOSE 8000
CMD ["facesrv", "serve"]

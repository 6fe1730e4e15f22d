# syntax=docker/dockerfile:1
# Three images from one file (docker build --target ...):
#   api         the HTTP API and migrations; no TensorFlow, no Ray
#   worker      `phymem worker` + Ray (head or node) + TensorFlow (CPU)
#   worker-gpu  the same on a CUDA base with tensorflow[and-cuda], for GPU Ray nodes
ARG PYTHON_VERSION=3.11
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04

# --- the sources, shared by every image ---------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS source
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY estimator ./estimator
COPY profilers ./profilers
COPY migrations ./migrations

# --- wheels: one build stage per image, so the final images carry no compilers --------------
FROM python:${PYTHON_VERSION}-slim AS python-base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PHYMEM_DATA_DIR=/data
RUN useradd --create-home --uid 10001 phymem \
    && mkdir -p /data && chown phymem:phymem /data
WORKDIR /home/phymem

# The sources and an empty virtual environment; each image installs its own extras.
FROM python-base AS venv
COPY --from=source /src /opt/phymem
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --upgrade pip
ENV PATH=/opt/venv/bin:$PATH

FROM venv AS api
RUN pip install "/opt/phymem[postgres]"
USER phymem
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
# Migrations on start, then the API.
CMD ["sh", "-c", "phymem db upgrade && exec phymem serve --host 0.0.0.0 --port 8000"]

FROM venv AS worker
RUN pip install "/opt/phymem[postgres,worker]"
USER phymem
# Embedded single-node Ray by default; docker-compose.yml runs a Ray head here instead.
CMD ["phymem", "worker"]

FROM ${CUDA_IMAGE} AS worker-gpu
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PHYMEM_DATA_DIR=/data
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 phymem \
    && mkdir -p /data && chown phymem:phymem /data
COPY --from=source /src /opt/phymem
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --upgrade pip \
    && /opt/venv/bin/pip install "/opt/phymem[postgres,gpu]"
ENV PATH=/opt/venv/bin:$PATH
USER phymem
WORKDIR /home/phymem
CMD ["phymem", "worker"]

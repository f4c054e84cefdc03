# vae-serve: the HTTP service on ONNX Runtime, on an NVIDIA CUDA 13.0 + cuDNN 9 runtime (Ubuntu 24.04,
# Python 3.12). By default the lean image: ONNX Runtime's CUDA provider and the fused graph, no torch. Build arg
# VAE_GPU_EXTRA=1 (`VAE_GPU_EXTRA=1 docker compose up --build`; the CPU override always clears it) adds the
# `gpu` extra (torch==2.13.0 and triton==3.7.1, the triton that torch release pins, its CUDA libraries 13.0 as
# the base image's: the kernel tier, VAE_KERNEL_TIER) and the C compiler Triton builds its launcher with.
# onnxruntime-gpu is pinned to the release built for that CUDA and cuDNN (deploy/image-constraints.txt); the
# host needs an NVIDIA driver >= 580. No training, no tests.
# Layers go from the least to the most often changed: system Python, the dependencies (the list in
# pyproject.toml), then the code and the models, so that a code change does not reinstall the dependencies.
FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04 AS python
ARG VAE_GPU_EXTRA=

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# The virtual environment is made by root in /opt (the build can write there); the user `vae` only reads it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
        $([ "$VAE_GPU_EXTRA" = 1 ] && echo gcc libc6-dev python3-dev) \
    && apt-get clean && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin vae

# The requirement list alone, so that an edit elsewhere in pyproject.toml leaves the dependency layer cached:
# [project].dependencies and the [build-system] backend, one per line, and the `gpu` extra with VAE_GPU_EXTRA=1.
FROM python AS requirements
ARG VAE_GPU_EXTRA=
COPY pyproject.toml /build/pyproject.toml
RUN python3 -c 'import os, tomllib; p = tomllib.load(open("/build/pyproject.toml", "rb")); extra = p["project"]["optional-dependencies"]["gpu"] if os.environ.get("VAE_GPU_EXTRA") == "1" else []; print(*p["project"]["dependencies"], *p["build-system"]["requires"], *extra, sep="\n")' > /build/requirements.txt

FROM python
COPY --from=requirements /build/requirements.txt /opt/vae/requirements.txt
COPY deploy/image-constraints.txt /opt/vae/constraints.txt
RUN /opt/venv/bin/pip install -r /opt/vae/requirements.txt -c /opt/vae/constraints.txt

# The service's code, installed without dependencies (they are all above) and without the network.
COPY pyproject.toml README.md /tmp/src/
COPY modelrepo /tmp/src/modelrepo
COPY service /tmp/src/service
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation /tmp/src \
    && /opt/venv/bin/pip check \
    && rm -rf /tmp/src
COPY models /opt/vae/models

USER vae
WORKDIR /opt/vae
# ORT_DISABLE_TELEMETRY: ONNX Runtime 1.31 would otherwise keep a device ID under ~/.cache (read-only here,
# so it warns at every start) and send usage events from the server.
# TRITON_HOME: Triton's kernel cache, on the container's one writable path (with VAE_GPU_EXTRA=1).
ENV VAE_HOST=0.0.0.0 VAE_PORT=8000 VAE_MODEL_REPOSITORY=/opt/vae/models ORT_DISABLE_TELEMETRY=1 \
    TRITON_HOME=/tmp/triton
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["/opt/venv/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['VAE_PORT'] + '/health/ready', timeout=2)"]
# The server itself is PID 1, so that `docker compose stop` (SIGTERM) reaches it: it drains and exits 0.
CMD ["/opt/venv/bin/python", "-m", "service"]

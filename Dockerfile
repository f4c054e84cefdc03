# vae-serve on the GPU: onnxruntime-gpu 1.31 runs its CUDA provider on CUDA 13 with cuDNN 9.
# Without a GPU the same image serves on ONNX Runtime's CPU provider (VAE_DEVICE=auto).
FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv make curl ca-certificates \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 vae
WORKDIR /app
COPY --chown=vae:vae pyproject.toml README.md Makefile ./
COPY --chown=vae:vae modelrepo ./modelrepo
COPY --chown=vae:vae service ./service
COPY --chown=vae:vae training ./training
COPY --chown=vae:vae models ./models
USER vae

# The README's own set-up: `make serve` installs with this target when .venv is missing.
RUN make install-serve

ENV VAE_HOST=0.0.0.0 VAE_PORT=8000 VAE_MODEL_REPOSITORY=/app/models VAE_DEVICE=auto
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8000/health/ready || exit 1
CMD ["make", "serve"]

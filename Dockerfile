# Three images from one file (docs/images.md):
#   docker build --target operator    -t mmft-operator:0.1.0 .     slim: kopf, kubernetes client, pydantic; no torch
#   docker build --target workload    -t mmft-workload:0.1.0 .     mmft dataprep | train | evaluate: Axolotl, torch
#   docker build --target tensorboard -t mmft-tensorboard:0.1.0 .  the per-job TensorBoard Deployment
# The workload's torch is the H200 benchmarks' stack: PyPI's torch 2.11.0 with its CUDA 13.0 libraries
# (docker/constraints.txt). --build-arg TORCH_VARIANT=cpu replaces those libraries by no-device stubs: 2.7 GB
# smaller, for clusters without GPUs (docker/cuda_stubs.py).
# The base is Docker Hub's Python image, pinned; pin it by digest (@sha256:...) in your registry mirror for full
# reproducibility. localcluster/build-images.sh passes a Debian bookworm base made without any registry, and ready
# dependency images (the *_DEPS_IMAGE arguments), so that an unchanged dependency set is never installed twice.
# Downloads trust /etc/ssl/certs/ca-certificates.crt, which a build may replace for its RUN steps with a secret
# (`--secret id=ca-certificates,src=...`, as build-images.sh does with the building machine's own bundle: a proxy that
# intercepts TLS is trusted during the build and never baked into the image).
# Only features of the Dockerfile frontend built into Docker 20.10 and later are used (no `# syntax=` line: that
# pulls a frontend image).
ARG BASE_IMAGE=python:3.11.11-slim-bookworm
ARG OPERATOR_DEPS_IMAGE=operator-deps
ARG WORKLOAD_DEPS_IMAGE=workload-deps
ARG TORCH_VARIANT=cuda

# A virtual environment owned by root, a non-root user 1000 (the operator's runAsUser), and writable caches: pods
# may run with any HOME, so the caches are named explicitly.
FROM ${BASE_IMAGE} AS python-base
ENV VIRTUAL_ENV=/opt/mmft \
    PATH=/opt/mmft/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    HOME=/home/mmft \
    XDG_CACHE_HOME=/home/mmft/.cache \
    HF_HOME=/home/mmft/.cache/huggingface \
    TRITON_CACHE_DIR=/home/mmft/.cache/triton \
    TORCHINDUCTOR_CACHE_DIR=/home/mmft/.cache/torchinductor \
    MPLCONFIGDIR=/home/mmft/.cache/matplotlib
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=ca-certificates,target=/etc/ssl/certs/ca-certificates.crt \
    python3 -m venv /opt/mmft \
 && pip install "pip>=25" "setuptools>=69" wheel \
 && useradd --uid 1000 --user-group --create-home --home-dir /home/mmft --shell /bin/bash mmft \
 && install -d -o 1000 -g 1000 -m 0775 /workspace /home/mmft/.cache \
 && chmod 1777 /tmp
WORKDIR /workspace

# Each step binds only the helper files it reads: BuildKit keys a step by their content, so changing one helper
# re-runs only the steps that read it (never the long install for an edit of cuda_stubs.py).
FROM python-base AS operator-deps
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=ca-certificates,target=/etc/ssl/certs/ca-certificates.crt \
    --mount=type=bind,source=pyproject.toml,target=/tmp/build/pyproject.toml \
    --mount=type=bind,source=docker/requirements.py,target=/tmp/build/requirements.py \
    python3 /tmp/build/requirements.py /tmp/build/pyproject.toml >/tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# Every package the workloads import; torch, torchvision and Axolotl's pins as the H200 benchmarks ran them.
FROM python-base AS workload-packages
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=ca-certificates,target=/etc/ssl/certs/ca-certificates.crt \
    --mount=type=bind,source=pyproject.toml,target=/tmp/build/pyproject.toml \
    --mount=type=bind,source=docker/requirements.py,target=/tmp/build/requirements.py \
    --mount=type=bind,source=docker/constraints.txt,target=/tmp/build/constraints.txt \
    python3 /tmp/build/requirements.py /tmp/build/pyproject.toml dataprep trainer evaluator >/tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt -c /tmp/build/constraints.txt \
 && rm /tmp/requirements.txt

FROM workload-packages AS workload-deps-cuda

# The CPU variant: each CUDA library torch links against becomes a stub that exports the same symbols and versions and
# answers every call as CUDA does without a device (docker/cuda_stubs.py), made with the base's compiler. The packages
# are copied without the CUDA libraries in the same step that adds the stubs: one layer, no 2.7 GB left underneath.
FROM ${BASE_IMAGE} AS cuda-stubs
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev binutils \
 && rm -rf /var/lib/apt/lists/*
COPY --from=workload-packages /opt/mmft/lib/python3.11/site-packages/nvidia /nvidia
RUN --mount=type=bind,source=docker/cuda_stubs.py,target=/tmp/build/cuda_stubs.py \
    python3 /tmp/build/cuda_stubs.py /nvidia

FROM python-base AS workload-deps-cpu
RUN --mount=type=bind,from=workload-packages,source=/opt/mmft,target=/tmp/packages \
    --mount=type=bind,from=cuda-stubs,source=/nvidia,target=/tmp/nvidia \
    tar -C /tmp/packages --exclude=./lib/python3.11/site-packages/nvidia -cf - . | tar -C /opt/mmft -xf - \
 && cp -a /tmp/nvidia /opt/mmft/lib/python3.11/site-packages/nvidia \
 && python3 -c "import torch; assert not torch.cuda.is_available(); assert (torch.ones(2, 2) @ torch.ones(2)).sum() == 4"

FROM workload-deps-${TORCH_VARIANT} AS workload-deps

# The project itself, last: a code change rebuilds only this layer.
FROM scratch AS source
COPY pyproject.toml README.md /src/
COPY operator/ /src/operator/
COPY trainer/ /src/trainer/
COPY evaluator/ /src/evaluator/
COPY dataprep/ /src/dataprep/
COPY storage/ /src/storage/
COPY localcluster/ /src/localcluster/

FROM ${OPERATOR_DEPS_IMAGE} AS operator
RUN --mount=type=bind,from=source,source=/src,target=/src,rw \
    pip install --no-cache-dir --no-deps --no-build-isolation /src \
 && python3 -c "import sys, mmft_operator.handlers; assert 'torch' not in sys.modules"
USER 1000:1000
ENTRYPOINT ["mmft"]
CMD ["operator", "--all-namespaces"]

FROM ${WORKLOAD_DEPS_IMAGE} AS workload
# Telemetry would hang a finished run for minutes on a cluster without egress.
ENV AXOLOTL_DO_NOT_TRACK=1 \
    HF_HUB_DISABLE_TELEMETRY=1
RUN --mount=type=bind,from=source,source=/src,target=/src,rw \
    pip install --no-cache-dir --no-deps --no-build-isolation /src
USER 1000:1000
ENTRYPOINT ["mmft"]

FROM python-base AS tensorboard
ARG TENSORBOARD_VERSION=2.21.0
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=ca-certificates,target=/etc/ssl/certs/ca-certificates.crt \
    pip install "tensorboard==${TENSORBOARD_VERSION}"
USER 1000:1000
EXPOSE 6006
ENTRYPOINT ["tensorboard"]
CMD ["--logdir=/workspace", "--host=0.0.0.0", "--port=6006"]

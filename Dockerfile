# syntax=docker/dockerfile:1.7
# Two images from one file:
#   docker build --target operator -t mmft-operator:0.1.0 .   slim: kopf, kubernetes client, pydantic; no torch
#   docker build --target workload -t mmft-workload:0.1.0 .   mmft dataprep | train | evaluate on Axolotl's image
# Bases are pinned to exact versions; pin by digest (@sha256:...) in your registry mirror for full reproducibility.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
ARG AXOLOTL_IMAGE=axolotlai/axolotl:0.19.0-py3.11-cu128-2.8.0

FROM ${PYTHON_IMAGE} AS operator-build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY trainer/ trainer/
COPY evaluator/ evaluator/
COPY dataprep/ dataprep/
COPY localcluster/ localcluster/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && pip wheel --no-cache-dir --wheel-dir /wheels "kopf>=1.45,<2" "kubernetes>=30" "pydantic>=2.7,<3" "pyyaml>=6" \
        "prometheus-client>=0.20"

FROM ${PYTHON_IMAGE} AS operator
RUN useradd --uid 1000 --create-home mmft
COPY --from=operator-build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels mmft && rm -rf /wheels \
 && python -c "import sys, mmft_operator.handlers; assert 'torch' not in sys.modules"
USER 1000:1000
ENTRYPOINT ["mmft"]
CMD ["operator", "--all-namespaces"]

FROM ${AXOLOTL_IMAGE} AS workload
# Telemetry would hang a finished run for minutes on a cluster without egress.
ENV AXOLOTL_DO_NOT_TRACK=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    PYTHONUNBUFFERED=1
WORKDIR /opt/mmft
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY trainer/ trainer/
COPY evaluator/ evaluator/
COPY dataprep/ dataprep/
COPY localcluster/ localcluster/
# Axolotl, torch, transformers and peft come from the base image; add only what mmft needs on top.
RUN pip install --no-cache-dir ".[dataprep]" "matplotlib>=3.8" "google-cloud-storage>=2.16" \
 && useradd --uid 1000 --create-home mmft
USER 1000:1000
ENTRYPOINT ["mmft"]

# syntax=docker/dockerfile:1
# The modelroute-operator image. Two stages: the builder installs the locked dependencies and the
# operator (as a wheel, not editable) into /opt/venv with a pinned uv; the final stage is the same
# slim Python base with only that venv copied in, no compiler, no uv, no caches, no source tree.
#
#   docker build -t registry.example.com/modelroute-operator:0.1.0 .
#
# tests/unit/test_dockerfile.py lints this file and runs the builder stage's commands in a clean
# virtualenv, so edit it with that test at hand.

FROM python:3.11.14-slim-bookworm AS builder

# The same uv as the Makefile (UV_VERSION); only the lock file decides what gets installed.
ARG UV_VERSION=0.13.8
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON_PREFERENCE=only-system \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN pip install --no-cache-dir "uv==${UV_VERSION}"

WORKDIR /src

# Dependencies first, from uv.lock only (--frozen: the lock is used as is, never re-resolved), in
# a layer of their own that survives changes to the operator's code.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project

# Then the operator itself, built as a wheel and installed non-editable into the venv.
COPY operator/ ./operator/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable


FROM python:3.11.14-slim-bookworm

LABEL org.opencontainers.image.title="modelroute-operator" \
      org.opencontainers.image.description="Keeps one stable Service pointed at the best healthy LLM backend." \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"

# A named account for the numeric UID, so tools that look the user up (getpass) find one.
RUN groupadd --system --gid 65532 modelroute \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin modelroute

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 65532:65532

# 8080: /metrics; 8081: /healthz and /readyz.
EXPOSE 8080 8081

ENTRYPOINT ["modelroute-operator"]

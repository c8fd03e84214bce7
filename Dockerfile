# syntax=docker/dockerfile:1
#
# One image for every Stockwire service. The command picks the service:
#   python -m services.ingress            (port 8080)
#   python -m services.inventory          (port 8081)
#   python -m services.channel_notifier   (port 8082)
#   python -m services.outbox_relay       (port 8083, health and metrics only)
#   python -m services.console            (port 8084, the operator console)
#   stockwire topology apply              (one-off: declare the JetStream topology)
#
# The image runs as an unprivileged user and works with a read-only root filesystem: the only
# places it writes are /tmp and the data directory (/data), both declared as volumes. The Helm
# chart in deploy/k8s/chart mounts an emptyDir or a PersistentVolumeClaim on each.
#
# Targets: `runtime` (the default, last stage) for clusters; `dev` (used by the Tiltfile) has the
# sources owned by the app user so that Tilt's live update can sync edited files into /app.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app
# A fixed numeric uid/gid so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 stockwire \
 && useradd --system --uid 10001 --gid stockwire --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin stockwire
WORKDIR /app

FROM base AS builder
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
# Third-party dependencies get a layer of their own, keyed on pyproject.toml only, so that editing
# the sources does not reinstall them. Every dependency ships manylinux wheels: no compiler needed.
# The `otlp` extra (the span exporter of `[tracing] exporter = "otlp"`) goes in too; no other extra.
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['otlp']))" \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt
COPY libs ./libs
COPY services ./services
COPY stockwire ./stockwire
# The project itself, editable: the venv gets its metadata and the `stockwire` console script,
# while the code stays in /app (also on PYTHONPATH), where Tilt's live update syncs it.
# Byte-compile now, since a read-only root filesystem cannot take __pycache__ at run time.
RUN pip install --no-deps --editable . \
 && python -m compileall -q libs services stockwire

FROM base AS app
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
ENV STOCKWIRE_DATA_DIR=/data
RUN mkdir -p /data && chown stockwire:stockwire /data
VOLUME ["/data", "/tmp"]
EXPOSE 8080 8081 8082 8083 8084
CMD ["python", "-m", "services.ingress"]

# Local development only (Tilt): sources writable by the app user for live update.
FROM app AS dev
RUN chown -R stockwire:stockwire /app
USER 10001:10001

# The production image: the sources belong to root and cannot be changed by the service.
FROM app AS runtime
USER 10001:10001

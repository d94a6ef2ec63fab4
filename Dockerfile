# fulfill's container image: one image, the roles chosen by its command.
#
#   docker build -t fulfill:0.1.0 .
#   docker run --rm -e FULFILL_DATABASE_URL=… fulfill:0.1.0 migrate            # the schema, once per upgrade
#   docker run -d -e FULFILL_DATABASE_URL=… -e FULFILL_JWT_SECRET=… -p 8080:8080 fulfill:0.1.0 serve --role api
#   docker run -d -e FULFILL_DATABASE_URL=… -e FULFILL_JWT_SECRET=… -e FULFILL_EXECUTOR_ID=worker-1 fulfill:0.1.0 serve --role worker
#
# No secret is baked in: every setting comes from the environment at run time (README,
# "Configuration"; docs/OPERATIONS.md, "Deploying with containers").

# --- build: the wheel, and a virtual environment with it and its dependencies ----------------------
FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/fulfill \
    && /opt/fulfill/bin/pip install /wheels/fulfill-*.whl "psycopg[binary]>=3.3,<3.4"

# --- runtime: the environment only, run by an unprivileged user -----------------------------------
FROM python:3.11.14-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="fulfill" \
      org.opencontainers.image.description="Executes approved AI-agent actions through an MCP tool gateway, exactly once, stoppable, audited." \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 fulfill \
    && useradd --system --uid 10001 --gid fulfill --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin fulfill
COPY --from=build /opt/fulfill /opt/fulfill
# Listen on every interface of the container, port 8080; nothing is written beside the code
# (no bytecode; PostgreSQL holds every state), so the root file system can be read-only.
ENV PATH="/opt/fulfill/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DBOS__DISABLE_TELEMETRY=true \
    FULFILL_HOST=0.0.0.0 \
    FULFILL_PORT=8080
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080
# Liveness: the process answers. Readiness for its role (/readyz) is the orchestrator's probe.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('FULFILL_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["fulfill"]
# The role: serve --role api | serve --role worker | serve (both, FULFILL_ROLE) | migrate.
CMD ["serve"]

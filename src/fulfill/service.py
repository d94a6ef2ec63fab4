"""The composition root: builds every part of a fulfill process and starts and stops them.

One process can play every role (the embedded default) or only some: ``api`` serves HTTP and the
MCP gateway and enqueues executions; ``worker`` runs workflows, the outbox relay and the
reconciler; ``all`` does both.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dbos import DBOS, DBOSConfig
from mcp.server.mcpserver import MCPServer
from sqlalchemy import text

from fulfill import __version__, metrics, tracing
from fulfill.clock import SystemClock
from fulfill.config import WORKFLOWS_STOP_SECONDS, Settings, unknown_variables
from fulfill.connectors.internal import InternalConnector
from fulfill.connectors.salesforce import SalesforceConnector
from fulfill.credentials.crypto import SecretBox
from fulfill.credentials.vault import ConfigurationError, CredentialVault, check_secrets_key
from fulfill.domain.ports import Clock
from fulfill.domain.retention import EXECUTION_WORKFLOW
from fulfill.engine import runtime as runtime_module
from fulfill.engine.direct_start import DirectStarts, dbos_queue_waiting
from fulfill.engine.escalation import Escalator
from fulfill.engine.heartbeat import Heartbeat
from fulfill.engine.ledger_checkpoints import LedgerCheckpointer
from fulfill.engine.outbox_relay import OutboxRelay
from fulfill.engine.probes import Prober
from fulfill.engine.reconciler import Reconciler
from fulfill.engine.retention import OutboxRetention, WorkflowRetention
from fulfill.engine.runtime import Runtime
from fulfill.engine.workflow import EXECUTION_QUEUE
from fulfill.gateway.client import McpToolGateway
from fulfill.gateway.inprocess import InProcessToolGateway
from fulfill.gateway.lookups import ActionLookups
from fulfill.gateway.remote import RemoteTargets
from fulfill.gateway.server import GatewayServer, GatewayTokenVerifier, build_gateway
from fulfill.gateway.target_auth import EncryptedTargetSecrets, OAuthTokens, check_target_secrets_key
from fulfill.gateway.targets import GatewayToolSchemas, TargetCatalog
from fulfill.metrics_access import MetricsListener
from fulfill.ports.store import Store
from fulfill.store.db import Database, ping_after_idle, queue_sqlite_writers
from fulfill.store.migrate import upgrade_to_head
from fulfill.store.sql_store import SqlStore
from fulfill.tokens import ServiceTokens, TokenVerifier
from fulfill.usecases.registry import seed_default_registry
from fulfill.usecases.shared_state import read_shared_state
from fulfill.usecases.targets import TargetAdmin

log = logging.getLogger("fulfill")


class Service:
    def __init__(self, settings: Settings, *, clock: SystemClock | None = None) -> None:
        # An in-memory SQLite URL cannot hold DBOS's tables: say so before opening anything.
        _ = settings.system_database_url
        self.settings = settings
        self.clock = clock or SystemClock()
        # Before anything makes a span: the process's tracer provider (export is added at start).
        tracing.install(settings.role)
        self._otlp_export: tracing.OtlpExport | None = None
        self.db = Database(settings.database_url, max_idle_seconds=settings.database_max_idle_seconds)
        self.store = SqlStore(self.db)
        self.token_verifier = TokenVerifier(settings)
        self.internal_connector = InternalConnector(self.store, self.clock)
        self.credential_vault = credential_vault(self.db, settings, self.clock)
        self.salesforce_connector = SalesforceConnector(
            self.store, self.clock, settings, vault=self.credential_vault
        )
        # Gateway targets: every process reads them from the database and follows changes.
        self.target_secrets = target_secrets(self.db, self.credential_vault.box, self.clock)
        self.target_catalog = TargetCatalog(
            self.db,
            self.target_secrets,
            refresh_seconds=settings.gateway_targets_refresh_seconds,
            pattern_timeout=settings.schema_pattern_timeout_seconds,
        )
        oauth_tokens = OAuthTokens()
        self.gateway_server = build_gateway(
            self.token_verifier,
            [*self.internal_connector.tools(), *self.salesforce_connector.tools()],
            public_url=settings.effective_gateway_url,
            catalog=self.target_catalog,
            remote=RemoteTargets(
                settings.egress_allow,
                tokens=oauth_tokens,
                max_response_bytes=settings.gateway_max_response_bytes,
            ),
            call_timeout_seconds=settings.gateway_call_timeout_seconds,
        )
        self.tool_gateway = _tool_gateway(
            settings, self.gateway_server, self.token_verifier, self.target_catalog.needs_confirmation
        )
        tool_schemas = GatewayToolSchemas(_tool_schemas(self.gateway_server), self.target_catalog)
        self.target_admin = target_admin(
            self.store,
            settings,
            self.target_secrets,
            self.clock,
            reserved_namespaces=tool_schemas.internal_namespaces,
            catalog=self.target_catalog,
            tokens=oauth_tokens,
        )
        self.runtime = Runtime(
            settings=settings,
            clock=self.clock,
            gateway=self.tool_gateway,
            store=self.store,
            tool_schemas=tool_schemas,
            needs_confirmation=self.target_catalog.needs_confirmation,
            lookup=ActionLookups(
                {"internal": self.internal_connector, "crm": self.salesforce_connector},
                self.target_catalog,
                self.tool_gateway,
            ),
        )
        self._relay: OutboxRelay | None = None
        self.metrics_listener: MetricsListener | None = None
        self._reconciler: Reconciler | None = None
        self._escalator: Escalator | None = None
        self._prober: Prober | None = None
        self._checkpointer: LedgerCheckpointer | None = None
        self._retention: WorkflowRetention | None = None
        self._outbox_retention: OutboxRetention | None = None
        self._heartbeat: Heartbeat | None = None
        self._engine_ready = threading.Event()
        # Set once the process is asked to stop, before the requests in flight are waited for:
        # a request that would wait longer (an agent's call waiting for its outcome) answers now.
        self.stopping = threading.Event()

    @property
    def executor_id(self) -> str:
        return self.settings.executor_id or f"{socket.gethostname()}:{self.settings.port}"

    @property
    def engine_ready(self) -> bool:
        return self._engine_ready.is_set()

    def database_answers(self) -> bool:
        """Whether the database answers a query now (readiness)."""
        try:
            with self.db.read() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    def prepare_database(self) -> None:
        """Migrate the schema and seed the default registry; both are safe to repeat. Stored
        connector credentials need FULFILL_SECRETS_KEY (a ConfigurationError otherwise)."""
        upgrade_to_head(self.db)
        # Both checks, then one error: whoever lost the key learns every way out at once.
        problems: list[str] = []
        for check in (check_secrets_key, check_target_secrets_key):
            try:
                check(self.db, self.salesforce_connector.vault.box)
            except ConfigurationError as exc:
                problems.append(str(exc))
        if problems:
            raise ConfigurationError("; and ".join(problems))
        seed_default_registry(self.store, self.clock.now_iso())
        if not self.settings.public_url:
            with self.store.read() as uow:
                notified = uow.notifications.tenants_with_channels()
            if notified:
                log.warning(
                    "%d tenant(s) have notification channels but FULFILL_PUBLIC_URL is not set: "
                    "notifications carry no link to the console",
                    len(notified),
                )

    def start(self) -> None:
        self.stopping.clear()
        if self.settings.auth_mode == "dev" and self.settings.uses_dev_secret:
            log.warning(
                "FULFILL_JWT_SECRET is the development default: set your own before exposing this service"
            )
        for warning in unknown_variables(os.environ):
            log.warning("%s", warning)
        if self.settings.stop_may_cut_gateway_calls:
            log.warning(
                "FULFILL_SHUTDOWN_GRACE_SECONDS is not above FULFILL_GATEWAY_CALL_TIMEOUT_SECONDS: a stop "
                "can cut a gateway call in flight, and its execution ends AMBIGUOUS"
            )
        if self.settings.metrics_unprotected_beyond_loopback:
            log.warning(
                "/metrics is open to every host that reaches this listener: set FULFILL_METRICS_TOKEN, "
                "or FULFILL_METRICS_PORT with a loopback or private FULFILL_METRICS_HOST"
            )
        self.prepare_database()
        runs_workers = self.settings.role in ("all", "worker")
        # Before DBOS starts, so that a sink that cannot be configured stops the start cleanly.
        relay = OutboxRelay(self.runtime) if runs_workers else None
        # Bound before DBOS starts too: a port that is taken stops the start before anything runs.
        if self.settings.metrics_port is not None:
            self.metrics_listener = MetricsListener(
                self.settings.metrics_host,
                self.settings.metrics_port,
                self.settings.metrics_token.get_secret_value(),
                self.settings.request_header_timeout_seconds,
            ).start()
        runtime_module.install(self.runtime)
        config: DBOSConfig = {
            "name": "fulfill",
            "system_database_url": self.settings.system_database_url,
            "application_version": __version__,
            "log_level": "WARNING",
            "max_executor_threads": self.settings.worker_concurrency + 16,
            # A restarted worker recovers the workflows of its own id, and only those: processes
            # sharing one id would each resume the others' running workflows at start.
            "executor_id": self.executor_id,
            # fulfill waits on no DBOS notification (no recv, no get_event), so this loop has
            # nothing to look up; its sleep is only how long a stop waits for the thread to end.
            "notification_listener_polling_interval_sec": 0.1,
        }
        if self.settings.is_sqlite:
            _enable_wal(self.settings.system_database_url)
            # DBOS's engine pings each connection before every checkout by default (a `SELECT 1`,
            # about eight per execution). A SQLite connection is a handle on a file, which
            # nothing can drop while it sits in the pool: the ping would never find one gone.
            config["db_engine_kwargs"] = {"pool_pre_ping": False}
        else:
            # DBOS's engine pings each connection before every checkout by default; here it is
            # pinged only after idleness, and hands out the connection given back last, as
            # fulfill's own (store/db.py ping_after_idle, attached after launch). DBOS merges
            # these keyword arguments into its defaults (pool size, timeout, application name,
            # connect timeout stay as DBOS sets them).
            config["db_engine_kwargs"] = {"pool_pre_ping": False, "pool_use_lifo": True}
        # Before DBOS's own recovery of this executor id (in launch): its directly started
        # executions are handed back to the execution queue, never to DBOS's internal one.
        _name_the_queue_of_started_executions(self.settings.system_database_url, [self.executor_id])
        endpoint = self.settings.otlp_traces_endpoint
        if endpoint and self._otlp_export is None:
            self._otlp_export = tracing.OtlpExport(endpoint)
        # DBOS makes a span for each workflow and step, on the provider installed above (it
        # exports nothing itself), and keeps the enqueuer's trace context with each workflow.
        # Its `enable_otlp` would also import the OTLP log and span exporters and protobuf
        # (~2.3 MiB resident) to export nothing, as DBOS is given no endpoint: so it is left
        # off and DBOS's tracer is switched on directly, which is all the spans need.
        DBOS(config=config)
        DBOS.tracer.disable_otlp = False
        DBOS.listen_queues([EXECUTION_QUEUE] if runs_workers else [])
        DBOS.launch()
        _tune_dbos_system_engine(self.settings.database_max_idle_seconds)
        DBOS.register_queue(
            EXECUTION_QUEUE,
            worker_concurrency=self.settings.worker_concurrency,
            polling_interval_sec=self.settings.queue_poll_seconds,
            on_conflict="always_update",
        )
        if runs_workers and self.settings.direct_start:
            self.runtime.direct_starts = DirectStarts(
                self.settings.worker_concurrency,
                EXECUTION_QUEUE,
                queue_waiting=functools.partial(dbos_queue_waiting, app_version=__version__),
                recheck_seconds=self.settings.queue_poll_seconds,
            )
        # /metrics reports what every process shares (connectors, attempts past budget, outbox,
        # kill switches), read from the database at each scrape.
        metrics.SHARED_STATE.set_source(self._shared_state, cache_seconds=self.settings.metrics_cache_seconds)
        if relay is not None:
            self._relay = relay
            self._relay.start()
            self._reconciler = Reconciler(self.runtime)
            self._reconciler.start()
            self._escalator = Escalator(self.runtime)
            self._escalator.start()
            self._prober = Prober(self.runtime)
            self._prober.start()
            self._checkpointer = LedgerCheckpointer(self.runtime)
            self._checkpointer.start()
            self._retention = WorkflowRetention(self.runtime)
            self._retention.start()
            self._outbox_retention = OutboxRetention(self.runtime)
            self._outbox_retention.start()
            # Workers beat, and take over the workflows of a worker that stopped beating (one
            # that came back under another executor id, or never came back).
            self._heartbeat = Heartbeat(
                self.store, self.settings, self.executor_id, recover=_recover_executor
            )
            self._heartbeat.start()
        self._engine_ready.set()
        log.info(
            "fulfill %s started (role %s, database %s)", __version__, self.settings.role, _redact(self.db)
        )

    def _shared_state(self) -> metrics.SharedState:
        return read_shared_state(
            self.store,
            now_epoch=self.clock.now(),
            known_connectors=self.runtime.connector_names(),
            environment_stop=self.settings.global_execution_stop,
            tenant_labels=self.settings.metrics_tenant_labels,
            ambiguous_alert_seconds=self.settings.ambiguous_alert_seconds,
        )

    def stop(self) -> None:
        self.stopping.set()
        self._engine_ready.clear()
        self.runtime.direct_starts = None  # what is accepted while stopping waits on the queue
        if self.metrics_listener is not None:
            self.metrics_listener.stop()
            self.metrics_listener = None
        metrics.SHARED_STATE.clear_source(self._shared_state)
        if self._relay is not None:
            self._relay.stop()
        if self._reconciler is not None:
            self._reconciler.stop()
        if self._escalator is not None:
            self._escalator.stop()
        if self._prober is not None:
            self._prober.stop()
        if self._checkpointer is not None:
            self._checkpointer.stop()
        if self._retention is not None:
            self._retention.stop()
        if self._outbox_retention is not None:
            self._outbox_retention.stop()
        if self._heartbeat is not None:
            self._heartbeat.stop()
        # Calls waiting for their connector leave first, unfinished, for recovery to resume.
        self.runtime.flow.close()
        _destroy_dbos(workflow_completion_timeout_seconds=WORKFLOWS_STOP_SECONDS)
        self.tool_gateway.close()
        self.salesforce_connector.close()
        if self._otlp_export is not None:
            self._otlp_export.stop()
            self._otlp_export = None
        runtime_module.install(None)
        self.db.dispose()


def _destroy_dbos(workflow_completion_timeout_seconds: float) -> None:
    """``DBOS.destroy`` once the workflows still running in this process have ended (or the
    timeout has passed).

    DBOS's own wait (``workflow_completion_timeout_sec``) sleeps a whole second before it first
    looks, even when nothing runs, so every stop took over a second. This is the same wait, done
    the same way (the queues stop handing out work first, then the running workflows are
    awaited), looking every 20 ms.
    """
    import dbos._dbos as dbos_internals  # the running instance and its set of active workflows

    instance = dbos_internals._dbos_global_instance
    if instance is not None and instance._launched:
        for event in instance.background_thread_stop_events:
            event.set()
        deadline = time.monotonic() + workflow_completion_timeout_seconds
        while instance._active_workflows_set.activeList() and time.monotonic() < deadline:
            time.sleep(0.02)
    DBOS.destroy(workflow_completion_timeout_sec=0)


# The namespaces of the in-process connectors' tools (``internal.*``, ``crm.*``): no target may
# take one of them.
CONNECTOR_NAMESPACES = frozenset({"internal", "crm"})


# --- the parts that the service and the command line's database operator both build --------------


def secret_box(settings: Settings) -> SecretBox:
    """The key that seals connector credentials and gateway target secrets (FULFILL_SECRETS_KEY)."""
    return SecretBox.from_setting(settings.secrets_key.get_secret_value())


def credential_vault(db: Database, settings: Settings, clock: Clock) -> CredentialVault:
    """The tenants' connector credentials, sealed with FULFILL_SECRETS_KEY."""
    return CredentialVault(db, secret_box(settings), clock)


def target_secrets(db: Database, box: SecretBox, clock: Clock) -> EncryptedTargetSecrets:
    return EncryptedTargetSecrets(db, box, clock.now_iso)


def target_admin(
    store: Store,
    settings: Settings,
    secrets: EncryptedTargetSecrets,
    clock: Clock,
    *,
    reserved_namespaces: Iterable[str],
    catalog: TargetCatalog | None = None,
    tokens: OAuthTokens | None = None,
) -> TargetAdmin:
    """Gateway targets' administration; a running service also gives it its catalog (refreshed
    at once on a change) and its OAuth token cache (forgotten on a change)."""
    return TargetAdmin(
        store,
        secrets,
        allow=settings.egress_allow,
        now_iso=clock.now_iso,
        reserved_namespaces=reserved_namespaces,
        discovery_timeout=settings.gateway_discovery_timeout_seconds,
        max_response_bytes=settings.gateway_max_response_bytes,
        catalog=catalog,
        tokens=tokens,
    )


def _tool_gateway(
    settings: Settings, server: MCPServer, verifier: TokenVerifier, confirm: Callable[[str], bool]
) -> McpToolGateway:
    """The engine's way to its gateway: in memory to this process's own gateway unless
    ``FULFILL_GATEWAY_URL`` names one to reach over HTTP."""
    tokens = ServiceTokens(settings)
    if settings.gateway_url:
        # A connection for each execution this worker may run at once: the pool never bounds
        # the calls in flight (FULFILL_WORKER_CONCURRENCY does).
        return McpToolGateway(
            settings.gateway_url, tokens, confirm=confirm, max_connections=settings.worker_concurrency
        )
    return InProcessToolGateway(server, GatewayTokenVerifier(verifier), tokens, confirm=confirm)


def _tool_schemas(server: GatewayServer) -> dict[str, dict[str, Any]]:
    """The in-process connectors' tools (targets' tools come from the catalog, kept current)."""
    # internal_tools is async; run it on its own loop, whatever loop the caller may be on.
    with ThreadPoolExecutor(max_workers=1) as pool:
        tools = pool.submit(asyncio.run, server.internal_tools()).result()
    return {tool.name: tool.input_schema for tool in tools}


def _started_directly_without_queue(schema: str | None) -> Any:
    """The rows of executions started directly (``engine/direct_start.py``), unfinished and naming
    no queue, of the executor ids bound as ``executor_ids`` (an expanding parameter)."""
    import sqlalchemy as sa

    table = sa.table(
        "workflow_status",
        sa.column("queue_name"),
        sa.column("executor_id"),
        sa.column("status"),
        sa.column("name"),
        schema=schema,
    )
    return (
        sa.update(table)
        .where(
            table.c.executor_id.in_(sa.bindparam("executor_ids", expanding=True)),
            table.c.status == "PENDING",
            table.c.queue_name.is_(None),
            table.c.name == EXECUTION_WORKFLOW,
        )
        .values(queue_name=EXECUTION_QUEUE)
    )


def _name_the_queue_of_started_executions(system_database: Any, executor_ids: list[str]) -> int:
    """Name the execution queue on the unfinished, directly started executions of ``executor_ids``;
    answers how many. ``system_database``: DBOS's system database, its URL or an engine on it.
    Called right before each recovery of those executors (this process's own, before DBOS
    launches and recovers its id; a lost one's, before it is taken over).

    A direct start inserts the workflow's row naming no queue (DBOS names one only on an enqueue),
    and DBOS's recovery hands a row naming none to its internal queue, which every process polls,
    ``--role api`` ones too, while one naming the execution queue goes back to workers only. The
    name is written here, once per recovery, instead of by a second commit after every start:
    only a recovery reads it, and every recovery of an executor id goes through here first
    (DBOS's launch for its own id, the heartbeat's takeover for a lost one). A system database
    not created yet has nothing to name."""
    import sqlalchemy as sa

    own = isinstance(system_database, str)
    if own:
        sqlite_file = sa.engine.make_url(system_database).get_backend_name() == "sqlite"
        # Another process may be writing DBOS's file: wait for its lock as DBOS does (30 s).
        connect_args: dict[str, Any] = {"timeout": 30.0} if sqlite_file else {}
        engine: sa.Engine = sa.create_engine(
            system_database, poolclass=sa.pool.NullPool, connect_args=connect_args
        )
    else:
        engine = system_database
    sqlite = engine.dialect.name == "sqlite"
    try:
        with engine.begin() as conn:
            if sqlite:
                exists = conn.exec_driver_sql(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'workflow_status'"
                ).first()
            else:
                exists = conn.exec_driver_sql("SELECT to_regclass('dbos.workflow_status')").scalar()
            if not exists:
                return 0
            statement = _started_directly_without_queue(None if sqlite else "dbos")
            named = int(conn.execute(statement, {"executor_ids": executor_ids}).rowcount or 0)
    finally:
        if own:
            engine.dispose()
    if named:
        log.info("%d directly started executions of %s go back to the execution queue", named, executor_ids)
    return named


def _recover_executor(executor_id: str) -> int:
    """Hand a lost executor's unfinished workflows back to their queue (DBOS's own recovery, for
    another executor id); answers how many. Its directly started executions are named on the
    execution queue first, so that only workers take them up again."""
    from dbos import _dbos as dbos_internals

    instance = dbos_internals._dbos_global_instance
    if instance is not None:
        _name_the_queue_of_started_executions(instance._sys_db.engine, [executor_id])
    return len(DBOS._recover_pending_workflows([executor_id]))


def _tune_dbos_system_engine(max_idle_seconds: float) -> None:
    """DBOS's engine on its system database is given what fulfill's own has (``store/db.py``): on
    SQLite this process's threads queue for the file's writer on a lock instead of sleeping in
    SQLite's busy handler (``queue_sqlite_writers``), and no connection is pinged; on PostgreSQL a
    pooled connection is pinged on checkout only after it sat idle, and replaced unpinged after
    ``max_idle_seconds`` (``ping_after_idle``). DBOS's own pre-ping is switched off in its
    configuration on both (see :meth:`Service.start`)."""
    from dbos import _dbos as dbos_internals

    instance = dbos_internals._dbos_global_instance
    if instance is None:
        return
    engine = instance._sys_db.engine
    if engine.dialect.name == "sqlite":
        queue_sqlite_writers(engine)
    else:
        ping_after_idle(engine, max_idle_seconds=max_idle_seconds)


def _enable_wal(system_database_url: str) -> None:
    """WAL and full durability for the DBOS SQLite file too (journal mode persists in the file)."""
    database = Database(system_database_url, pool_size=1)
    with database.engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    database.dispose()


def _redact(db: Database) -> str:
    from sqlalchemy.engine import make_url

    return make_url(db.url).render_as_string(hide_password=True)

"""The tables. Every tenant-scoped key starts with tenant_id and account_id.

Unique constraints do what the reference's DynamoDB conditional writes did:

* ``execution_attempts`` has one row per intent: inserting it (QUEUED, in the transaction that
  accepts ACTION_APPROVED) is the execution lock;
* ``execution_outcomes`` is keyed by (intent, attempt): an outcome is written once per attempt;
* ``ledger_entries.entry_id`` is deterministic and unique per tenant: the ledger is append-only
  and a repeated append is a no-op;
* ``execution_signals`` is unique per (intent, attempt, signal type);
* ``internal_tasks`` / ``internal_notes`` are unique per idempotency key: a repeated tool call
  writes once;
* ``external_writes`` is keyed by the idempotency key: inserting it is the reservation an
  external connector takes before it writes (reserve → call → commit);
* ``connector_credentials`` holds one credential per (tenant, account, connector), its secrets
  encrypted; the tenant-wide one has the account id ``""``.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    literal_column,
    text,
)

from fulfill.domain.models import ACTIVE_ATTEMPT_STATUSES, AttemptStatus

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = String(128)
TS = String(32)

# An intent waiting for approval, as the partial indexes of pending intents name it. Queries carry
# the status as a constant in their text (:func:`is_pending_approval`): PostgreSQL's plan kept for
# a prepared statement (what it settles on after psycopg's fifth run) is built without the
# parameters' values, and cannot use a partial index for a status given as a parameter.
_PENDING_APPROVAL = "'PENDING_APPROVAL'"  # the status as a constant of a statement's text
PENDING_APPROVAL_SQL = f"approval_status = {_PENDING_APPROVAL}"


action_intents = Table(
    "action_intents",
    metadata,
    Column("tenant_id", ID, nullable=False),
    Column("account_id", ID, nullable=False),
    Column("action_intent_id", ID, nullable=False),
    Column("action_type", String(64), nullable=False),
    Column("approval_status", String(32), nullable=False),
    Column("registry_version", Integer, nullable=False),
    Column("expires_at_epoch", BigInteger, nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("document", JSON, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    # The execution's coarse status and last change, kept in step with attempts and outcomes in the
    # same transactions, so that an account's executions can be listed newest first in O(limit).
    Column("execution_status", String(16), nullable=False, server_default="PENDING"),
    Column("last_update_at", TS, nullable=False, server_default=""),
    # Who proposed it (the token's subject) and where it came in ("api", "mcp"); NULL for intents
    # stored before 0014. The document holds them too; the columns are for queries and audits.
    Column("proposed_by", Text, nullable=True),
    Column("proposed_via", String(16), nullable=True),
    # When the first approval window of an intent under an ESCALATE policy ends (the document's
    # escalates_at_epoch); set back to NULL once it is escalated, so the escalation sweep's query
    # only ever finds what is still to escalate. NULL for every other intent.
    Column("escalates_at_epoch", BigInteger, nullable=True),
    # The id of the ENFORCE policy that decides its approval (NULL: the default rule); kept from
    # creation (0020), for the approvals queue's policy filter.
    Column("policy_id", String(80), nullable=True),
    PrimaryKeyConstraint("tenant_id", "account_id", "action_intent_id"),
    # An intent id is unique within its tenant (whatever the account), not across tenants.
    UniqueConstraint("tenant_id", "action_intent_id"),
    Index(
        "ix_action_intents_account_recent", "tenant_id", "account_id", "last_update_at", "action_intent_id"
    ),
    Index(
        "ix_action_intents_account_status_recent",
        "tenant_id",
        "account_id",
        "execution_status",
        "last_update_at",
        "action_intent_id",
    ),
    # The console's approvals page pages through a tenant's pending intents by creation time, and
    # filters them by account, by proposer or by deciding policy. Partial (migration 0026): they
    # hold the intents waiting for approval only, so a decided intent leaves them and no later
    # write to it goes into them. A query reaches them in every plan by naming the status as
    # written here (:func:`is_pending_approval`), not as a parameter.
    Index(
        "ix_action_intents_pending",
        "tenant_id",
        "created_at",
        "action_intent_id",
        sqlite_where=text(PENDING_APPROVAL_SQL),
        postgresql_where=text(PENDING_APPROVAL_SQL),
    ),
    Index(
        "ix_action_intents_pending_proposer",
        "tenant_id",
        "proposed_by",
        "created_at",
        "action_intent_id",
        sqlite_where=text(PENDING_APPROVAL_SQL),
        postgresql_where=text(PENDING_APPROVAL_SQL),
    ),
    # One account's (the page's account filter, and a token limited to some accounts): without
    # it, such a page read the tenant's every pending intent until it had found a page of the
    # account's (migration 0027).
    Index(
        "ix_action_intents_pending_account",
        "tenant_id",
        "account_id",
        "created_at",
        "action_intent_id",
        sqlite_where=text(PENDING_APPROVAL_SQL),
        postgresql_where=text(PENDING_APPROVAL_SQL),
    ),
    Index(
        "ix_action_intents_pending_policy",
        "tenant_id",
        "policy_id",
        "created_at",
        "action_intent_id",
        sqlite_where=text(PENDING_APPROVAL_SQL),
        postgresql_where=text(PENDING_APPROVAL_SQL),
    ),
    # A policy's simulation reads a tenant's most recent intents.
    Index("ix_action_intents_tenant_recent", "tenant_id", "created_at", "action_intent_id"),
    # The escalation sweep: pending intents whose first approval window has ended, every tenant's
    # (partial as the three above).
    Index(
        "ix_action_intents_escalation",
        "escalates_at_epoch",
        "action_intent_id",
        sqlite_where=text(PENDING_APPROVAL_SQL),
        postgresql_where=text(PENDING_APPROVAL_SQL),
    ),
    # The dashboard's approval waits (intents approved since the window's start).
    Index("ix_action_intents_tenant_updated", "tenant_id", "updated_at"),
)


def is_pending_approval() -> ColumnElement[bool]:
    """An intent waiting for approval, for a query's WHERE: the condition of the partial indexes of
    pending intents, with the status in the text (:data:`PENDING_APPROVAL_SQL`)."""
    return action_intents.c.approval_status == literal_column(_PENDING_APPROVAL)


# The attempts the sweeps and gauges read: in flight, or AMBIGUOUS (waiting for a probe or a
# person). Their indexes hold only those (migrations 0025, 0028), and their queries name the
# statuses as constants, as written here: SQLite uses a partial index only for a query that repeats
# its condition, and PostgreSQL's plan of a prepared statement is made without the parameters.
# The statuses as constants of a statement's text: status IN ('QUEUED', 'RUNNING'), as migrations
# 0025 and 0028 wrote it.
_ACTIVE_ATTEMPT = tuple(f"'{value}'" for value in sorted(status.value for status in ACTIVE_ATTEMPT_STATUSES))
ACTIVE_ATTEMPT_SQL = f"status IN ({', '.join(_ACTIVE_ATTEMPT)})"
_AMBIGUOUS_ATTEMPT = f"'{AttemptStatus.AMBIGUOUS.value}'"
AMBIGUOUS_ATTEMPT_SQL = f"status = {_AMBIGUOUS_ATTEMPT}"

execution_attempts = Table(
    "execution_attempts",
    metadata,
    Column("tenant_id", ID, nullable=False),
    Column("account_id", ID, nullable=False),
    Column("action_intent_id", ID, nullable=False),
    Column("attempt_count", Integer, nullable=False),
    Column("attempt_id", String(64), nullable=False),
    Column("workflow_id", String(160), nullable=False),
    Column("status", String(16), nullable=False),
    Column("idempotency_key", String(64)),
    Column("trace_id", String(80), nullable=False),
    Column("last_error_class", String(16)),
    Column("started_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("completed_at", TS),
    Column("deadline_epoch", Float, nullable=False),
    Column("traceparent", String(64)),
    PrimaryKeyConstraint("tenant_id", "account_id", "action_intent_id"),
    # A tenant's attempts in flight (its rank in the execution queue's fair order), and only those:
    # migration 0025.
    Index(
        "ix_execution_attempts_active_tenant",
        "tenant_id",
        "action_intent_id",
        sqlite_where=text(ACTIVE_ATTEMPT_SQL),
        postgresql_where=text(ACTIVE_ATTEMPT_SQL),
    ),
    # The attempts in flight past their budget (the gauges, the dashboard), and those unchanged for
    # a while (the reconciler's sweep, oldest first); the AMBIGUOUS ones by when they became so (the
    # gauges, the probes' due list): migration 0028.
    Index(
        "ix_execution_attempts_active_deadline",
        "status",
        "deadline_epoch",
        sqlite_where=text(ACTIVE_ATTEMPT_SQL),
        postgresql_where=text(ACTIVE_ATTEMPT_SQL),
    ),
    Index(
        "ix_execution_attempts_active_updated",
        "status",
        "updated_at",
        sqlite_where=text(ACTIVE_ATTEMPT_SQL),
        postgresql_where=text(ACTIVE_ATTEMPT_SQL),
    ),
    Index(
        "ix_execution_attempts_ambiguous_updated",
        "updated_at",
        sqlite_where=text(AMBIGUOUS_ATTEMPT_SQL),
        postgresql_where=text(AMBIGUOUS_ATTEMPT_SQL),
    ),
)


def is_active_attempt() -> ColumnElement[bool]:
    """An attempt QUEUED or RUNNING, for a query's WHERE: the condition of the partial indexes of
    attempts in flight (:data:`ACTIVE_ATTEMPT_SQL`), with the statuses as constants. A list of
    values would also be an expanding parameter, which SQLAlchemy renders into the text again at
    every execution."""
    return execution_attempts.c.status.in_([literal_column(status) for status in _ACTIVE_ATTEMPT])


def is_ambiguous_attempt() -> ColumnElement[bool]:
    """An attempt AMBIGUOUS, for a query's WHERE: the condition of its partial index, as written in
    :data:`AMBIGUOUS_ATTEMPT_SQL`."""
    return execution_attempts.c.status == literal_column(_AMBIGUOUS_ATTEMPT)


execution_outcomes = Table(
    "execution_outcomes",
    metadata,
    Column("tenant_id", ID, nullable=False),
    Column("account_id", ID, nullable=False),
    Column("action_intent_id", ID, nullable=False),
    Column("attempt_count", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("completed_at", TS, nullable=False),
    Column("document", JSON, nullable=False),
    # Mirrors of the document's compensation fields, for the reconciler's retry scan.
    Column("compensation_status", String(16)),
    Column("compensation_tries", Integer, nullable=False, server_default="0"),
    Column("compensation_retry_epoch", Float),
    Column("compensation_workflow_id", String(300)),
    Column("compensation_updated_epoch", Float),
    PrimaryKeyConstraint("tenant_id", "account_id", "action_intent_id", "attempt_count"),
    Index("ix_execution_outcomes_compensation", "compensation_status", "compensation_retry_epoch"),
    # The dashboard: a window's outcomes, of one tenant or of all; a tenant's compensations.
    Index("ix_execution_outcomes_tenant_completed", "tenant_id", "completed_at"),
    Index("ix_execution_outcomes_completed", "completed_at"),
    Index("ix_execution_outcomes_tenant_compensation", "tenant_id", "compensation_status"),
)

# Reconcile probes of AMBIGUOUS attempts (``engine/probes.py``): one row per attempt probed,
# with its backoff (the next probe's time, also the lease a probing worker holds) and whether a
# probe sent the call again after finding it absent.
execution_probes = Table(
    "execution_probes",
    metadata,
    Column("tenant_id", ID, nullable=False),
    Column("account_id", ID, nullable=False),
    Column("action_intent_id", ID, nullable=False),
    Column("attempt_count", Integer, nullable=False),
    Column("probes", Integer, nullable=False, server_default="0"),
    Column("next_probe_epoch", Float, nullable=False),
    Column("last_result", String(16)),
    Column("last_reason", String(500)),
    Column("resent", Boolean, nullable=False),
    Column("updated_at", TS, nullable=False),
    PrimaryKeyConstraint("tenant_id", "account_id", "action_intent_id", "attempt_count"),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("entry_id", String(255), nullable=False),
    Column("tenant_id", ID, nullable=False),
    Column("account_id", ID, nullable=False),
    Column("action_intent_id", ID, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("trace_id", String(80), nullable=False),
    Column("timestamp", TS, nullable=False),
    Column("data", JSON, nullable=False),
    # The chain (domain/ledger_chain.py): the entry's hash, set when appended (NULL on entries
    # appended before the chain existed: their first checkpoint sets it), and its position in the
    # tenant's sequence, set by the checkpoint that covers it.
    Column("entry_hash", String(64), nullable=True),
    Column("position", BigInteger, nullable=True),
    UniqueConstraint("tenant_id", "entry_id"),
    # Partial: an entry is appended without a position, and a NULL key is read by no query.
    Index(
        "ux_ledger_entries_tenant_position",
        "tenant_id",
        "position",
        unique=True,
        sqlite_where=text("position IS NOT NULL"),
        postgresql_where=text("position IS NOT NULL"),
    ),
    # What the checkpointers look for: entries no checkpoint covers yet (a partial index, small).
    Index(
        "ix_ledger_entries_unchecked",
        "tenant_id",
        "seq",
        sqlite_where=text("position IS NULL"),
        postgresql_where=text("position IS NULL"),
    ),
    Index("ix_ledger_entries_tenant_intent_seq", "tenant_id", "action_intent_id", "seq"),
    # The dashboard: a window's failed tries of tool calls, the unknown outcomes. Partial, one
    # per event type, so that the other appends never write into them (migration 0024); the
    # queries name the event type as a literal, which is what lets both backends use them.
    Index(
        "ix_ledger_entries_failed_tries",
        "tenant_id",
        "timestamp",
        sqlite_where=text("event_type = 'TOOL_CALL_TRY_FAILED'"),
        postgresql_where=text("event_type = 'TOOL_CALL_TRY_FAILED'"),
    ),
    Index(
        "ix_ledger_entries_unknown_outcomes",
        "tenant_id",
        "timestamp",
        sqlite_where=text("event_type = 'OUTCOME_UNKNOWN'"),
        postgresql_where=text("event_type = 'OUTCOME_UNKNOWN'"),
    ),
)

# Signed checkpoints of each tenant's ledger, numbered 1, 2, … (the primary key makes a number
# taken once); ``leaves`` lists the covered entries' (entry_id, entry_hash) in position order.
ledger_checkpoints = Table(
    "ledger_checkpoints",
    metadata,
    Column("tenant_id", ID, nullable=False),
    Column("number", BigInteger, nullable=False),
    Column("first_position", BigInteger, nullable=False),
    Column("size", Integer, nullable=False),
    Column("root", String(64), nullable=False),
    Column("previous_hash", String(64), nullable=False),
    Column("signed_at", TS, nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signature", String(128), nullable=False),
    Column("leaves", JSON, nullable=False),
    PrimaryKeyConstraint("tenant_id", "number"),
)

execution_signals = Table(
    "execution_signals",
    metadata,
    Column("tenant_id", ID, nullable=False),
    Column("signal_id", String(255), nullable=False),
    Column("account_id", ID, nullable=False),
    Column("action_intent_id", ID, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("signal_type", String(32), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("document", JSON, nullable=False),
    PrimaryKeyConstraint("tenant_id", "signal_id"),
    UniqueConstraint("tenant_id", "account_id", "action_intent_id", "attempt", "signal_type"),
)

outbox_messages = Table(
    "outbox_messages",
    metadata,
    Column("message_id", String(255), primary_key=True),
    Column("topic", String(64), nullable=False),
    Column("tenant_id", ID, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", TS, nullable=False),
)

outbox_deliveries = Table(
    "outbox_deliveries",
    metadata,
    Column("message_id", String(255), nullable=False),
    Column("destination", String(1024), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_epoch", Float, nullable=False),
    Column("lease_until_epoch", Float),
    Column("lease_owner", String(64)),  # the relay holding the lease; only it settles the delivery
    Column("last_error", Text),
    Column("delivered_at", TS),
    Column("dead_lettered_at", TS),  # when its last allowed try was refused (status DEAD_LETTER)
    PrimaryKeyConstraint("message_id", "destination"),
    Index("ix_outbox_deliveries_status_next", "status", "next_attempt_epoch"),
)

action_type_registry = Table(
    "action_type_registry",
    metadata,
    Column("action_type", String(64), nullable=False),
    Column("registry_version", Integer, nullable=False),
    Column("tool_name", String(128), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("deprecated_at", TS),
    Column("document", JSON, nullable=False),
    PrimaryKeyConstraint("action_type", "registry_version"),
)

tenant_execution_config = Table(
    "tenant_execution_config",
    metadata,
    Column("tenant_id", ID, primary_key=True),
    Column("execution_enabled", Boolean, nullable=False),
    Column("disabled_action_types", JSON, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("revision", Integer, nullable=False, server_default="0"),  # +1 on every write
)

global_execution_config = Table(
    "global_execution_config",
    metadata,
    Column("config_id", String(16), primary_key=True),
    Column("global_stop", Boolean, nullable=False),
    Column("disabled_action_types", JSON, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("revision", Integer, nullable=False, server_default="0"),  # +1 on every write
)

internal_tasks = Table(
    "internal_tasks",
    metadata,
    Column("tenant_id", ID, nullable=False),
    Column("account_id", ID, nullable=False),
    Column("task_id", String(64), nullable=False),
    Column("idempotency_key", String(64), nullable=False),
    Column("action_intent_id", ID, nullable=False),
    Column("title", Text, nullable=False),
    Column("description", Text),
    Column("created_at", TS, nullable=False),
    Column("deleted_at", TS),
    PrimaryKeyConstraint("tenant_id", "account_id", "task_id"),
    UniqueConstraint("idempotency_key"),
)

internal_notes = Table(
    "internal_notes",
    metadata,
    Column("tenant_id", ID, nullable=False),
    Column("account_id", ID, nullable=False),
    Column("note_id", String(64), nullable=False),
    Column("idempotency_key", String(64), nullable=False),
    Column("action_intent_id", ID, nullable=False),
    Column("content", Text, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("deleted_at", TS),
    PrimaryKeyConstraint("tenant_id", "account_id", "note_id"),
    UniqueConstraint("idempotency_key"),
)

connector_credentials = Table(
    "connector_credentials",
    metadata,
    Column("tenant_id", ID, nullable=False),
    Column("account_id", ID, nullable=False),  # "" = every account of the tenant
    Column("connector", String(32), nullable=False),
    Column("credential_type", String(32), nullable=False),
    Column("client_id", String(256), nullable=False),
    Column("username", String(256)),
    Column("login_url", String(512)),
    Column("audience", String(512)),
    # AES-256-GCM, bound to (tenant_id, account_id, connector); key_id names the key that sealed it.
    Column("secret_ciphertext", Text, nullable=False),
    Column("key_id", String(16), nullable=False),
    Column("secret_fields", String(128), nullable=False),  # which secrets are sealed, comma-separated
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("rotated_at", TS),
    Column("refresh_token_rotated_at", TS),
    Column("revision", Integer, nullable=False, server_default="1"),  # +1 on every write
    # Who is exchanging the refresh token right now (a rotated token may be used only once).
    Column("refresh_lease_owner", String(64)),
    Column("refresh_lease_until", Float),
    PrimaryKeyConstraint("tenant_id", "account_id", "connector"),
)

external_writes = Table(
    "external_writes",
    metadata,
    Column("tenant_id", ID, nullable=False),
    Column("account_id", ID, nullable=False),
    Column("idempotency_key", String(128), nullable=False),
    Column("connector", String(32), nullable=False),
    Column("tool_name", String(128), nullable=False),
    Column("action_intent_id", ID, nullable=False),
    Column("status", String(16), nullable=False),  # PENDING (reserved) | COMMITTED
    Column("lease_owner", String(64)),
    Column("lease_until_epoch", Float),
    Column("object_type", String(64)),
    Column("object_id", String(64)),
    Column("object_url", Text),
    Column("previous_values", JSON),  # an update's values before it wrote (compensation restores them)
    Column("written_values", JSON),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("committed_at", TS),
    Column("compensated_at", TS),
    PrimaryKeyConstraint("tenant_id", "account_id", "idempotency_key"),
)

# --- gateway targets: remote MCP servers whose tools the gateway exposes as "{name}.{tool}" ------

gateway_targets = Table(
    "gateway_targets",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("url", Text, nullable=False),
    Column("deduplicates", Boolean, nullable=False),
    Column("document", JSON, nullable=False),  # the GatewayTarget: auth without secret, tools
    Column("revision", Integer, nullable=False),  # +1 on every sync
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
)

# Every change to the targets bumps this one row's revision: a process reloads its target list
# when the revision it loaded is not the stored one.
gateway_catalog = Table(
    "gateway_catalog",
    metadata,
    Column("catalog_id", String(16), primary_key=True),
    Column("revision", Integer, nullable=False),
    Column("updated_at", TS, nullable=False),
)

# Target credentials (a bearer token, an OAuth client secret), read and written only through
# ``gateway.target_auth.EncryptedTargetSecrets``: ``{"sealed": AES-256-GCM under
# FULFILL_SECRETS_KEY, bound to the target's name, "key_id": the sealing key's id}``.
gateway_target_secrets = Table(
    "gateway_target_secrets",
    metadata,
    Column("target_name", String(32), primary_key=True),
    Column("secret", JSON, nullable=False),
    Column("updated_at", TS, nullable=False),
)

# A tool call to a target that does not deduplicate, written before the call is sent and settled
# with its answer: a step replayed after a crash finds it and does not send the call again.
remote_tool_calls = Table(
    "remote_tool_calls",
    metadata,
    Column("tenant_id", ID, nullable=False),
    Column("account_id", ID, nullable=False),
    Column("action_intent_id", ID, nullable=False),
    Column("attempt_count", Integer, nullable=False),
    Column("tool_name", String(128), nullable=False),
    Column("idempotency_key", String(64), nullable=False),
    Column("sent_at", TS, nullable=False),
    Column("answer", JSON),  # the call's ToolCallOutcome, once it is known
    PrimaryKeyConstraint("tenant_id", "account_id", "action_intent_id", "attempt_count"),
)

# The same for a compensation call to such a target, keyed by the compensation call's own
# idempotency key (one per written object): no try of the compensation sends it twice.
remote_compensation_calls = Table(
    "remote_compensation_calls",
    metadata,
    Column("tenant_id", ID, nullable=False),
    Column("account_id", ID, nullable=False),
    Column("idempotency_key", String(64), nullable=False),
    Column("action_intent_id", ID, nullable=False),
    Column("attempt_count", Integer, nullable=False),
    Column("tool_name", String(128), nullable=False),
    Column("object_id", String(256), nullable=False),
    Column("sent_at", TS, nullable=False),
    Column("answer", JSON),  # the call's ToolCallOutcome, once it is known
    PrimaryKeyConstraint("tenant_id", "account_id", "idempotency_key"),
)

# --- flow control: limits, circuit breakers and calls of each connector (or remote target) ---------

connector_limits = Table(
    "connector_limits",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("rate_per_second", Float),  # null: no rate limit
    Column("concurrency", Integer),  # null: no concurrency limit
    Column("updated_at", TS, nullable=False),
    Column("revision", Integer, nullable=False, server_default="0"),  # +1 on every write
)

# One row per connector that has been gated: its circuit breaker, and the row every admission
# locks, so that admissions to one connector happen one at a time across every process.
connector_state = Table(
    "connector_state",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("circuit_state", String(16), nullable=False, server_default="CLOSED"),
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("window_started_epoch", Float),
    Column("opened_epoch", Float),
    Column("probe_call_id", String(64)),
    Column("probe_until_epoch", Float),
    Column("updated_epoch", Float),
)

# Calls admitted through a gated connector: the times they were sent make the rate window, the
# unfinished ones (until their lease runs out, if their process died) the calls in flight.
connector_calls = Table(
    "connector_calls",
    metadata,
    Column("call_id", String(64), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("tenant_id", ID),  # whose call (fair share, per-tenant caps); null: admitted before 0012
    Column("admitted_epoch", Float, nullable=False),
    Column("dispatched_epoch", Float),  # null: admitted, not sent yet
    Column("lease_until_epoch", Float, nullable=False),
    Column("finished_epoch", Float),
    Index("ix_connector_calls_name_dispatched_epoch", "name", "dispatched_epoch"),
    Index("ix_connector_calls_name_finished_epoch", "name", "finished_epoch"),
)

# --- operator console ---------------------------------------------------------------------------

# One row per console sign-in (see fulfill.console.session): found by the hash of the random id in
# the cookie, the bearer sealed with a key derived from that id; logout sets revoked_epoch.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("session_hash", String(64), primary_key=True),
    Column("tenant_id", ID, nullable=False),
    Column("subject", String(256), nullable=False),
    Column("sealed_token", Text, nullable=False),
    Column("created_epoch", Float, nullable=False),
    Column("expires_epoch", Float, nullable=False),
    Column("revoked_epoch", Float),
    Index("ix_console_sessions_expires_epoch", "expires_epoch"),
)

# One row per worker (DBOS executor id): when it last beat, by the database clock. A live worker
# that watched a row stay unchanged for FULFILL_EXECUTOR_LOST_SECONDS claims it (compare-and-set
# on the beat it saw, so a late beat wins), recovers that executor's workflows and deletes it.
executor_heartbeats = Table(
    "executor_heartbeats",
    metadata,
    Column("executor_id", String(128), primary_key=True),
    Column("last_beat_epoch", Float, nullable=False),
    # Only a worker of the same version takes it over: DBOS replays a workflow on its own version.
    Column("version", String(64), nullable=False),
    Column("claimed_by", String(128)),
    Column("claimed_until_epoch", Float),
)

# A tenant's own cap on a connector (on top of the connector's limits, which every tenant shares).
connector_tenant_limits = Table(
    "connector_tenant_limits",
    metadata,
    Column("name", String(64), nullable=False),
    Column("tenant_id", ID, nullable=False),
    Column("rate_per_second", Float),  # null: no rate cap of its own
    Column("concurrency", Integer),  # null: no concurrency cap of its own
    Column("updated_at", TS, nullable=False),
    Column("updated_by", String(256), nullable=False),
    Column("revision", Integer, nullable=False, server_default="0"),
    PrimaryKeyConstraint("name", "tenant_id"),
)

# Calls waiting for a gated connector, of every process: the line the fair share is drawn from.
# ``owner`` is the waiting process's flow control; it renews its rows' lease while they wait, so
# the rows of a process that died stop counting when their lease runs out.
connector_waiters = Table(
    "connector_waiters",
    metadata,
    Column("waiter_id", String(64), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("tenant_id", ID, nullable=False),
    Column("owner", String(64), nullable=False),
    Column("since_epoch", Float, nullable=False),
    Column("lease_until_epoch", Float, nullable=False),
    Index("ix_connector_waiters_name_since_epoch", "name", "since_epoch"),
)

# Approval policies (domain/policies.py), every version kept: a write (create, replace, delete) adds
# the next version of (owner, policy_id), and the intents a version decided name it. ``owner`` is
# the tenant's id, or PLATFORM_OWNER for the platform's policies (which apply to every tenant; it is
# not a valid tenant id). ``is_current`` marks each policy's newest version; a deleted policy's
# newest version has ``deleted_at`` set and applies no more.
PLATFORM_OWNER = "#platform"
approval_policies = Table(
    "approval_policies",
    metadata,
    Column("owner", ID, nullable=False),
    Column("policy_id", String(80), nullable=False),
    Column("version", Integer, nullable=False),
    Column("is_current", Boolean, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("document", JSON, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("deleted_at", TS),
    PrimaryKeyConstraint("owner", "policy_id", "version"),
    Index("ix_approval_policies_current", "owner", "is_current", "priority", "policy_id"),
)

# A tenant's notification channels (domain/notifications.py): ``settings`` without secrets, and
# ``sealed`` each secret encrypted (FULFILL_SECRETS_KEY), bound to its tenant and field.
tenant_notifications = Table(
    "tenant_notifications",
    metadata,
    Column("tenant_id", ID, primary_key=True),
    Column("settings", JSON, nullable=False),
    Column("sealed", JSON, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("updated_by", String(256), nullable=False),
    Column("revision", Integer, nullable=False, server_default="0"),  # +1 on every write
)

# Where a notice about an intent was posted in Slack (the first post), to update it after a decision.
slack_messages = Table(
    "slack_messages",
    metadata,
    Column("tenant_id", ID, nullable=False),
    Column("action_intent_id", ID, nullable=False),
    Column("channel", String(64), nullable=False),
    Column("ts", String(64), nullable=False),
    Column("posted_at", TS, nullable=False),
    PrimaryKeyConstraint("tenant_id", "action_intent_id"),
)

# Each signed email link (domain/email_links.py) that was opened: a link opens once.
email_link_uses = Table(
    "email_link_uses",
    metadata,
    Column("tenant_id", ID, nullable=False),
    Column("link_id", String(64), nullable=False),
    Column("action_intent_id", ID, nullable=False),
    Column("recipient", String(254), nullable=False),
    Column("used_by", String(256), nullable=False),
    Column("used_at", TS, nullable=False),
    PrimaryKeyConstraint("tenant_id", "link_id"),
)

"""A NAT or a stateful firewall between the service and PostgreSQL forgets a connection that sat
idle long enough, often silently: what is sent on it afterwards goes nowhere and nothing comes
back, so a statement on it (the ping of a connection idle for more than a second included) would
wait as long as the kernel retransmits. A pooled connection idle longer than
``FULFILL_DATABASE_MAX_IDLE_SECONDS`` is therefore replaced by a fresh one when it is next needed,
in fulfill's pool and in DBOS's, before anything is sent on it.

Here the service reaches PostgreSQL through a relay on 127.0.0.1 that forgets a connection idle for
a moment longer than that setting (``tests/support/tcp_proxy.py``, ``forget_idle_after``). The
pools hand out the connection given back last, which the service's own background work keeps
fresh, so the test holds several of each pool's connections at once, twice, a quiet spell apart:
the second time it reaches connections that sat idle all along.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from fulfill.config import Settings
from fulfill.store.db import MAX_IDLE_SECONDS, PING_AFTER_IDLE_SECONDS, Database, is_transient_store_error
from tests.support import postgres
from tests.support.harness import Harness, make_settings
from tests.support.tcp_proxy import TcpProxy

MAX_IDLE = 2.0  # the setting, for the test: well below any NAT's, here below the relay's
FORGETS_AFTER = MAX_IDLE + 2.0  # room for a slow thread between a check and its statement
AT_ONCE = 6  # connections of each pool held at once
# What closing a connection sends (PostgreSQL's Terminate message): a goodbye, no statement.
TERMINATE = b"X\x00\x00\x00\x04"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[Harness, TcpProxy]]:
    real = make_url(postgres.create_database())
    relay = TcpProxy(real.host or "127.0.0.1", real.port or 5432, forget_idle_after=FORGETS_AFTER)
    through = real.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
    harness = Harness(make_settings(tmp_path, database_url=through, database_max_idle_seconds=MAX_IDLE))
    harness.start()
    try:
        yield harness, relay
    finally:
        relay.forget_idle_after = None  # the service's last statements go through as it stops
        harness.stop()
        relay.close()


def _dbos_engine() -> Engine:
    from dbos import _dbos as dbos_internals

    instance = dbos_internals._dbos_global_instance
    assert instance is not None
    engine: Engine = instance._sys_db.engine
    return engine


def _hold_at_once(engine: Engine) -> None:
    """Check out AT_ONCE connections of ``engine``'s pool together, run a statement on each."""
    held = [engine.connect() for _ in range(AT_ONCE)]
    try:
        for conn in held:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        for conn in held:
            conn.close()


def _within(seconds: float, work: Callable[[], None]) -> None:
    """Run ``work`` in a thread of its own; fail if it has not ended within ``seconds`` (a
    statement on a forgotten connection would wait for minutes)."""
    failures: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # handed to the test's thread
            failures.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(seconds), "a statement waited on a connection the relay had forgotten"
    if failures:
        raise failures[0]


@postgres.postgres_only
def test_connections_a_nat_forgot_while_idle_are_replaced_before_anything_is_sent_on_them(
    service: tuple[Harness, TcpProxy],
) -> None:
    harness, relay = service
    engines = [harness.db.engine, _dbos_engine()]
    for engine in engines:
        _hold_at_once(engine)
    opened = relay.accepted
    time.sleep(FORGETS_AFTER + 0.5)  # the relay forgets every connection left idle meanwhile
    for engine in engines:
        _within(10.0, lambda engine=engine: _hold_at_once(engine))  # type: ignore[misc]
    # Nothing but the goodbye of a connection replaced was sent on a forgotten one.
    assert set(relay.dropped) <= {TERMINATE}
    assert relay.accepted > opened  # fresh connections took the idle ones' places
    with harness.client() as client:
        client.timeout = httpx.Timeout(10.0)
        assert harness.run_task(client)["status"] == "SUCCEEDED"
    assert set(relay.dropped) <= {TERMINATE}


# The next test's own: a second on each side of every sleep, for a slow machine.
OWN_MAX_IDLE = 4.0
OWN_FORGETS_AFTER = OWN_MAX_IDLE + 2.0


@postgres.postgres_only
def test_a_pool_keeps_a_connection_idle_less_than_the_limit_and_replaces_one_idle_longer() -> None:
    """On a pool of the test's own, behind a relay of its own, so that no other thread uses its
    connections: the count of connections the relay accepted is exact."""
    real = make_url(postgres.create_database())
    relay = TcpProxy(real.host or "127.0.0.1", real.port or 5432, forget_idle_after=OWN_FORGETS_AFTER)
    through = real.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
    database = Database(through, max_idle_seconds=OWN_MAX_IDLE)
    try:
        _hold_at_once(database.engine)
        assert relay.accepted == AT_ONCE
        time.sleep(2.5)  # past the ping's second, short of the limit
        _within(10.0, lambda: _hold_at_once(database.engine))
        assert relay.accepted == AT_ONCE  # pinged and used again, none replaced
        time.sleep(OWN_MAX_IDLE + 1.0)  # past the limit, short of the relay's forgetting
        _within(10.0, lambda: _hold_at_once(database.engine))
        assert relay.accepted == 2 * AT_ONCE  # each replaced by a new one
        assert relay.dropped == []  # the relay had forgotten none of them yet
    finally:
        database.dispose()
        relay.close()


def test_the_limit_defaults_to_two_minutes_and_must_leave_room_for_the_ping() -> None:
    assert Settings().database_max_idle_seconds == MAX_IDLE_SECONDS == 120.0
    assert MAX_IDLE_SECONDS > PING_AFTER_IDLE_SECONDS
    with pytest.raises(ValidationError, match="database_max_idle_seconds"):
        Settings(database_max_idle_seconds=PING_AFTER_IDLE_SECONDS)


@postgres.postgres_only
def test_an_idle_connection_due_for_replacement_during_an_outage_fails_as_transient(
    service: tuple[Harness, TcpProxy],
) -> None:
    """The replacement cannot connect while the database is unreachable: the checkout fails at
    once with the connect error, which the steps retry and the API answers 503 for, as a failed
    check does; once the database is back, the next checkout connects."""
    harness, relay = service
    _hold_at_once(harness.db.engine)
    time.sleep(MAX_IDLE + 0.5)  # every connection of the pool is now due for replacement
    relay.cut()
    try:
        with pytest.raises(DBAPIError) as failed, harness.db.read() as conn:
            conn.execute(text("SELECT 1"))
        assert is_transient_store_error(failed.value)
    finally:
        relay.restore()
    _within(10.0, lambda: _hold_at_once(harness.db.engine))

"""The execution machine's moves on the SQL adapter and a SQLite file, briefly: the in-memory
store the machine runs on (``test_execution_machine.py``) keeps the semantics the steps and use
cases rely on, and this shows it on the same interleavings' kind."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

from tests.property.test_execution_machine import STEP_COUNT, ExecutionMachine
from tests.support.chain_driver import sqlite_backend

SQLITE_EXAMPLES = int(os.environ.get("PROPERTY_SQLITE_EXAMPLES", "25"))


class SqliteExecutionMachine(ExecutionMachine):
    """The same moves on the SQL adapter and a SQLite file: the in-memory store the machine
    runs on keeps the semantics the steps and use cases rely on."""

    backend = staticmethod(sqlite_backend)  # type: ignore[assignment]


SqliteExecutionMachine.TestCase.settings = settings(
    max_examples=SQLITE_EXAMPLES,
    stateful_step_count=STEP_COUNT,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestSqliteExecutionMachine = SqliteExecutionMachine.TestCase

"""Which database errors the store steps retry."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from fulfill.store.db import is_transient_store_error


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked")), True),
        (PoolTimeout("QueuePool limit of size 10 overflow 20 reached"), True),
        (IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed")), False),
        (ValueError("a defect"), False),
    ],
)
def test_transient_store_errors(error: BaseException, transient: bool) -> None:
    assert is_transient_store_error(error) is transient

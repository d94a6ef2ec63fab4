from __future__ import annotations

import pytest

from fulfill.domain.expiry import (
    DAY_SECONDS,
    DEFAULT_EXPIRY_DAYS,
    EXPIRY_DAYS_BY_ACTION_TYPE,
    beyond_max_ttl,
    default_expiry_epoch,
    is_expired,
)


@pytest.mark.parametrize(
    ("expires_at", "now", "expected"),
    [
        (1000, 1000, True),  # the boundary second itself is expired
        (1000, 1000.0, True),
        (1000, 999.999, False),
        (1000, 999, False),
        (1000, 1000.001, True),
        (1000, 1001, True),
        (1000, 0, False),
    ],
)
def test_is_expired_boundary(expires_at: int, now: float, expected: bool) -> None:
    assert is_expired(expires_at, now) is expected


@pytest.mark.parametrize(
    ("action_type", "days"),
    [
        ("REQUEST_RENEWAL_MEETING", 7),
        ("REQUEST_DISCOVERY_CALL", 14),
        ("REQUEST_STAKEHOLDER_INTRO", 14),
        ("UPDATE_OPPORTUNITY_STAGE", 30),
        ("CREATE_OPPORTUNITY", 30),
        ("UPDATE_ACCOUNT_FIELDS", 30),
        ("CREATE_INTERNAL_NOTE", 90),
        ("CREATE_INTERNAL_TASK", 30),
        ("FLAG_FOR_REVIEW", 7),
        ("FETCH_ACCOUNT_NEWS", 1),
        ("ANALYZE_USAGE_PATTERNS", 1),
    ],
)
def test_default_expiry_per_action_type(action_type: str, days: int) -> None:
    assert default_expiry_epoch(action_type, 1_700_000_000) == 1_700_000_000 + days * 86_400


def test_table_is_exactly_the_documented_one() -> None:
    assert len(EXPIRY_DAYS_BY_ACTION_TYPE) == 11
    assert DAY_SECONDS == 86_400


@pytest.mark.parametrize("action_type", ["UNKNOWN_ACTION", "", "create_internal_note"])
def test_unknown_action_type_defaults_to_30_days(action_type: str) -> None:
    assert DEFAULT_EXPIRY_DAYS == 30
    assert default_expiry_epoch(action_type, 1_700_000_000) == 1_700_000_000 + 30 * 86_400


def test_fractional_start_is_truncated_to_whole_seconds() -> None:
    result = default_expiry_epoch("FLAG_FOR_REVIEW", 1_700_000_000.9)
    assert result == 1_700_000_000 + 7 * 86_400
    assert isinstance(result, int)


def test_expiry_epoch_is_expired_exactly_at_that_second() -> None:
    expires = default_expiry_epoch("FETCH_ACCOUNT_NEWS", 100)
    assert not is_expired(expires, expires - 0.5)
    assert is_expired(expires, expires)


def test_a_default_expiry_never_exceeds_the_platform_maximum() -> None:
    assert default_expiry_epoch("CREATE_INTERNAL_NOTE", 1_000, max_ttl_seconds=3_600) == 4_600
    assert default_expiry_epoch("FETCH_ACCOUNT_NEWS", 1_000, max_ttl_seconds=90 * 86_400) == 1_000 + 86_400


def test_beyond_max_ttl_allows_the_boundary_itself() -> None:
    assert not beyond_max_ttl(1_000 + 3_600, 1_000, 3_600)
    assert beyond_max_ttl(1_000 + 3_601, 1_000, 3_600)
    assert beyond_max_ttl(253402300799, 1_000, 10 * 365 * 86_400)  # year 9999

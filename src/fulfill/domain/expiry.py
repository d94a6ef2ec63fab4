"""When an approved intent stops being executable (reference spec §1.2)."""

from __future__ import annotations

DAY_SECONDS = 86_400
DEFAULT_EXPIRY_DAYS = 30
EXPIRY_DAYS_BY_ACTION_TYPE: dict[str, int] = {
    "REQUEST_RENEWAL_MEETING": 7,
    "REQUEST_DISCOVERY_CALL": 14,
    "REQUEST_STAKEHOLDER_INTRO": 14,
    "UPDATE_OPPORTUNITY_STAGE": 30,
    "CREATE_OPPORTUNITY": 30,
    "UPDATE_ACCOUNT_FIELDS": 30,
    "CREATE_INTERNAL_NOTE": 90,
    "CREATE_INTERNAL_TASK": 30,
    "FLAG_FOR_REVIEW": 7,
    "FETCH_ACCOUNT_NEWS": 1,
    "ANALYZE_USAGE_PATTERNS": 1,
}


def default_expiry_epoch(action_type: str, from_epoch: float, max_ttl_seconds: int | None = None) -> int:
    """The action type's default expiry, never beyond the platform's maximum when one is given."""
    seconds = EXPIRY_DAYS_BY_ACTION_TYPE.get(action_type, DEFAULT_EXPIRY_DAYS) * DAY_SECONDS
    if max_ttl_seconds is not None:
        seconds = min(seconds, max_ttl_seconds)
    return int(from_epoch) + seconds


def beyond_max_ttl(expires_at_epoch: float, now_epoch: float, max_ttl_seconds: int) -> bool:
    """True when a chosen expiry lies further ahead than the platform allows."""
    return expires_at_epoch - now_epoch > max_ttl_seconds


def describe_seconds(seconds: int) -> str:
    """``7776000`` → ``"7776000 seconds (90 days)"``, for an error that names a limit."""
    if seconds % DAY_SECONDS == 0:
        days = seconds // DAY_SECONDS
        return f"{seconds} seconds ({days} day{'s' if days != 1 else ''})"
    return f"{seconds} seconds"


def is_expired(expires_at_epoch: int, now_epoch: float) -> bool:
    """Expired when ``expires_at_epoch <= now``: the boundary second itself is already expired."""
    return expires_at_epoch <= now_epoch

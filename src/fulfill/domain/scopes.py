"""The scope vocabulary: every scope a token can hold, and the sets the tools mint.

A user token's scopes say what its holder may do in its own tenant (``admin`` manages that tenant
only); what affects every tenant (the global kill switches, the registry, gateway targets) needs
``platform:admin``. ``gateway:invoke`` is held only by the engine's own service tokens.
"""

from __future__ import annotations

from enum import StrEnum


class Scope(StrEnum):
    INTENTS_WRITE = "intents:write"
    INTENTS_READ = "intents:read"
    INTENTS_APPROVE = "intents:approve"
    EVENTS_WRITE = "events:write"
    EXECUTIONS_READ = "executions:read"
    ADMIN = "admin"  # the token's own tenant
    PLATFORM_ADMIN = "platform:admin"  # what affects every tenant
    GATEWAY_INVOKE = "gateway:invoke"  # the engine's service tokens only


# Every scope of a tenant's own work, its administration included: what `fulfill token` mints by
# default and what the end-to-end check needs (plus PLATFORM_ADMIN for the global stop).
TENANT_SCOPES: tuple[Scope, ...] = (
    Scope.INTENTS_WRITE,
    Scope.INTENTS_READ,
    Scope.INTENTS_APPROVE,
    Scope.EVENTS_WRITE,
    Scope.EXECUTIONS_READ,
    Scope.ADMIN,
)
# Every scope a user token can hold: the tenant's and the platform's.
USER_SCOPES: tuple[Scope, ...] = (*TENANT_SCOPES, Scope.PLATFORM_ADMIN)
# What a client that submits intents, approves them and follows their executions needs (the demo,
# the load test, the benchmarks).
INTENT_CLIENT_SCOPES: tuple[Scope, ...] = (
    Scope.INTENTS_WRITE,
    Scope.INTENTS_READ,
    Scope.INTENTS_APPROVE,
    Scope.EXECUTIONS_READ,
)


def spelled(scopes: tuple[Scope, ...] | list[Scope]) -> str:
    """The scopes as a token's ``scope`` claim spells them: separated by spaces."""
    return " ".join(scopes)

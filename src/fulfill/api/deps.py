"""The HTTP edge's typed dependencies: the one place that reads what ``create_app`` installed on
``app.state``. Routes declare what they need as ``Annotated`` aliases (``ctx: ServiceContext``)
and pass it to use cases; they never reach into the service themselves. The console's helpers use
the same accessors (``context_of(request)``) where a dependency parameter cannot reach them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request

from fulfill.config import Settings
from fulfill.credentials.vault import CredentialVault
from fulfill.tokens import TokenVerifier
from fulfill.usecases.context import UseCaseContext
from fulfill.usecases.events import EventIntake
from fulfill.usecases.targets import TargetAdmin

T = TypeVar("T")


def context_of(request: Request) -> UseCaseContext:
    context: UseCaseContext = request.app.state.use_case_context
    return context


def verifier_of(request: Request) -> TokenVerifier:
    verifier: TokenVerifier = request.app.state.token_verifier
    return verifier


def settings_of(request: Request) -> Settings:
    return context_of(request).settings


def targets_of(request: Request) -> TargetAdmin:
    targets: TargetAdmin = request.app.state.targets
    return targets


def credential_vault_of(request: Request) -> CredentialVault:
    vault: CredentialVault = request.app.state.credential_vault
    return vault


def event_intake_of(request: Request) -> EventIntake:
    intake: EventIntake = request.app.state.event_intake
    return intake


def database_answers_of(request: Request) -> bool:
    """Whether this process's database answers a query now (asked once per request)."""
    return bool(request.app.state.service.database_answers())


def engine_ready_of(request: Request) -> bool:
    """Whether this process's engine has launched (an ``api`` process runs none)."""
    return bool(request.app.state.service.engine_ready)


def _on_the_loop(accessor: Callable[[Request], T]) -> Callable[[Request], Awaitable[T]]:
    """The accessor as an ``async`` dependency: FastAPI runs a plain function dependency in a
    worker thread, a hop per dependency per request for what is an attribute read. Only for
    accessors that neither block nor wait (not ``database_answers_of``)."""

    async def dependency(request: Request) -> T:
        return accessor(request)

    return dependency


ServiceContext = Annotated[UseCaseContext, Depends(_on_the_loop(context_of))]
Verifier = Annotated[TokenVerifier, Depends(_on_the_loop(verifier_of))]
ServiceSettings = Annotated[Settings, Depends(_on_the_loop(settings_of))]
Targets = Annotated[TargetAdmin, Depends(_on_the_loop(targets_of))]
Events = Annotated[EventIntake, Depends(_on_the_loop(event_intake_of))]
Vault = Annotated[CredentialVault, Depends(_on_the_loop(credential_vault_of))]
EngineReady = Annotated[bool, Depends(_on_the_loop(engine_ready_of))]
DatabaseAnswers = Annotated[bool, Depends(database_answers_of)]  # a query: in a worker thread

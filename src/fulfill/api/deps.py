"""The HTTP edge's typed dependencies: the one place that reads what ``create_app`` installed on
``app.state``. Routes declare what they need as ``Annotated`` aliases (``ctx: ServiceContext``)
and pass it to use cases; they never reach into the service themselves. The console's helpers use
the same accessors (``context_of(request)``) where a dependency parameter cannot reach them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from fulfill.config import Settings
from fulfill.credentials.vault import CredentialVault
from fulfill.tokens import TokenVerifier
from fulfill.usecases.context import UseCaseContext
from fulfill.usecases.events import EventIntake
from fulfill.usecases.targets import TargetAdmin


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


ServiceContext = Annotated[UseCaseContext, Depends(context_of)]
Verifier = Annotated[TokenVerifier, Depends(verifier_of)]
ServiceSettings = Annotated[Settings, Depends(settings_of)]
Targets = Annotated[TargetAdmin, Depends(targets_of)]
Events = Annotated[EventIntake, Depends(event_intake_of)]
Vault = Annotated[CredentialVault, Depends(credential_vault_of)]
EngineReady = Annotated[bool, Depends(engine_ready_of)]
DatabaseAnswers = Annotated[bool, Depends(database_answers_of)]

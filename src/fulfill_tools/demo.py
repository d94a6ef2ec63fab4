"""The built-in demo: one internal task, submitted, approved, executed, shown."""

from __future__ import annotations

import contextlib
import time

from rich.console import Console

from fulfill.client import ApiError, FulfillClient
from fulfill.config import DEMO_TENANT, Settings
from fulfill.domain.models import ExecutionStatus, ExecutionStatusView
from fulfill.domain.scopes import INTENT_CLIENT_SCOPES
from fulfill.explain import CliError, problem_line
from fulfill.tokens import mint_token

DEMO_ACCOUNT = "demo-account"
TERMINAL = {
    ExecutionStatus.SUCCEEDED,
    ExecutionStatus.FAILED,
    ExecutionStatus.CANCELLED,
    ExecutionStatus.EXPIRED,
}


def run_demo(url: str, settings: Settings, console: Console, *, timeout: float = 30.0) -> bool:
    """Returns True when the demo intent ends SUCCEEDED. An answer the demo cannot go on from is a
    :class:`CliError` saying which; an unreachable service is an ``httpx.TransportError``."""
    token = mint_token(
        settings, tenant_id=DEMO_TENANT, scopes=list(INTENT_CLIENT_SCOPES), subject="demo-user"
    )
    # Another person approves: nobody approves a proposal made with their own subject.
    reviewer_token = mint_token(
        settings, tenant_id=DEMO_TENANT, scopes=list(INTENT_CLIENT_SCOPES), subject="demo-reviewer"
    )
    with (
        FulfillClient(url, token, timeout=10.0) as api,
        FulfillClient(url, reviewer_token, timeout=10.0) as reviewer,
    ):
        try:
            created = api.create_intent(
                {
                    "action_type": "CREATE_INTERNAL_TASK",
                    "account_id": DEMO_ACCOUNT,
                    "parameters": {
                        "title": "Follow up on the renewal",
                        "description": "Created by the fulfill demo",
                    },
                }
            ).value
            intent_id = created.action_intent_id
            console.print(
                f"[bold]1. submitted[/bold] {intent_id} (approval_status {created.approval_status.value})"
            )
            reviewer.approve(intent_id)
        except ApiError as exc:
            raise CliError(f"demo: {problem_line(exc.response)}") from None
        console.print(f"[bold]2. approved[/bold]  {intent_id}")
        started = time.monotonic()
        status: ExecutionStatusView | None = None
        while time.monotonic() - started < timeout:
            with contextlib.suppress(ApiError):  # not readable yet: asked again until the timeout
                status = api.execution_status(intent_id)
            if status is not None and status.status in TERMINAL:
                break
            time.sleep(0.1)
        console.print("[bold]3. executed[/bold]  status:")
        console.print_json(data=status.model_dump(mode="json", exclude_none=True) if status else {})
    return status is not None and status.status == ExecutionStatus.SUCCEEDED

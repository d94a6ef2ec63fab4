"""The built-in demo: one internal task, submitted, approved, executed, shown."""

from __future__ import annotations

import time

import httpx
from rich.console import Console

from fulfill.config import DEMO_TENANT, Settings
from fulfill.domain.scopes import INTENT_CLIENT_SCOPES
from fulfill.explain import CliError, problem_line
from fulfill.tokens import mint_token

DEMO_ACCOUNT = "demo-account"
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED"}


def _checked(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise CliError(f"demo: {problem_line(response)}")
    return response


def run_demo(url: str, settings: Settings, console: Console, *, timeout: float = 30.0) -> bool:
    """Returns True when the demo intent ends SUCCEEDED. An answer the demo cannot go on from is a
    :class:`CliError` saying which; an unreachable service is an ``httpx.TransportError``."""
    token = mint_token(
        settings,
        tenant_id=DEMO_TENANT,
        scopes=list(INTENT_CLIENT_SCOPES),
        subject="demo-user",
    )
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10.0) as client:
        created = _checked(
            client.post(
                "/intents",
                json={
                    "action_type": "CREATE_INTERNAL_TASK",
                    "account_id": DEMO_ACCOUNT,
                    "parameters": {
                        "title": "Follow up on the renewal",
                        "description": "Created by the fulfill demo",
                    },
                },
            )
        )
        intent_id = created.json()["action_intent_id"]
        console.print(
            f"[bold]1. submitted[/bold] {intent_id} (approval_status {created.json()['approval_status']})"
        )
        _checked(client.post(f"/intents/{intent_id}/approve"))
        console.print(f"[bold]2. approved[/bold]  {intent_id}")
        started = time.monotonic()
        status: dict[str, object] = {}
        while time.monotonic() - started < timeout:
            response = client.get(f"/executions/{intent_id}/status")
            if response.status_code == 200:
                status = response.json()
                if status.get("status") in TERMINAL:
                    break
            time.sleep(0.1)
        console.print("[bold]3. executed[/bold]  status:")
        console.print_json(data=status)
    return status.get("status") == "SUCCEEDED"

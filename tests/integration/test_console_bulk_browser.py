"""The approvals page's selection in a real browser (headless Chromium driven by Playwright,
against the real service on 127.0.0.1): select every card of the page, approve them at once, and
read what became of each; the approver's own proposal among them is refused by name and stays.

Screenshots go to ``artifacts/console-screenshots/<backend>/`` (docs/images/ holds a copy)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.chromium import BROWSER_MARKS, CHROMIUM, SCREENSHOTS
from tests.support.harness import ALL_SCOPES, Harness

pytestmark = BROWSER_MARKS

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
)
expect = sync_api.expect
WAIT_MS = 30_000
OPERATOR = ["intents:read", "intents:approve", "executions:read"]


@pytest.fixture
def page(harness: Harness) -> Iterator[Any]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="Europe/Berlin")
        yield context.new_page()
        context.close()
        browser.close()


def _propose(harness: Harness, subject: str, title: str) -> str:
    with harness.client("t1", ALL_SCOPES, subject=subject) as api:
        return str(harness.create_intent(api, parameters={"title": title})["action_intent_id"])


def _approval_status(harness: Harness, intent_id: str) -> str:
    with harness.client("t1") as api:
        return str(api.get(f"/intents/{intent_id}").json()["approval_status"])


def test_select_every_card_and_approve_them_at_once(harness: Harness, page: Any) -> None:
    others = [_propose(harness, "ada@acme.example", f"Renew contract {n}") for n in (1, 2, 3)]
    own = _propose(harness, "op", "My own proposal")
    page.goto(f"{harness.url}/console/login?next=/console/approvals")
    page.get_by_label("Tenant").fill("t1")
    page.get_by_label("Subject").fill("op")
    for box in page.locator("input[name=scopes]").all():
        box.set_checked(box.get_attribute("value") in OPERATOR)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#pending-count")).to_contain_text("4 waiting")
    counter = page.locator("[data-selected-count=bulk]")
    expect(counter).to_have_text("0 selected")
    # one by one, then every one of the page
    page.get_by_label(f"Select CREATE_INTERNAL_TASK {others[0]}").check()
    expect(counter).to_have_text("1 selected")
    select_all = page.get_by_label("Select every one on this page")
    assert select_all.evaluate("box => box.indeterminate")
    select_all.check()
    expect(counter).to_have_text("4 selected")
    for intent_id in [*others, own]:
        expect(page.locator(f'input[name=selected][value="{intent_id}"]')).to_be_checked()
    page.get_by_label("Comment for each (optional)").fill("quarterly renewals")
    page.screenshot(path=str(SCREENSHOTS / "approvals-selected.png"), full_page=True)
    page.get_by_role("button", name="Approve selected").click()
    result = page.locator("#decided-count")
    expect(result).to_contain_text("3 of 4 approvals accepted; 1 refused")
    expect(page.locator(f'tr[data-intent="{own}"]')).to_contain_text("SELF_APPROVAL")
    for intent_id in others:
        expect(page.locator(f'tr[data-intent="{intent_id}"]')).to_contain_text("APPROVED")
    page.screenshot(path=str(SCREENSHOTS / "approvals-decided.png"), full_page=True)
    page.get_by_role("link", name="Back to the approvals").click()
    expect(page.locator("#pending-count")).to_contain_text("1 waiting")
    expect(page.locator(f'[data-intent="{own}"]')).to_have_count(1)
    assert [_approval_status(harness, intent_id) for intent_id in others] == ["APPROVED"] * 3
    assert _approval_status(harness, own) == "PENDING_APPROVAL"


def test_nothing_selected_is_refused_with_a_message(harness: Harness, page: Any) -> None:
    intent_id = _propose(harness, "ada@acme.example", "Left alone")
    page.goto(f"{harness.url}/console/login?next=/console/approvals")
    page.get_by_label("Tenant").fill("t1")
    page.get_by_label("Subject").fill("op")
    for box in page.locator("input[name=scopes]").all():
        box.set_checked(box.get_attribute("value") in OPERATOR)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Reject selected").click()
    expect(page.locator(".problem")).to_contain_text("Select at least one intent first")
    assert _approval_status(harness, intent_id) == "PENDING_APPROVAL"

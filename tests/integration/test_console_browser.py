"""The operator console in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright, against the real service on 127.0.0.1.

Each test writes screenshots of the pages it visits to ``artifacts/console-screenshots/<backend>/``
at the repository root, for a reviewer to look at (see docs/TESTING.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.chromium import BROWSER_MARKS, CHROMIUM, SCREENSHOTS
from tests.support.harness import Harness

pytestmark = BROWSER_MARKS

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
)
expect = sync_api.expect
WAIT_MS = 30_000  # how long a live page may take to show an execution's end


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def new_page(chromium: Any) -> Iterator[Any]:
    contexts: list[Any] = []

    def make(width: int = 1280) -> Any:
        context = chromium.new_context(viewport={"width": width, "height": 900}, timezone_id="Europe/Berlin")
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def login(page: Any, harness: Harness, *, tenant: str = "t1", scopes: list[str], subject: str = "op") -> None:
    page.goto(f"{harness.url}/console/approvals")
    expect(page).to_have_url(f"{harness.url}/console/login?next=/console/approvals")
    page.get_by_label("Tenant").fill(tenant)
    page.get_by_label("Subject").fill(subject)
    for box in page.locator("input[name=scopes]").all():
        box.set_checked(box.get_attribute("value") in scopes)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".who")).to_contain_text(f"tenant {tenant}")


def create_intent(harness: Harness, *, tenant: str = "t1", title: str = "Call the customer") -> str:
    with harness.client(tenant=tenant) as api:
        return str(harness.create_intent(api, parameters={"title": title})["action_intent_id"])


def api_status(harness: Harness, intent_id: str, tenant: str = "t1") -> dict[str, Any]:
    with harness.client(tenant=tenant) as api:
        return dict(api.get(f"/intents/{intent_id}").json())


OPERATOR = ["intents:read", "intents:approve", "executions:read"]


def test_log_in_approve_and_see_it_succeed_on_the_timeline_without_reloading(
    harness: Harness, new_page: Any
) -> None:
    intent_id = create_intent(harness, title="Send the renewal offer")
    page = new_page()
    page.goto(f"{harness.url}/console/login")
    shot(page, "login")
    login(page, harness, scopes=OPERATOR)
    card = page.locator(f'[data-intent="{intent_id}"]')
    expect(card).to_contain_text("Send the renewal offer")
    expect(card).to_contain_text("CREATE_INTERNAL_TASK")
    expect(card.locator("[data-countdown]")).to_contain_text("in ")
    # times are shown in the viewer's zone, the UTC value on hover
    assert card.locator("time").first.get_attribute("title").startswith("UTC: ")
    assert "Z" not in card.locator("time").first.inner_text()
    shot(page, "approvals")
    card.get_by_label("Comment (optional)").fill("checked with the account owner")
    card.get_by_role("button", name="Approve").click()
    expect(page).to_have_url(f"{harness.url}/console/executions/{intent_id}")
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#execution-status")).to_contain_text("SUCCEEDED", timeout=WAIT_MS)
    assert page.evaluate("window.__sameDocument === true")  # updated in place, never reloaded
    timeline = page.locator("ol.timeline")
    for text in [
        "Approved",
        "checked with the account owner",
        "Tool call internal.create_task",
        "INTERNAL Task",
    ]:
        expect(timeline).to_contain_text(text)
    expect(timeline).to_contain_text("Signal ACTION_EXECUTED")
    shot(page, "timeline")
    page.get_by_role("link", name="Executions").click()
    expect(page.locator("table.list")).to_contain_text(intent_id)
    expect(page.locator("table.list")).to_contain_text("SUCCEEDED")
    shot(page, "executions")


def test_reject_one(harness: Harness, new_page: Any) -> None:
    intent_id = create_intent(harness)
    page = new_page()
    login(page, harness, scopes=OPERATOR)
    card = page.locator(f'[data-intent="{intent_id}"]')
    card.get_by_label("Comment (optional)").fill("not this quarter")
    card.get_by_role("button", name="Reject").click()
    expect(page.locator(".flash")).to_contain_text(f"Rejected {intent_id}")
    expect(page.locator(f'[data-intent="{intent_id}"]')).to_have_count(0)
    assert api_status(harness, intent_id)["approval_status"] == "REJECTED"


def test_global_stop_then_a_newly_approved_intent_ends_cancelled(harness: Harness, new_page: Any) -> None:
    page = new_page()
    login(page, harness, scopes=[*OPERATOR, "admin", "platform:admin"], subject="oncall")
    page.get_by_role("link", name="Kill switches").click()
    expect(page.locator("#global-state")).to_contain_text("Running")
    shot(page, "kill-switches")
    page.get_by_role("button", name="Stop everything").click()
    expect(page.get_by_role("heading", name="Are you sure?")).to_be_visible()
    shot(page, "kill-switches-confirm")
    page.get_by_role("button", name="Yes, stop").click()
    expect(page.locator("#global-state")).to_contain_text("STOPPED")
    expect(page.locator("section.switch").first.locator("table.history")).to_contain_text("oncall")
    shot(page, "kill-switches-stopped")
    intent_id = create_intent(harness)
    page.goto(f"{harness.url}/console/approvals")
    page.locator(f'[data-intent="{intent_id}"]').get_by_role("button", name="Approve").click()
    expect(page.locator("#execution-status")).to_contain_text("CANCELLED", timeout=WAIT_MS)
    expect(page.locator("#live")).to_contain_text("kill switch")
    shot(page, "timeline-cancelled")


def test_without_admin_no_kill_switch_buttons_and_a_forged_post_gets_403(
    harness: Harness, new_page: Any
) -> None:
    page = new_page()
    login(page, harness, scopes=OPERATOR)
    expect(page.get_by_role("link", name="Kill switches")).to_have_count(0)
    page.goto(f"{harness.url}/console/kill-switches")
    expect(page.locator(".problem")).to_contain_text("lacks the scope")
    expect(page.locator("button", has_text="Stop")).to_have_count(0)
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    for path, form in [
        ("/console/kill-switches/global", {"global_stop": "true", "confirmed": "yes"}),
        ("/console/kill-switches/tenant", {"execution_enabled": "false", "confirmed": "yes"}),
    ]:
        answer = page.request.post(f"{harness.url}{path}", form={"csrf": csrf, **form}, max_redirects=0)
        assert answer.status == 403
    with harness.client() as api:
        assert api.get("/admin/kill-switches").json()["global_stop"] is False
        assert api.get("/admin/tenants/t1/execution").json()["execution_enabled"] is True


def test_a_tenant_admin_sees_only_its_tenant_and_only_platform_admin_sees_the_global_stop(
    harness: Harness, new_page: Any
) -> None:
    tenant_admin = new_page()
    login(tenant_admin, harness, tenant="t2", scopes=["admin"])
    tenant_admin.goto(f"{harness.url}/console/kill-switches")
    expect(tenant_admin.get_by_role("heading", name="Tenant t2")).to_be_visible()
    expect(tenant_admin.get_by_role("button", name="Stop tenant t2")).to_be_visible()
    expect(tenant_admin.get_by_role("button", name="Stop everything")).to_have_count(0)
    expect(tenant_admin.locator("section.switch")).to_have_count(1)
    shot(tenant_admin, "kill-switches-tenant-admin")
    platform = new_page()
    login(platform, harness, scopes=["platform:admin"])
    platform.goto(f"{harness.url}/console/kill-switches")
    expect(platform.get_by_role("button", name="Stop everything")).to_be_visible()
    expect(platform.get_by_role("button", name="Stop tenant t1")).to_have_count(0)
    platform.get_by_role("link", name="Registry and connectors").click()
    expect(platform.locator("table.list").first).to_contain_text("CREATE_INTERNAL_TASK")
    shot(platform, "registry")


def test_a_user_of_one_tenant_never_sees_another_tenants_intents(harness: Harness, new_page: Any) -> None:
    theirs = create_intent(harness, tenant="t2", title="t2 only")
    mine = create_intent(harness, tenant="t1", title="t1 only")
    page = new_page()
    login(page, harness, tenant="t1", scopes=OPERATOR)
    expect(page.locator(f'[data-intent="{mine}"]')).to_have_count(1)
    expect(page.locator(f'[data-intent="{theirs}"]')).to_have_count(0)
    expect(page.locator("main")).not_to_contain_text("t2 only")
    page.goto(f"{harness.url}/console/executions/{theirs}")
    expect(page.locator(".problem")).to_contain_text("not found")


def test_a_form_post_without_the_csrf_token_is_refused(harness: Harness, new_page: Any) -> None:
    intent_id = create_intent(harness)
    page = new_page()
    login(page, harness, scopes=OPERATOR)
    card = page.locator(f'[data-intent="{intent_id}"]')
    card.locator("input[name=csrf]").evaluate("input => input.remove()")
    card.get_by_role("button", name="Approve").click()
    expect(page.locator(".problem")).to_contain_text("security token")
    assert api_status(harness, intent_id)["approval_status"] == "PENDING_APPROVAL"


def test_narrow_screens_and_keyboard_only(harness: Harness, new_page: Any) -> None:
    intent_id = create_intent(harness)
    page = new_page(width=375)
    login(page, harness, scopes=OPERATOR)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "approvals-narrow")
    # keyboard: the first Tab reaches the skip link, and the approve button is reachable by Tab
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    approve = page.locator(f'[data-intent="{intent_id}"]').get_by_role("button", name="Approve")
    for _ in range(40):
        page.keyboard.press("Tab")
        if approve.evaluate("button => button === document.activeElement"):
            break
    else:
        pytest.fail("the Approve button is not reachable with the keyboard")
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{harness.url}/console/executions/{intent_id}")
    shot(page, "timeline-narrow")


def test_the_local_login_offers_the_demo_tenant_then_the_last_one_used(
    harness: Harness, new_page: Any
) -> None:
    page = new_page()
    page.goto(f"{harness.url}/console/login")
    # `fulfill serve --demo` writes to the demo tenant: the first look at the console shows it.
    expect(page.get_by_label("Tenant")).to_have_value("demo-tenant")
    login(page, harness, tenant="t7", scopes=OPERATOR)
    page.get_by_role("button", name="Sign out").click()
    page.goto(f"{harness.url}/console/login")
    expect(page.get_by_label("Tenant")).to_have_value("t7")


@pytest.mark.parametrize("width", [1280, 390])
def test_the_registry_shows_every_column_without_a_sideways_scroll(
    harness: Harness, new_page: Any, width: int
) -> None:
    page = new_page(width=width)
    login(page, harness, scopes=["platform:admin"])
    page.goto(f"{harness.url}/console/registry")
    expect(page.locator("table.list").first).to_contain_text("CREATE_INTERNAL_TASK")
    shot(page, f"registry-{width}")
    overflowing = page.evaluate(
        "[...document.querySelectorAll('.scroll')].filter(s => s.scrollWidth > s.clientWidth + 1).length"
    )
    assert overflowing == 0, "a table scrolls sideways"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    state = page.locator("table.list").first.locator("tbody tr").first.locator("td.state-cell")
    expect(state).to_contain_text("active")
    if width < 640:  # one cell a line, the header row hidden: each cell names its column
        label = state.evaluate("td => getComputedStyle(td, '::before').content")
        assert "State" in label
    box = state.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= width

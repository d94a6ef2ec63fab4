"""The dashboard in a real browser (Debian's headless Chromium, driven by Playwright) against the
real service on 127.0.0.1: it is the page the console opens on, it fits a phone's width, its
charts come with words and tables, and the browser never asks anything of another host.

Screenshots at 1280 and 390 px wide go to ``docs/images/`` (the ones docs/CONSOLE.md shows) and
to ``artifacts/console-screenshots/<backend>/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.support.chromium import BROWSER_MARKS, CHROMIUM, SCREENSHOTS
from tests.support.dashboard_seed import seed_two_tenants
from tests.support.harness import Harness
from tests.support.postgres import enabled as on_postgres

pytestmark = BROWSER_MARKS

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
)
expect = sync_api.expect
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


class Page:
    """A page of its own browser context that records the address of every request it makes."""

    def __init__(self, browser: Any, width: int) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": 900}, timezone_id="UTC")
        self.requests: list[str] = []
        self.context.on("request", lambda request: self.requests.append(request.url))
        self.page = self.context.new_page()

    def outside(self, harness: Harness) -> list[str]:
        """Requests to anything but this service (a data: URL never leaves the page)."""
        origin = urlparse(harness.url)
        return [
            url
            for url in self.requests
            if not url.startswith("data:")
            and (urlparse(url).hostname, urlparse(url).port) != (origin.hostname, origin.port)
        ]


@pytest.fixture
def open_page(chromium: Any) -> Iterator[Any]:
    pages: list[Page] = []

    def make(width: int = 1280) -> Page:
        pages.append(Page(chromium, width))
        return pages[-1]

    yield make
    for page in pages:
        page.context.close()


def shot(page: Any, name: str, *, docs: bool = False) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    if docs and not on_postgres():  # the docs show the SQLite run's
        page.screenshot(path=str(DOCS_IMAGES / f"{name}.png"), full_page=True)


def sign_in(page: Any, harness: Harness, *, tenant: str, scopes: list[str]) -> None:
    """Open the console's home, as a bookmark would, and sign in: the dashboard comes first."""
    page.goto(f"{harness.url}/console/")
    expect(page).to_have_url(f"{harness.url}/console/login?next=/console/")
    page.get_by_label("Tenant").fill(tenant)
    page.get_by_label("Subject").fill("oncall")
    for box in page.locator("input[name=scopes]").all():
        box.set_checked(box.get_attribute("value") in scopes)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{harness.url}/console/dashboard")


OPERATOR = ["intents:read", "intents:approve", "executions:read", "admin"]


@pytest.mark.parametrize("width", [1280, 390])
def test_the_dashboard_is_the_first_page_fits_the_screen_and_asks_nothing_of_other_hosts(
    harness: Harness, open_page: Any, width: int
) -> None:
    data, special = seed_two_tenants(harness)
    opened = open_page(width)
    page = opened.page
    sign_in(page, harness, tenant="t1", scopes=OPERATOR)
    expect(page.get_by_role("heading", name="Dashboard", exact=True)).to_be_visible()
    expect(page.locator("#switch-banner")).to_contain_text("Executions running")
    expect(page.locator("#pending-tile .count")).to_contain_text("4")
    expect(page.locator("#stuck-tile")).to_contain_text(special["stuck"][0])
    expect(page.locator("#unknown-tile")).to_contain_text(special["unknown"][0])
    expect(page.locator("#dead-tile .count")).to_contain_text("1")
    # every series is named in words next to its pattern; the chart has a table alternative
    legend = page.locator(".legend")
    for status in ("SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED"):
        expect(legend).to_contain_text(status)
    expect(page.locator("svg.chart").first).to_be_visible()
    page.get_by_text("as a table").click()
    totals = page.locator("#executions-table tfoot")
    expect(totals.locator('[data-status="SUCCEEDED"]')).to_have_text(str(data["t1"].statuses_1h["SUCCEEDED"]))
    expect(totals.locator('[data-status="FAILED"]')).to_have_text(str(data["t1"].statuses_1h["FAILED"]))
    expect(page.locator("#connectors-table")).to_contain_text("crm")
    expect(page.locator("main")).not_to_contain_text("t2-dash-")  # the other tenant's executions
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "scrolls sideways"
    shot(page, f"console-dashboard-{width}", docs=True)
    # another window, by its link
    page.get_by_role("link", name="24 hours").click()
    expect(page).to_have_url(f"{harness.url}/console/dashboard?window=24h")
    expect(page.locator("#failures-table")).to_contain_text("AUTH")
    # the approvals page is still one click away
    page.get_by_role("link", name="Approvals").click()
    expect(page).to_have_url(f"{harness.url}/console/approvals")
    assert opened.outside(harness) == []
    assert any(url.endswith("/console/static/dashboard.css") for url in opened.requests)


def test_a_stopped_tenant_sees_the_banner_and_a_platform_admin_picks_a_tenant(
    harness: Harness, open_page: Any
) -> None:
    seed_two_tenants(harness)
    tenant = open_page()
    sign_in(tenant.page, harness, tenant="t2", scopes=OPERATOR)
    banner = tenant.page.locator("#switch-banner")
    expect(banner).to_contain_text("STOPPED")
    expect(banner).to_contain_text("t2")
    expect(tenant.page.locator("#tenant-filter")).to_have_count(0)
    shot(tenant.page, "dashboard-stopped-tenant")
    admin = open_page()
    sign_in(admin.page, harness, tenant="ops", scopes=["platform:admin"])
    expect(admin.page.locator("#scope-line")).to_contain_text("Every tenant")
    expect(admin.page.locator("#dead-tile .count")).to_contain_text("3")
    admin.page.locator("#tenant-filter").select_option("t2")
    admin.page.get_by_role("button", name="Show").click()
    expect(admin.page).to_have_url(f"{harness.url}/console/dashboard?window=1h&tenant=t2")
    expect(admin.page.locator("#scope-line")).to_contain_text("Tenant t2")
    expect(admin.page.locator("#dead-tile .count")).to_contain_text("2")
    shot(admin.page, "dashboard-platform-admin-t2")
    assert tenant.outside(harness) == []
    assert admin.outside(harness) == []

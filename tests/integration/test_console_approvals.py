"""The console's approvals page as a queue: a count, pages, filters (action type, account, age) and
newest- or oldest-first order, so that no number of newer proposals buries an older intent."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterator

import pytest

from fulfill.domain.time import iso_from_epoch
from tests.support.console import Console, seed_pending
from tests.support.harness import Harness

BURIED_TENANT = "t-bury"
PROPOSALS = 205  # newer proposals, more than the 200 the page used to show
_INTENT = re.compile(r'data-intent="([^"]+)"')
_NEXT = re.compile(r'<a href="([^"]+)" rel="next">')


@pytest.fixture(scope="module")
def buried(shared: Harness) -> str:
    """One intent proposed three days ago, then 205 newer ones (one a minute) by the same agent."""
    now = shared.service.clock.now()
    oldest = f"ai_buried_{uuid.uuid4().hex[:8]}"
    seed_pending(
        shared,
        oldest,
        expires_in=86_400,
        tenant_id=BURIED_TENANT,
        account_id="acc-old",
        action_type="CREATE_INTERNAL_NOTE",
        created_at=iso_from_epoch(now - 3 * 86_400),
        parameters={"title": "the buried one"},
    )
    for index in range(PROPOSALS):
        seed_pending(
            shared,
            f"ai_noise_{index:03d}_{uuid.uuid4().hex[:6]}",
            expires_in=86_400,
            tenant_id=BURIED_TENANT,
            account_id="acc-1" if index % 2 else "acc-2",
            created_at=iso_from_epoch(now - (PROPOSALS - index) * 60),
            parameters={"title": f"noise {index}"},
        )
    return oldest


@pytest.fixture
def console(shared: Harness) -> Iterator[Console]:
    browser = Console(shared)
    yield browser
    browser.close()


def _ids(page: str) -> list[str]:
    return _INTENT.findall(page)


def _count(page: str) -> str:
    match = re.search(r'<p class="count" id="pending-count">(.*?)</p>', page, re.S)
    assert match, "no count on the page"
    return re.sub(r"<[^>]+>", "", match.group(1))


def test_the_oldest_intent_is_reachable_by_paging_through_every_newer_one(
    console: Console, buried: str
) -> None:
    console.login(tenant=BURIED_TENANT, scopes=["intents:read", "intents:approve"])
    first = console.get("/console/approvals")
    assert first.status_code == 200
    assert _count(first.text).startswith(f"{PROPOSALS + 1} waiting")
    assert buried not in first.text  # newest first: it is not on the first page
    seen: list[str] = []
    page = first.text
    for _ in range(PROPOSALS):  # bounded: a page always moves on
        seen += _ids(page)
        link = _NEXT.search(page)
        if link is None:
            break
        response = console.get(html.unescape(link.group(1)))
        assert response.status_code == 200, response.text[:300]
        page = response.text
    assert len(seen) == len(set(seen)) == PROPOSALS + 1  # every one exactly once
    assert seen[-1] == buried  # the last page ends with the oldest
    assert "showing 201 to 206" in _count(page)
    # and it can be decided from there
    assert f'formaction="/console/intents/{buried}/approve"' in page


def test_oldest_first_shows_it_on_the_first_page(console: Console, buried: str) -> None:
    console.login(tenant=BURIED_TENANT, scopes=["intents:read"])
    page = console.get("/console/approvals?order=oldest").text
    assert _ids(page)[0] == buried
    assert "the buried one" in page
    assert _count(page).startswith(f"{PROPOSALS + 1} waiting")
    assert 'value="oldest" selected' in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("age=1d", 1),  # only the one proposed three days ago
        ("age=7d", 0),
        ("action_type=CREATE_INTERNAL_NOTE", 1),
        ("action_type=CREATE_INTERNAL_TASK", PROPOSALS),
        ("account_id=acc-old", 1),
        ("account_id=acc-1", PROPOSALS // 2),
        ("account_id=acc-1&action_type=CREATE_INTERNAL_NOTE", 0),
    ],
)
def test_filters_and_their_count(console: Console, buried: str, query: str, expected: int) -> None:
    console.login(tenant=BURIED_TENANT, scopes=["intents:read"])
    page = console.get(f"/console/approvals?{query}").text
    count = _count(page)
    if expected:
        assert count.startswith(f"{expected} waiting (filtered)"), count
        assert len(_ids(page)) == min(expected, 25)
    else:
        assert "Nothing is waiting for approval that matches these filters" in count
    if expected == 1:
        assert _ids(page) == [buried]


def test_filters_are_kept_on_the_next_page(console: Console, buried: str) -> None:
    console.login(tenant=BURIED_TENANT, scopes=["intents:read"])
    first = console.get("/console/approvals?account_id=acc-2&order=oldest").text
    link = _NEXT.search(first)
    assert link is not None
    url = html.unescape(link.group(1))
    assert "account_id=acc-2" in url
    assert "order=oldest" in url
    second = console.get(url).text
    assert _count(second).startswith(f"{PROPOSALS - PROPOSALS // 2} waiting (filtered), showing 26 to 50")
    assert not set(_ids(first)) & set(_ids(second))


def test_a_user_limited_to_some_accounts_counts_only_those(console: Console, buried: str) -> None:
    console.login(tenant=BURIED_TENANT, scopes=["intents:read"], account_ids="acc-old")
    page = console.get("/console/approvals").text
    assert _count(page).startswith("1 waiting")
    assert _ids(page) == [buried]
    # naming another account finds nothing, rather than widening the token's reach
    other = console.get("/console/approvals?account_id=acc-1").text
    assert _ids(other) == []


@pytest.mark.parametrize(
    ("query", "status", "words"),
    [
        ("age=forever", 400, "The age filter is one of"),
        ("order=sideways", 400, "The order is newest or oldest"),
        ("action_type=not%20a%20type", 422, "an action type is written in capitals"),
        ("account_id=a%20b", 422, "an account id is letters"),
        ("after=garbage", 422, "the page cursor is not one this service gave"),
        ("after=WyJ4Il0", 422, "the page cursor is not one this service gave"),
    ],
)
def test_bad_filters_show_a_message(console: Console, query: str, status: int, words: str) -> None:
    console.login(tenant=BURIED_TENANT, scopes=["intents:read"])
    response = console.get(f"/console/approvals?{query}")
    assert response.status_code == status, response.text[:300]
    assert words in html.unescape(response.text)

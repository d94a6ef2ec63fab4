"""A Salesforce that answers without end, or a byte at a time, cannot hold the connector.

A tenant's admin names the login URL of its Salesforce credential, and the token endpoint there
names the ``instance_url`` of every later call: both are servers the tenant chooses. Each answer
is read within ``FULFILL_SALESFORCE_TIMEOUT_SECONDS`` in all (not per read) and up to a size
(``ANSWER_READ_BYTES``, ``TOKEN_ANSWER_BYTES``); past either, the call fails with a code that says
which, the rest of the answer is left unread, and a write whose answer was cut short is still
found by its key on the next try. An answer is asked for as it is (``identity``), and one
compressed all the same is refused before a byte of it is decoded. Real HTTP against the local Salesforce, on a real database."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fulfill.connectors.salesforce.api import ANSWER_READ_BYTES
from fulfill_tools.dev.salesforce import Fault
from tests.support.salesforce import Rig, answer, salesforce_rig

# Less than an eighth of what the local server offers (256 MiB): the rest was never read.
CUT_SHORT_BYTES = 32 * 1024 * 1024
# Far below one decoded piece of the compressed answer (about 64 MiB), far above a call's own needs.
DECODED_PEAK_BYTES = 16 * 1024 * 1024


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with salesforce_rig(tmp_path, salesforce_timeout_seconds=2.0) as running:
        yield running


def bytes_sent(rig: Rig) -> int:
    """What the server sent of its one faulted answer, once it has seen the client go away."""
    deadline = time.monotonic() + 10
    while not rig.dev.answer_bytes_sent and time.monotonic() < deadline:
        time.sleep(0.02)
    [sent] = rig.dev.answer_bytes_sent
    return sent


def create_task(rig: Rig, name: str) -> tuple[bool, dict[str, object]]:
    return answer(rig.connector.create_task(title=f"Call {name}", **rig.bindings(name)))


def tasks_with(rig: Rig, name: str) -> list[dict[str, object]]:
    key = rig.bindings(name)["idempotency_key"]
    return [t for t in rig.dev.records("Task") if t.get("Fulfill_Idempotency_Key__c") == key]


def next_try_finds_the_one_write(rig: Rig, name: str) -> None:
    """The write happened though its answer was cut short; the next try finds it by its key."""
    [written] = tasks_with(rig, name)
    ok, payload = create_task(rig, name)
    assert ok, payload
    assert payload["found_existing"] is True
    assert payload["external_object_refs"][0]["object_id"] == written["Id"]  # type: ignore[index]
    assert len(tasks_with(rig, name)) == 1


def test_an_endless_answer_to_a_create_fails_the_call_and_the_next_try_finds_the_write(rig: Rig) -> None:
    rig.dev.add_fault(Fault("endless_answer", method="POST", path="/sobjects/Task"))
    ok, payload = create_task(rig, "endless")
    assert not ok
    assert (payload["error_class"], payload["error_code"]) == ("DOWNSTREAM", "SALESFORCE_ANSWER_TOO_LARGE")
    assert str(ANSWER_READ_BYTES) in str(payload["error_message"])
    sent = bytes_sent(rig)
    assert ANSWER_READ_BYTES < sent < CUT_SHORT_BYTES
    next_try_finds_the_one_write(rig, "endless")


def test_an_answer_sent_a_byte_at_a_time_times_out_within_the_timeout_in_all(rig: Rig) -> None:
    # 1,024 bytes and more, one every 0.05 s: each read is quick, the whole answer would take 50 s.
    rig.dev.add_fault(Fault("trickle_answer", method="POST", path="/sobjects/Task", seconds=0.05))
    started = time.monotonic()
    ok, payload = create_task(rig, "trickle")
    elapsed = time.monotonic() - started
    assert not ok
    assert (payload["error_class"], payload["error_code"]) == ("TIMEOUT", "SALESFORCE_TIMEOUT")
    assert elapsed < 10, elapsed  # the timeout is 2 s for the whole answer; the trickle is 50 s
    next_try_finds_the_one_write(rig, "trickle")


def test_an_endless_answer_to_the_lookup_of_an_unknown_write_fails_the_call_not_the_write(rig: Rig) -> None:
    # The create's answer is cut short (the write's result unknown), then the next try's lookup
    # of the key answers without end: that try fails too, and the one after finds the one write.
    rig.dev.add_fault(
        Fault("endless_answer", method="POST", path="/sobjects/Task"),
        Fault("endless_answer", method="GET", path="/query"),
    )
    for _ in range(2):
        ok, payload = create_task(rig, "lookup")
        assert not ok
        assert (payload["error_class"], payload["error_code"]) == (
            "DOWNSTREAM",
            "SALESFORCE_ANSWER_TOO_LARGE",
        )
    next_try_finds_the_one_write(rig, "lookup")


def test_an_endless_token_answer_fails_the_call_and_the_next_one_logs_in(rig: Rig) -> None:
    rig.dev.add_fault(Fault("endless_answer", path="/services/oauth2/token"))
    ok, payload = create_task(rig, "token")
    assert not ok
    assert (payload["error_class"], payload["error_code"]) == ("DOWNSTREAM", "OAUTH_ANSWER_TOO_LARGE")
    assert bytes_sent(rig) < CUT_SHORT_BYTES
    assert tasks_with(rig, "token") == []
    ok, payload = create_task(rig, "token")
    assert ok, payload


def test_a_token_answer_sent_a_byte_at_a_time_times_out_within_the_timeout_in_all(rig: Rig) -> None:
    rig.dev.add_fault(Fault("trickle_answer", path="/services/oauth2/token", seconds=0.05))
    started = time.monotonic()
    ok, payload = create_task(rig, "slow-token")
    elapsed = time.monotonic() - started
    assert not ok
    assert (payload["error_class"], payload["error_code"]) == ("TIMEOUT", "OAUTH_TIMEOUT")
    assert elapsed < 10, elapsed
    ok, payload = create_task(rig, "slow-token")
    assert ok, payload


def test_a_short_answer_keeps_its_connection_for_the_next_call(rig: Rig) -> None:
    """The bounded read ends an answer that fits, so the connection goes back to the pool."""
    for name in ("first", "second", "third"):
        ok, payload = create_task(rig, name)
        assert ok, payload
    assert len(rig.dev.client_ports) == 1  # the token's request and the nine calls share one


def test_every_request_asks_for_the_answer_as_it_is(rig: Rig) -> None:
    """A compressed answer is counted on the wire; so none is asked for."""
    ok, payload = create_task(rig, "identity")
    assert ok, payload
    assert len(rig.dev.accept_encodings) >= 2  # the token's request and the create, at least
    assert set(rig.dev.accept_encodings) == {"identity"}


def decoded_peak(call: Callable[[], tuple[bool, dict[str, object]]]) -> tuple[bool, dict[str, object], int]:
    """``call``'s answer and the most memory this process held above its start while it ran."""
    tracemalloc.start()
    try:
        ok, payload = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return ok, payload, peak


def test_a_compressed_answer_to_a_create_is_refused_and_the_next_try_finds_the_write(rig: Rig) -> None:
    # Each 64 KiB on the wire decodes to about 64 MiB: decoding even one piece would hold that.
    rig.dev.add_fault(Fault("compressed_answer", method="POST", path="/sobjects/Task"))
    ok, payload, peak = decoded_peak(lambda: create_task(rig, "gzip"))
    assert not ok
    assert peak < DECODED_PEAK_BYTES, peak
    assert (payload["error_class"], payload["error_code"]) == ("DOWNSTREAM", "SALESFORCE_ANSWER_TOO_LARGE")
    assert "'gzip'" in str(payload["error_message"])
    assert bytes_sent(rig) < CUT_SHORT_BYTES
    next_try_finds_the_one_write(rig, "gzip")


def test_a_compressed_token_answer_is_refused_undecoded_and_the_next_call_logs_in(rig: Rig) -> None:
    rig.dev.add_fault(Fault("compressed_answer", path="/services/oauth2/token"))
    ok, payload, peak = decoded_peak(lambda: create_task(rig, "gzip-token"))
    assert not ok
    assert peak < DECODED_PEAK_BYTES, peak
    assert (payload["error_class"], payload["error_code"]) == ("DOWNSTREAM", "OAUTH_ANSWER_TOO_LARGE")
    assert "'gzip'" in str(payload["error_message"])
    assert tasks_with(rig, "gzip-token") == []
    ok, payload = create_task(rig, "gzip-token")
    assert ok, payload

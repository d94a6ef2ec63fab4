"""The Salesforce connector's tools over real HTTP against the local Salesforce server, on a real
database: each tool, each error class from Salesforce's own error bodies, a session that expires
mid-run, answers lost after the write, concurrent calls with one key, and every compensation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from fulfill.domain.credentials import JwtBearerInput, RefreshTokenInput
from fulfill.store.tables import external_writes
from fulfill_tools.dev.salesforce import DevSalesforce, Fault
from tests.support.salesforce import (
    CLIENT_ID,
    CLIENT_SECRET,
    USERNAME,
    Rig,
    answer,
    dev_config,
    rsa_key_pair,
    salesforce_rig,
)
from tests.support.serving import serve_in_thread


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with salesforce_rig(tmp_path) as running:
        yield running


def tasks_with(rig: Rig, key: str) -> list[dict[str, Any]]:
    return [t for t in rig.dev.records("Task") if t.get("Fulfill_Idempotency_Key__c") == key]


def create_task(rig: Rig, name: str, **fields: Any) -> tuple[bool, dict[str, Any]]:
    return answer(rig.connector.create_task(**{"title": f"Call {name}", **fields}, **rig.bindings(name)))


# --- each tool --------------------------------------------------------------------------------------


def test_create_task_writes_one_task_carrying_the_key(rig: Rig) -> None:
    ok, payload = create_task(
        rig, "a", priority="High", description="about the renewal", due_date="2031-01-15"
    )
    assert ok, payload
    [ref] = payload["external_object_refs"]
    assert ref["system"] == "CRM"
    assert ref["object_type"] == "Task"
    assert ref["object_id"].startswith("00T")
    assert len(ref["object_id"]) == 18
    assert ref["object_url"] == f"{rig.server.url}/{ref['object_id']}"
    key = rig.bindings("a")["idempotency_key"]
    [task] = tasks_with(rig, key)
    assert task["Id"] == ref["object_id"]
    assert (task["Subject"], task["Priority"], task["ActivityDate"]) == ("Call a", "High", "2031-01-15")

    again_ok, again = create_task(rig, "a", priority="High")
    assert again_ok
    assert again["external_object_refs"] == payload["external_object_refs"]
    assert again["found_existing"] is True
    assert len(tasks_with(rig, key)) == 1


def test_create_opportunity_writes_one_opportunity(rig: Rig) -> None:
    account = rig.dev.insert("Account", {"Name": "Globex"})
    arguments = {
        "name": "Globex expansion",
        "stage_name": "Qualification",
        "close_date": "2031-06-30",
        "amount": 125000,
        "account_record_id": account,
        **rig.bindings("opp"),
    }
    ok, payload = answer(rig.connector.create_opportunity(**arguments))
    assert ok, payload
    [ref] = payload["external_object_refs"]
    assert ref["object_type"] == "Opportunity"
    assert ref["object_id"].startswith("006")
    record = rig.dev.record("Opportunity", ref["object_id"])
    assert record is not None
    assert (record["StageName"], record["Amount"], record["AccountId"]) == (
        "Qualification",
        125000.0,
        account,
    )
    assert answer(rig.connector.create_opportunity(**arguments))[1]["external_object_refs"] == [ref]
    assert len(rig.dev.records("Opportunity")) == 1


def test_update_field_records_the_previous_values_and_writes_once(rig: Rig) -> None:
    seeded = rig.dev.seed()
    opportunity = seeded["opportunity_id"]
    arguments = {"record_id": opportunity, "stage_name": "Closed Won", **rig.bindings("stage")}
    ok, payload = answer(rig.connector.update_field(**arguments))
    assert ok, payload
    assert payload["previous_values"] == {"StageName": "Prospecting"}
    assert payload["external_object_refs"][0]["object_id"] == opportunity
    record = rig.dev.record("Opportunity", opportunity)
    assert record is not None
    assert record["StageName"] == "Closed Won"
    modified = record["LastModifiedDate"]

    again_ok, again = answer(rig.connector.update_field(**arguments))
    assert again_ok
    assert again["found_existing"] is True
    assert again["previous_values"] == {"StageName": "Prospecting"}
    assert rig.dev.record("Opportunity", opportunity)["LastModifiedDate"] == modified  # type: ignore[index]

    account = seeded["account_id"]
    ok, payload = answer(
        rig.connector.update_field(
            record_id=account, fields={"Industry": "Retail", "Rating": "Hot"}, **rig.bindings("acct")
        )
    )
    assert ok, payload
    assert payload["previous_values"] == {"Industry": "Manufacturing", "Rating": None}
    record = rig.dev.record("Account", account)
    assert record is not None
    assert (record["Industry"], record["Rating"]) == ("Retail", "Hot")


def test_update_field_refuses_what_is_not_allow_listed(rig: Rig) -> None:
    seeded = rig.dev.seed()
    requests_before = rig.dev.api_requests
    for arguments, fragment in (
        ({"record_id": seeded["account_id"], "fields": {"OwnerId": "005000000000001"}}, "OwnerId"),
        ({"record_id": seeded["account_id"], "stage_name": "Closed Won"}, "Opportunity only"),
        ({"record_id": "00T5g0000000001EAA", "fields": {"Subject": "x"}}, "Account (001…) or Opportunity"),
        ({"record_id": seeded["opportunity_id"]}, "nothing to update"),
    ):
        ok, payload = answer(rig.connector.update_field(**arguments, **rig.bindings("refused")))
        assert not ok
        assert payload["error_class"] == "VALIDATION"
        assert fragment in payload["error_message"]
    assert rig.dev.api_requests == requests_before  # refused before any request


# --- compensation -------------------------------------------------------------------------------------


def test_delete_task_and_delete_opportunity_undo_the_creates_and_are_safe_to_repeat(rig: Rig) -> None:
    ok, payload = create_task(rig, "undo")
    task_id = payload["external_object_refs"][0]["object_id"]
    bindings = rig.bindings("undo")
    ok, deleted = answer(rig.connector.delete_task(object_id=task_id, **bindings))
    assert ok
    assert deleted["deleted"] is True
    assert rig.dev.record("Task", task_id) is None
    ok, again = answer(rig.connector.delete_task(object_id=task_id, **bindings))
    assert ok
    assert again["deleted"] is False

    opp = {"name": "To undo", "stage_name": "Prospecting", "close_date": "2031-01-01", **rig.bindings("o")}
    opportunity_id = answer(rig.connector.create_opportunity(**opp))[1]["external_object_refs"][0][
        "object_id"
    ]
    ok, deleted = answer(rig.connector.delete_opportunity(object_id=opportunity_id, **rig.bindings("o")))
    assert ok
    assert deleted["deleted"] is True
    assert rig.dev.record("Opportunity", opportunity_id) is None


def test_a_delete_already_done_in_salesforce_is_success(rig: Rig) -> None:
    task_id = create_task(rig, "gone")[1]["external_object_refs"][0]["object_id"]
    with rig.dev._lock:  # someone deleted it in Salesforce meanwhile
        rig.dev._deleted["Task"][task_id] = rig.dev._records["Task"].pop(task_id)
    ok, payload = answer(rig.connector.delete_task(object_id=task_id, **rig.bindings("gone")))
    assert ok
    assert payload["deleted"] is False


def test_compensation_deletes_only_what_this_execution_wrote(rig: Rig) -> None:
    foreign = rig.dev.insert("Task", {"Subject": "not ours"})
    create_task(rig, "mine")
    ok, payload = answer(rig.connector.delete_task(object_id=foreign, **rig.bindings("mine")))
    assert not ok
    assert (payload["error_class"], payload["error_code"]) == ("VALIDATION", "UNKNOWN_OBJECT")
    assert rig.dev.record("Task", foreign) is not None


def test_restore_field_writes_the_previous_values_back(rig: Rig) -> None:
    opportunity = rig.dev.seed()["opportunity_id"]
    bindings = rig.bindings("restore")
    answer(rig.connector.update_field(record_id=opportunity, stage_name="Negotiation/Review", **bindings))
    ok, payload = answer(rig.connector.restore_field(object_id=opportunity, **bindings))
    assert ok, payload
    assert payload["restored_fields"] == ["StageName"]
    assert rig.dev.record("Opportunity", opportunity)["StageName"] == "Prospecting"  # type: ignore[index]
    ok, again = answer(rig.connector.restore_field(object_id=opportunity, **bindings))
    assert ok
    assert again["restored_fields"] == []


def test_restore_field_does_not_overwrite_a_later_change(rig: Rig) -> None:
    opportunity = rig.dev.seed()["opportunity_id"]
    bindings = rig.bindings("conflict")
    answer(rig.connector.update_field(record_id=opportunity, stage_name="Closed Won", **bindings))
    with rig.dev._lock:  # a person moved the stage on afterwards
        rig.dev._records["Opportunity"][opportunity]["StageName"] = "Closed Lost"
    ok, payload = answer(rig.connector.restore_field(object_id=opportunity, **bindings))
    assert not ok
    assert payload["error_code"] == "COMPENSATION_CONFLICT"
    assert "StageName" in payload["error_message"]
    assert rig.dev.record("Opportunity", opportunity)["StageName"] == "Closed Lost"  # type: ignore[index]


# --- errors, from Salesforce's own answers -----------------------------------------------------------


def test_invalid_session_twice_is_auth_after_exactly_one_refresh(rig: Rig) -> None:
    assert create_task(rig, "warm")[0]  # a cached token
    tokens_before = rig.connector.tokens.requests
    rig.dev.add_fault(Fault("invalid_session", path="/services/data/", times=2))
    ok, payload = create_task(rig, "unauthorised")
    assert not ok
    assert (payload["error_class"], payload["error_code"]) == ("AUTH", "SALESFORCE_INVALID_SESSION_ID")
    assert rig.connector.tokens.requests == tokens_before + 1
    assert tasks_with(rig, rig.bindings("unauthorised")["idempotency_key"]) == []


def test_session_expiry_mid_run_refreshes_once_then_succeeds(rig: Rig) -> None:
    assert create_task(rig, "first")[0]
    assert rig.connector.tokens.requests == 1
    rig.dev.expire_sessions()
    ok, payload = create_task(rig, "second")
    assert ok, payload
    assert rig.connector.tokens.requests == 2
    assert rig.dev.token_requests == {"client_credentials": 2}
    assert len(tasks_with(rig, rig.bindings("second")["idempotency_key"])) == 1


@pytest.mark.parametrize(
    ("fault", "error_class", "error_code", "fragment"),
    [
        (
            Fault("rate_limit"),
            "RATE_LIMIT",
            "SALESFORCE_REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded",
        ),
        (
            Fault(
                "error", status=403, error_code="INSUFFICIENT_ACCESS", message="insufficient access rights"
            ),
            "AUTH",
            "SALESFORCE_INSUFFICIENT_ACCESS",
            "403 INSUFFICIENT_ACCESS",
        ),
        (Fault("error", status=503), "DOWNSTREAM", "SALESFORCE_SERVER_UNAVAILABLE", "503"),
        (Fault("error", status=500), "DOWNSTREAM", "SALESFORCE_UNKNOWN_EXCEPTION", "500"),
        (Fault("latency", seconds=4.5), "TIMEOUT", "SALESFORCE_TIMEOUT", "did not answer"),
        (Fault("drop_before_commit"), "DOWNSTREAM", "SALESFORCE_CONNECTION_LOST", "lost"),
        (
            Fault("error", status=400, error_code="UNABLE_TO_LOCK_ROW", message="unable to obtain lock"),
            "DOWNSTREAM",
            "SALESFORCE_UNABLE_TO_LOCK_ROW",
            "lock",
        ),
    ],
    ids=["403-limit", "403-access", "503", "500", "timeout", "reset", "lock-row"],
)
def test_each_error_class(rig: Rig, fault: Fault, error_class: str, error_code: str, fragment: str) -> None:
    fault.method, fault.path = "POST", "/sobjects/Task"
    rig.dev.add_fault(fault)
    ok, payload = create_task(rig, "failing")
    assert not ok
    assert (payload["error_class"], payload["error_code"]) == (error_class, error_code)
    assert fragment in payload["error_message"]
    # The retry the engine would make writes exactly one task, whatever the first answer was.
    ok, payload = create_task(rig, "failing")
    assert ok, payload
    assert len(tasks_with(rig, rig.bindings("failing")["idempotency_key"])) == 1


def test_validation_errors_name_the_fields(rig: Rig) -> None:
    ok, payload = create_task(rig, "bad", priority="Urgent")
    assert not ok
    assert payload["error_class"] == "VALIDATION"
    assert payload["error_code"] == "SALESFORCE_INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert "on Priority" in payload["error_message"]
    ok, payload = answer(
        rig.connector.update_field(
            record_id="006000000000404AAA", stage_name="Closed Won", **rig.bindings("nf")
        )
    )
    assert not ok
    assert (payload["error_class"], payload["error_code"]) == ("VALIDATION", "SALESFORCE_NOT_FOUND")
    # A refused write leaves no reservation behind: a corrected retry is a fresh write.
    with rig.db.read() as conn:
        assert conn.execute(select(external_writes)).all() == []


def test_oauth_refusals_and_missing_credentials_are_auth(rig: Rig) -> None:
    rig.use_client_credentials(client_secret="not-the-secret")
    ok, payload = create_task(rig, "refused")
    assert not ok
    assert (payload["error_class"], payload["error_code"]) == ("AUTH", "OAUTH_INVALID_CLIENT")
    assert "not-the-secret" not in payload["error_message"]
    ok, payload = answer(rig.connector.create_task(title="x", **rig.bindings("nobody", tenant="t-none")))
    assert not ok
    assert (payload["error_class"], payload["error_code"]) == ("AUTH", "CREDENTIALS_NOT_CONFIGURED")


def test_a_missing_marker_field_is_named(tmp_path: Path) -> None:
    with salesforce_rig(tmp_path, salesforce_marker_field="Other_Key__c") as rig:
        ok, payload = create_task(rig, "marker")
    assert not ok
    assert payload["error_code"] == "SALESFORCE_MARKER_FIELD_MISSING"
    assert "Other_Key__c" in payload["error_message"]


# --- no duplicate writes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault("drop_after_commit", method="POST", path="/sobjects/Task"),
        Fault("latency", method="POST", path="/sobjects/Task", seconds=4.5, after_commit=True),
    ],
    ids=["connection-dropped", "timeout"],
)
def test_an_answer_lost_after_the_write_never_writes_twice(rig: Rig, fault: Fault) -> None:
    rig.dev.add_fault(fault)
    ok, payload = create_task(rig, "lost")
    assert not ok
    assert payload["error_class"] in ("DOWNSTREAM", "TIMEOUT")  # both retryable
    key = rig.bindings("lost")["idempotency_key"]
    [written] = tasks_with(rig, key)  # it did happen
    ok, payload = create_task(rig, "lost")
    assert ok, payload
    assert payload["external_object_refs"][0]["object_id"] == written["Id"]
    assert payload["found_existing"] is True
    assert len(tasks_with(rig, key)) == 1


def test_an_update_whose_answer_was_lost_keeps_the_first_previous_values(rig: Rig) -> None:
    opportunity = rig.dev.seed()["opportunity_id"]
    bindings = rig.bindings("lost-update")
    rig.dev.add_fault(Fault("drop_after_commit", method="PATCH"))
    ok, _ = answer(rig.connector.update_field(record_id=opportunity, stage_name="Closed Won", **bindings))
    assert not ok
    assert rig.dev.record("Opportunity", opportunity)["StageName"] == "Closed Won"  # type: ignore[index]
    ok, payload = answer(
        rig.connector.update_field(record_id=opportunity, stage_name="Closed Won", **bindings)
    )
    assert ok, payload
    assert payload["previous_values"] == {"StageName": "Prospecting"}  # not the value it wrote
    assert answer(rig.connector.restore_field(object_id=opportunity, **bindings))[0]
    assert rig.dev.record("Opportunity", opportunity)["StageName"] == "Prospecting"  # type: ignore[index]


def test_ten_concurrent_calls_with_one_key_write_one_record(tmp_path: Path) -> None:
    # The nine others wait for the first call's write up to one request's timeout, and the first
    # call's whole exchange must end within it: 3 s leaves the 0.4 s write room on a busy machine.
    with salesforce_rig(tmp_path, salesforce_timeout_seconds=3.0) as rig:
        rig.dev.add_fault(Fault("latency", method="POST", path="/sobjects/Task", seconds=0.4))
        with ThreadPoolExecutor(max_workers=10) as pool:
            results = list(pool.map(lambda _: create_task(rig, "race"), range(10)))
        assert all(ok for ok, _ in results), results
        ids = {payload["external_object_refs"][0]["object_id"] for _, payload in results}
        assert len(ids) == 1
        assert len(tasks_with(rig, rig.bindings("race")["idempotency_key"])) == 1
        assert rig.connector.tokens.requests == 1


# --- grants -----------------------------------------------------------------------------------------


def test_jwt_bearer_grant_signs_an_assertion_the_server_verifies(rig: Rig) -> None:
    private, _public = rsa_key_pair()
    body = {
        "type": "jwt_bearer",
        "client_id": CLIENT_ID,
        "username": USERNAME,
        "private_key": private,
        "login_url": rig.server.url,
    }
    rig.connector.vault.put("t1", None, "salesforce", JwtBearerInput.model_validate(body))
    ok, payload = create_task(rig, "jwt")
    assert ok, payload
    assert rig.dev.token_requests == {"urn:ietf:params:oauth:grant-type:jwt-bearer": 1}

    rig.connector.vault.put(
        "t1", None, "salesforce", JwtBearerInput.model_validate({**body, "username": "x@y"})
    )
    ok, payload = create_task(rig, "jwt-refused")
    assert not ok
    assert (payload["error_class"], payload["error_code"]) == ("AUTH", "OAUTH_INVALID_GRANT")


def test_refresh_token_rotation_stores_the_new_token(rig: Rig) -> None:
    first = rig.dev.issue_refresh_token()
    body = {
        "type": "refresh_token",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": first,
        "login_url": rig.server.url,
    }
    rig.connector.vault.put("t1", "acc-1", "salesforce", RefreshTokenInput.model_validate(body))
    assert create_task(rig, "rt-1")[0]
    stored = rig.connector.vault.open("t1", "acc-1", "salesforce")
    assert stored is not None
    second = stored.secret("refresh_token")
    assert second
    assert second != first
    assert rig.dev.valid_refresh_tokens() == [second]  # the first one is spent
    [listed] = [c for c in rig.connector.vault.list("t1") if c.account_id == "acc-1"]
    assert listed.refresh_token_rotated_at is not None

    rig.dev.expire_sessions()  # the next call refreshes with the rotated token, not the spent one
    ok, payload = create_task(rig, "rt-2")
    assert ok, payload
    assert rig.dev.token_requests == {"refresh_token": 2}
    third = rig.connector.vault.open("t1", "acc-1", "salesforce").secret("refresh_token")  # type: ignore[union-attr]
    assert rig.dev.valid_refresh_tokens() == [third]


def test_an_account_credential_wins_over_the_tenant_wide_one(tmp_path: Path) -> None:
    dev = DevSalesforce(dev_config())
    with salesforce_rig(tmp_path, dev=dev) as rig:
        rig.use_client_credentials(account="acc-2", client_secret="wrong-for-acc-2")
        assert create_task(rig, "tenant-wide")[0]
        ok, payload = answer(rig.connector.create_task(title="x", **rig.bindings("own", account="acc-2")))
        assert not ok
        assert payload["error_code"] == "OAUTH_INVALID_CLIENT"


def test_a_unique_marker_makes_salesforce_refuse_a_second_create(tmp_path: Path) -> None:
    with salesforce_rig(tmp_path, dev=DevSalesforce(dev_config(unique_marker=True))) as rig:
        key = rig.bindings("dup")["idempotency_key"]
        # A record with this key already exists (a write that landed after a lookup missed it).
        existing = rig.dev.insert("Task", {"Subject": "Call dup", "Fulfill_Idempotency_Key__c": key})
        ok, payload = create_task(rig, "dup")
        assert ok, payload
        assert payload["external_object_refs"][0]["object_id"] == existing
        assert payload["found_existing"] is True
        assert len(tasks_with(rig, key)) == 1


# --- egress: where a tenant's credential may send the service --------------------------------------


def test_a_login_url_the_egress_rules_refuse_gets_nothing_sent(tmp_path: Path) -> None:
    with salesforce_rig(tmp_path, gateway_egress_allow=[]) as rig:
        ok, payload = create_task(rig, "egress")
        assert not ok
        assert (payload["error_class"], payload["error_code"]) == ("VALIDATION", "EGRESS_REFUSED")
        assert "loopback" in payload["error_message"]
        assert "FULFILL_GATEWAY_EGRESS_ALLOW" in payload["error_message"]
        assert rig.dev.token_requests == {}
        assert rig.dev.api_requests == 0


class _TokenEndpoint(BaseHTTPRequestHandler):
    """A token endpoint that sends every later call to the cloud metadata address."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = json.dumps({"access_token": "tok", "instance_url": "http://169.254.169.254"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_an_instance_url_the_egress_rules_refuse_is_never_called(rig: Rig) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenEndpoint)
    serve_in_thread(server)
    try:
        rig.use_client_credentials(login_url=f"http://127.0.0.1:{server.server_address[1]}")
        ok, payload = create_task(rig, "metadata")
        assert not ok
        assert (payload["error_class"], payload["error_code"]) == ("VALIDATION", "EGRESS_REFUSED")
        assert "169.254.169.254" in payload["error_message"]
    finally:
        server.shutdown()
        server.server_close()


# --- login URLs a tenant may name -------------------------------------------------------------------


class _Listener(BaseHTTPRequestHandler):
    """Something on a host the platform allowed for its MCP targets: records what it is sent and
    answers with text of its own."""

    received: list[bytes] = []
    status = 400
    body = b'{"error": "internal-listener-text", "error_description": "db password is hunter2"}'

    def do_POST(self) -> None:
        type(self).received.append(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(type(self).body)))
        self.end_headers()
        self.wfile.write(type(self).body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def listener() -> Iterator[tuple[int, type[_Listener]]]:
    handler = type("Listener", (_Listener,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    serve_in_thread(server)
    yield server.server_address[1], handler
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_stored_login_url_outside_the_login_hosts_gets_no_secret(
    tmp_path: Path, listener: tuple[int, type[_Listener]], scheme: str
) -> None:
    port, handler = listener
    # 127.0.0.1 is allowed for MCP targets (FULFILL_GATEWAY_EGRESS_ALLOW), not as a login host.
    with salesforce_rig(tmp_path, gateway_egress_allow=["127.0.0.1"], salesforce_login_http_hosts=[]) as rig:
        # Stored before the list existed (or the list shrank since): checked again at call time.
        rig.use_client_credentials(login_url=f"{scheme}://127.0.0.1:{port}")
        ok, payload = create_task(rig, f"foreign-{scheme}")
        assert not ok
        assert (payload["error_class"], payload["error_code"]) == ("VALIDATION", "LOGIN_URL_REFUSED")
        assert "FULFILL_SALESFORCE_LOGIN" in payload["error_message"]
        assert handler.received == []  # nothing sent, no secret
        assert rig.dev.api_requests == 0


@pytest.mark.parametrize(
    "body",
    [
        b'{"error": "internal-listener-text", "error_description": "db password is hunter2"}',
        b"<html>internal-listener-text: db password is hunter2</html>",
    ],
    ids=["json", "html"],
)
def test_an_answer_that_is_not_an_oauth_error_is_never_echoed(
    tmp_path: Path, listener: tuple[int, type[_Listener]], body: bytes
) -> None:
    port, handler = listener
    handler.body = body
    with salesforce_rig(tmp_path) as rig:  # 127.0.0.1 named in FULFILL_SALESFORCE_LOGIN_HTTP_HOSTS
        rig.use_client_credentials(login_url=f"http://127.0.0.1:{port}")
        ok, payload = create_task(rig, "echo")
        assert not ok
        assert (payload["error_class"], payload["error_code"]) == ("AUTH", "OAUTH_HTTP_400")
        assert "internal-listener-text" not in json.dumps(payload)
        assert "hunter2" not in json.dumps(payload)
        assert len(handler.received) == 1

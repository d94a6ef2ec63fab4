"""``FulfillClient`` against a real service: every route family answers with the service's own
models, and a refusal is one ``ApiError`` with the problem's status, code, detail and request line."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from fulfill.client import ApiError, AsyncFulfillClient, FulfillClient
from fulfill.domain.credentials import ClientCredentialsInput, SecretRotation
from fulfill.domain.models import ApprovalStatus, ExecutionStatusView
from fulfill.usecases.admin import KillSwitches
from fulfill.usecases.connectors import ConnectorLimitsBody, TenantCapBody
from fulfill.usecases.intents import CreateIntent
from fulfill.usecases.outbox import RedeliverBody
from tests.support.harness import TERMINAL, Harness, approved_event, make_settings
from tests.support.salesforce import SECRETS_KEY

TENANT = "t-client"
PLATFORM = ["platform:admin"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    running = Harness(make_settings(tmp_path_factory.mktemp("client"), secrets_key=SECRETS_KEY)).start()
    yield running
    running.stop()


@pytest.fixture
def api(served: Harness) -> Iterator[FulfillClient]:
    with FulfillClient(served.url, served.token(TENANT)) as client:
        yield client


def _finished(api: FulfillClient, intent_id: str) -> ExecutionStatusView:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = api.execution_status(intent_id)
        if status.status in TERMINAL and status.attempt_count is not None:
            return status
        time.sleep(0.05)
    raise AssertionError(f"{intent_id} did not finish")


def test_an_intent_is_created_approved_and_read_back_as_models(api: FulfillClient, served: Harness) -> None:
    intent_id = f"client-{uuid.uuid4().hex[:8]}"
    body = CreateIntent(
        action_intent_id=intent_id,
        action_type="CREATE_INTERNAL_TASK",
        account_id="acc-c",
        parameters={"title": "Call the customer", "nonsense": 1},
    )
    created = api.create_intent(body)
    assert created.created is True
    assert created.value.action_intent_id == intent_id
    assert created.value.approval_status is ApprovalStatus.PENDING_APPROVAL
    assert created.value.ignored_parameters == ["nonsense"]
    again = api.create_intent(body)
    assert again.created is False
    assert again.value.action_intent_id == intent_id
    assert api.get_intent(intent_id).account_id == "acc-c"

    with FulfillClient(served.url, served.token(TENANT, subject="reviewer")) as reviewer:
        approved = reviewer.approve(intent_id)  # nobody approves their own proposal
    assert approved.approval_status is ApprovalStatus.APPROVED
    status = _finished(api, intent_id)
    assert status.status == "SUCCEEDED"
    assert status.attempt_count == 1
    assert api.execution_status(intent_id, account_id="acc-c").status == "SUCCEEDED"

    types = [entry.event_type for entry in api.timeline(intent_id).entries]
    assert types.index("EXECUTION_STARTED") < types.index("ACTION_EXECUTED")
    page = api.list_executions("acc-c", limit=10, status="SUCCEEDED")
    assert intent_id in [item.action_intent_id for item in page.executions]


def test_a_mapping_body_is_sent_as_it_is_and_the_service_judges_it(api: FulfillClient) -> None:
    with pytest.raises(ApiError) as refused:
        api.create_intent(
            {"action_type": "CREATE_INTERNAL_TASK", "account_id": "acc-c", "parameters": {}, "bogus": 1}
        )
    assert refused.value.status == 422
    assert refused.value.request_line == "POST /intents"
    assert refused.value.problem is not None
    assert refused.value.detail


def test_a_refusal_is_one_api_error_with_the_problem_and_request_line(api: FulfillClient) -> None:
    with pytest.raises(ApiError) as missing:
        api.approve("no-such-intent")
    error = missing.value
    assert error.status == 404
    assert error.code is not None
    assert error.detail is not None
    assert error.request_line == "POST /intents/no-such-intent/approve"
    assert error.is_json
    assert str(error) == f"POST /intents/no-such-intent/approve answered 404 ({error.code}: {error.detail})"

    with pytest.raises(ApiError) as unsigned:
        api.with_token("not-a-jwt").execution_status("anything")
    assert unsigned.value.status == 401
    assert unsigned.value.code is not None
    assert unsigned.value.code.startswith("TOKEN")


def test_an_answer_that_is_not_the_service_s_json_is_an_api_error() -> None:
    def html(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>a login page</html>")

    with httpx.Client(transport=httpx.MockTransport(html)) as http, pytest.raises(ApiError) as wrong:
        FulfillClient("http://proxy.example", "t", http=http).approve("x")
    assert wrong.value.status == 200
    assert wrong.value.problem is None
    assert wrong.value.code is None
    assert not wrong.value.is_json
    assert str(wrong.value).startswith("POST /intents/x/approve answered 200 (")


def test_events_single_and_batched(served: Harness, api: FulfillClient) -> None:
    intent_id = f"client-ev-{uuid.uuid4().hex[:8]}"
    api.create_intent(
        {
            "action_intent_id": intent_id,
            "action_type": "CREATE_INTERNAL_TASK",
            "account_id": "acc-1",
            "parameters": {"title": "imported"},
            "approval": {"approved_by": "upstream", "approval_timestamp": "2026-01-01T00:00:00Z"},
        }
    )
    accepted = api.send_event(approved_event(intent_id, tenant=TENANT))
    assert (accepted.action_intent_id, accepted.status) == (intent_id, "accepted")
    batch = api.send_events([approved_event(intent_id, tenant=TENANT), {"detail-type": "NOPE"}])
    assert batch.failed_entry_count == 1
    assert batch.entries[0].event_id
    assert batch.entries[1].error_code
    assert _finished(api, intent_id).status == "SUCCEEDED"


def test_kill_switches_global_and_tenant(served: Harness, api: FulfillClient) -> None:
    platform = api.with_token(served.token("platform", PLATFORM))
    before = platform.kill_switches()
    stored = platform.put_kill_switches(
        KillSwitches(global_stop=False, disabled_action_types=["CREATE_INTERNAL_NOTE"])
    )
    assert stored.disabled_action_types == ["CREATE_INTERNAL_NOTE"]
    assert stored.revision == (before.revision or 0) + 1
    platform.put_kill_switches({"global_stop": False, "disabled_action_types": []})

    own = api.with_token(served.token(TENANT, ["admin"]))
    off = own.put_tenant_execution(TENANT, {"execution_enabled": False, "disabled_action_types": []})
    assert off.execution_enabled is False
    assert own.tenant_execution(TENANT).execution_enabled is False
    own.put_tenant_execution(TENANT, {"execution_enabled": True, "disabled_action_types": []})
    with pytest.raises(ApiError) as other:
        own.tenant_execution("someone-else")
    assert other.value.status == 404


def test_registry_targets_connectors_and_dead_letters(served: Harness, api: FulfillClient) -> None:
    platform = api.with_token(served.token("platform", PLATFORM))
    entries = platform.registry("CREATE_INTERNAL_TASK")
    assert entries
    assert {entry.action_type for entry in entries} == {"CREATE_INTERNAL_TASK"}
    assert platform.targets().targets == []
    with pytest.raises(ApiError) as unknown:
        platform.sync_target("nothere")
    assert unknown.value.status == 404

    names = {view.name for view in platform.connectors()}
    assert "internal" in names
    limited = platform.put_connector_limits(
        "internal", ConnectorLimitsBody(rate_per_second=None, concurrency=50)
    )
    assert limited.concurrency == 50
    platform.put_connector_limits("internal", {"rate_per_second": None, "concurrency": None})

    cap = platform.put_tenant_cap("internal", TENANT, TenantCapBody(concurrency=5))
    assert (cap.tenant_id, cap.concurrency) == (TENANT, 5)
    assert [view.tenant_id for view in platform.tenant_caps("internal")] == [TENANT]
    own = api.with_token(served.token(TENANT, ["admin"]))
    assert own.lower_own_cap(TENANT, "internal", {"concurrency": 3}).concurrency == 3
    assert [view.concurrency for view in own.own_caps(TENANT)] == [3]
    platform.delete_tenant_cap("internal", TENANT)
    assert platform.tenant_caps("internal") == []

    assert platform.dead_letters(limit=5).dead_letters == []
    assert own.dead_letters(tenant_id=TENANT).dead_letters == []
    with pytest.raises(ApiError) as nothing:
        platform.redeliver(RedeliverBody(message_id="no-such-message"))
    assert nothing.value.status == 404


def test_credentials_are_sent_with_their_secrets_and_answered_without(
    served: Harness, api: FulfillClient
) -> None:
    own = api.with_token(served.token(TENANT, ["admin"]))
    credential = ClientCredentialsInput.model_validate(
        {"type": "client_credentials", "client_id": "3MVG9-client", "client_secret": "s3cret-value-1"}
    )
    stored = own.put_credential("salesforce", credential)
    assert stored.created is True
    assert stored.value.secret_fields == ["client_secret"]
    assert own.put_credential("salesforce", credential).created is False
    rotated = own.rotate_credential(
        "salesforce", SecretRotation.model_validate({"client_secret": "s3cret-value-2"})
    )
    assert rotated.rotated_at is not None
    assert [item.connector for item in own.credentials()] == ["salesforce"]
    own.delete_credential("salesforce")
    assert own.credentials() == []


def test_the_async_client_drives_the_same_routes(served: Harness) -> None:
    async def run() -> tuple[str, str]:
        async with AsyncFulfillClient(served.url, served.token(TENANT)) as client:
            created = await client.create_intent(
                {
                    "action_type": "CREATE_INTERNAL_TASK",
                    "account_id": "acc-async",
                    "parameters": {"title": "a"},
                }
            )
            intent_id = created.value.action_intent_id
            async with AsyncFulfillClient(served.url, served.token(TENANT, subject="reviewer")) as reviewer:
                assert (await reviewer.approve(intent_id)).approval_status is ApprovalStatus.APPROVED
            while (status := await client.execution_status(intent_id)).status not in TERMINAL:
                await asyncio.sleep(0.05)
            page = await client.list_executions("acc-async", status="SUCCEEDED")
            return status.status, page.executions[0].action_intent_id if page.executions else ""

    status, listed = asyncio.run(run())
    assert status == "SUCCEEDED"
    assert listed
    assert FulfillClient(served.url).ready()

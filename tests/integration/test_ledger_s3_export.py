"""The ledger's export to S3-compatible storage (FULFILL_LEDGER_EXPORT_S3_URL), against moto's
server on 127.0.0.1: one object per signed checkpoint and a marker per tenant, resumed without
gaps or duplicates, verifiable offline; and on the workers' schedule."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from fulfill.domain.ledger_chain import verify_export
from fulfill.engine.ledger_s3_export import MARKER, S3LedgerExporter
from fulfill.usecases.ledger import public_keys
from tests.integration.test_ledger_chain import KEY_A, checkpoint, pem, propose, verify
from tests.support.eventbridge import REGION, LocalEventBridge, use_test_credentials
from tests.support.harness import Harness, make_settings
from tests.support.http_doubles import wait_for

BUCKET = "fulfill-ledger-archive"


@pytest.fixture(scope="module")
def local_s3() -> Iterator[LocalEventBridge]:
    server = LocalEventBridge()  # moto's server: it serves S3 as well as EventBridge
    yield server
    server.close()


@pytest.fixture
def s3(local_s3: LocalEventBridge, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> LocalEventBridge:
    use_test_credentials(monkeypatch, tmp_path)
    local_s3.reset()
    local_s3.client("s3").create_bucket(Bucket=BUCKET)
    return local_s3


def s3_settings(s3: LocalEventBridge, tmp_path: Path, **overrides: Any) -> Any:
    return make_settings(
        tmp_path,
        ledger_signing_key=pem(KEY_A),
        ledger_export_s3_url=f"s3://{BUCKET}/ledger/v1",
        ledger_export_s3_region=REGION,
        ledger_export_s3_endpoint_url=s3.url,
        **overrides,
    )


def keys(s3: LocalEventBridge, prefix: str) -> list[str]:
    answer = s3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for item in answer.get("Contents", [])]


def test_the_s3_export_resumes_from_its_marker_without_gaps_or_duplicates_and_verifies_offline(
    s3: LocalEventBridge, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pages of two checkpoints, so that three checkpoints are read in more than one page.
    monkeypatch.setattr("fulfill.usecases.ledger.EXPORT_PAGE", 2)
    monkeypatch.setattr("fulfill.engine.ledger_s3_export.EXPORT_PAGE", 2)
    tenant = "ledger-s3:tenant@x"  # percent-encoded in the keys
    harness = Harness(s3_settings(s3, tmp_path, ledger_checkpoint_seconds=0)).start()
    try:
        exporter = S3LedgerExporter(harness.settings)
        store = harness.service.store
        with harness.client(tenant) as client:
            assert exporter.export_tenant(store, tenant) == 0  # nothing signed yet: nothing written
            assert exporter.marker(tenant) is None
            propose(harness, client, 2)
            first = checkpoint(client).json()
            assert exporter.export_tenant(store, tenant) == 1
            prefix = "ledger/v1/ledger-s3%3Atenant%40x/"
            assert keys(s3, prefix) == [f"{prefix}checkpoints/000000000001.jsonl", f"{prefix}{MARKER}"]
            marker = exporter.marker(tenant)
            assert marker is not None
            assert (marker["checkpoint"], marker["last_position"], marker["checkpoint_hash"]) == (
                1,
                first["last_position"],
                first["hash"],
            )
            assert exporter.export_tenant(store, tenant) == 0  # resumed: nothing new, nothing again

            # Two more checkpoints; the next pass writes exactly those two.
            propose(harness, client, 1)
            checkpoint(client)
            propose(harness, client, 1)
            third = checkpoint(client).json()
            assert exporter.export_tenant(store, tenant) == 2
            assert exporter.marker(tenant)["checkpoint"] == 3  # type: ignore[index]

            # An export interrupted after an object and before its marker: the marker still names
            # checkpoint 1. The next pass writes 2 and 3 again, under the same keys, byte for byte.
            stored = {
                k: s3.client("s3").get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys(s3, prefix)
            }
            s3.client("s3").put_object(
                Bucket=BUCKET, Key=prefix + MARKER, Body=json.dumps({**marker, "exported_at": "x"}).encode()
            )
            # ...by three workers at once.
            with ThreadPoolExecutor(3) as pool:
                again = list(pool.map(lambda _: exporter.export_tenant(store, tenant), range(3)))
            assert max(again) == 2  # a worker that read the marker after another moved it writes less
            for key, body in stored.items():
                if not key.endswith(MARKER):
                    assert s3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read() == body
            assert exporter.marker(tenant)["checkpoint"] == 3  # type: ignore[index]

            lines = exporter.read_export(tenant)
            entries = [line["entry"]["entry_id"] for line in lines if line["kind"] == "entry"]
            positions = [line["position"] for line in lines if line["kind"] == "entry"]
            assert not [e for e, n in Counter(entries).items() if n > 1]  # no duplicate
            assert positions == list(range(1, third["last_position"] + 1))  # no gap
            assert len(entries) == verify(client)["entries"]
            # The same records as the API's export, which reads the ledger in pages too.
            api = client.get("/admin/ledger/export", params={"since": "0"})
            assert api.status_code == 200, api.text
            assert [json.loads(line) for line in api.text.splitlines()] == lines
            assert api.headers["X-Fulfill-Ledger-Next-Since"] == str(third["last_position"])
            offline = verify_export(lines, public_keys(harness.settings))
            assert offline["intact"] is True
            assert offline["last_signed_checkpoint"]["number"] == 3

            # An object changed in the bucket no longer verifies offline, and the entry is named.
            key = f"{prefix}checkpoints/000000000002.jsonl"
            records = [
                json.loads(line)
                for line in s3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read().splitlines()
            ]
            records[0]["entry"]["event_type"] = "FORGED"
            s3.client("s3").put_object(
                Bucket=BUCKET, Key=key, Body="".join(json.dumps(r) + "\n" for r in records).encode()
            )
            tampered = verify_export(exporter.read_export(tenant), public_keys(harness.settings))
            assert tampered["intact"] is False
            assert tampered["first_bad_entry"]["entry_id"] == records[0]["entry"]["entry_id"]
            assert tampered["first_bad_entry"]["problem"].startswith("changed")
    finally:
        harness.stop()


def test_workers_export_every_tenant_to_s3_on_the_schedule(s3: LocalEventBridge, tmp_path: Path) -> None:
    harness = Harness(s3_settings(s3, tmp_path, ledger_checkpoint_seconds=0.2)).start()
    try:
        exporter = S3LedgerExporter(harness.settings)
        with harness.client("ledger-s3-a") as a, harness.client("ledger-s3-b") as b:
            propose(harness, a, 2)
            propose(harness, b, 1)
            for tenant, client in (("ledger-s3-a", a), ("ledger-s3-b", b)):

                def exported(tenant: str = tenant, client: Any = client) -> dict[str, Any] | None:
                    lines = exporter.read_export(tenant)
                    count = sum(1 for line in lines if line["kind"] == "entry")
                    return (
                        verify_export(lines, public_keys(harness.settings))
                        if lines and count == verify(client)["entries"]
                        else None
                    )

                result = wait_for(exported, timeout=15)
                assert result["intact"] is True
                assert result["from_checkpoint"] == 1
    finally:
        harness.stop()


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("ledger_export_s3_url", "https://bucket/prefix"),
        ("ledger_export_s3_url", "s3://"),
        ("ledger_export_s3_url", "s3://Bad_Bucket/x"),
        ("ledger_export_s3_endpoint_url", "ftp://127.0.0.1:9000"),
    ],
)
def test_a_malformed_s3_export_setting_stops_the_start(tmp_path: Path, setting: str, value: str) -> None:
    overrides = {"ledger_export_s3_url": "s3://fulfill-ledger-archive/p", setting: value}
    with pytest.raises(ValueError, match="FULFILL_LEDGER_EXPORT_S3"):
        make_settings(tmp_path, **overrides)

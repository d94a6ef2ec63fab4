"""Scheduled ledger export to S3 or an S3-compatible store (``FULFILL_LEDGER_EXPORT_S3_URL``).

Layout under ``s3://<bucket>/<prefix>/<tenant>/`` (the tenant id percent-encoded):

- ``checkpoints/<number, 12 digits>.jsonl``: one object per signed checkpoint, the export's JSON
  Lines (``domain/ledger_chain.export_lines``): each entry it covers with its position and hash, then
  the checkpoint itself with its leaves. Listing the objects in key order and concatenating them
  gives a file that ``fulfill ledger verify --file`` checks offline.
- ``last-exported.json``: the marker, ``{"tenant_id", "checkpoint", "last_position",
  "checkpoint_hash", "key", "exported_at"}`` of the last checkpoint exported.

A pass resumes after the marker and writes the next checkpoints in order, each object before the
marker that names it. An object's key and bytes are decided by its checkpoint alone, so an export
interrupted between the two writes, or two workers exporting at once, write the same object again
and never a second copy of an entry; and since the marker moves only after its object is stored, no
checkpoint is skipped. A marker one worker moves back (it read an older one) only makes the next
pass write objects that are already there, byte for byte.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote, urlparse

from fulfill.config import Settings
from fulfill.domain import ledger_chain
from fulfill.engine.botocore_idle import drop_idle_connections
from fulfill.ports.store import Store
from fulfill.usecases.ledger import EXPORT_PAGE

MARKER = "last-exported.json"


class S3LedgerExporter:
    """Exports each tenant's new signed checkpoints to ``FULFILL_LEDGER_EXPORT_S3_URL``."""

    def __init__(self, settings: Settings) -> None:
        url = urlparse(settings.ledger_export_s3_url)
        self.bucket = url.netloc
        self.prefix = url.path.strip("/")
        self._settings = settings
        self._client: Any = None
        self._lock = threading.Lock()

    def _s3(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                timeout = self._settings.ledger_export_s3_timeout_seconds
                self._client = boto3.session.Session().client(
                    "s3",
                    region_name=self._settings.ledger_export_s3_region or None,
                    endpoint_url=self._settings.ledger_export_s3_endpoint_url or None,
                    config=Config(
                        connect_timeout=timeout,
                        read_timeout=timeout,
                        retries={"mode": "standard", "max_attempts": 3},
                    ),
                )
                drop_idle_connections(self._client)
            return self._client

    def tenant_prefix(self, tenant_id: str) -> str:
        name = quote(tenant_id, safe="")
        return f"{self.prefix}/{name}/" if self.prefix else f"{name}/"

    def object_key(self, tenant_id: str, number: int) -> str:
        return f"{self.tenant_prefix(tenant_id)}checkpoints/{number:012d}.jsonl"

    def marker(self, tenant_id: str) -> dict[str, Any] | None:
        """The tenant's marker, or None before its first export."""
        from botocore.exceptions import ClientError

        try:
            answer = self._s3().get_object(Bucket=self.bucket, Key=self.tenant_prefix(tenant_id) + MARKER)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        marker: dict[str, Any] = json.loads(answer["Body"].read())
        return marker

    def exported_tenants(self) -> list[str]:
        """Tenants with a marker under the prefix."""
        base = f"{self.prefix}/" if self.prefix else ""
        tenants: list[str] = []
        paginator = self._s3().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=base, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                tenants.append(unquote(str(common["Prefix"])[len(base) :].rstrip("/")))
        return tenants

    def export(self, store: Store, tenants: list[str]) -> int:
        """Export ``tenants`` and every tenant already exported; returns the objects written."""
        return sum(
            self.export_tenant(store, tenant_id)
            for tenant_id in sorted(set(self.exported_tenants()) | set(tenants))
        )

    def export_tenant(self, store: Store, tenant_id: str) -> int:
        """Write the tenant's checkpoints after its marker, one object each, in order."""
        marker = self.marker(tenant_id)
        since = int(marker["last_position"]) if marker else 0
        written = 0
        while True:
            with store.read() as uow:
                page = uow.ledger.checkpoints_after(tenant_id, since, limit=EXPORT_PAGE)
            for cp in page:
                with store.read() as uow:
                    entries = uow.ledger.entries_at(tenant_id, cp.first_position, cp.last_position)
                body = "".join(
                    json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n"
                    for line in ledger_chain.export_lines([cp], entries)
                ).encode()
                key = self.object_key(tenant_id, cp.number)
                self._s3().put_object(
                    Bucket=self.bucket, Key=key, Body=body, ContentType="application/x-ndjson"
                )
                self._s3().put_object(
                    Bucket=self.bucket,
                    Key=self.tenant_prefix(tenant_id) + MARKER,
                    Body=json.dumps(
                        {
                            "tenant_id": tenant_id,
                            "checkpoint": cp.number,
                            "last_position": cp.last_position,
                            "checkpoint_hash": ledger_chain.checkpoint_hash(cp),
                            "key": key,
                            "exported_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                        },
                        separators=(",", ":"),
                    ).encode(),
                    ContentType="application/json",
                )
                since = cp.last_position
                written += 1
            if len(page) < EXPORT_PAGE:
                return written

    def read_export(self, tenant_id: str) -> list[dict[str, Any]]:
        """Every exported record of the tenant, objects in key order (for verification and tests)."""
        lines: list[dict[str, Any]] = []
        paginator = self._s3().get_paginator("list_objects_v2")
        for page in paginator.paginate(
            Bucket=self.bucket, Prefix=self.tenant_prefix(tenant_id) + "checkpoints/"
        ):
            for item in page.get("Contents", []):
                body = self._s3().get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read().decode()
                lines.extend(json.loads(line) for line in body.splitlines() if line.strip())
        return lines

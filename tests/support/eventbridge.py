"""A local EventBridge: moto's server on 127.0.0.1, with a rule that copies the events of a bus into
an SQS queue, so that a test reads back exactly what was put (as a rule target receives it).

moto keeps its state per process, so one server serves a whole test module and ``reset`` empties
it between tests. The AWS settings of the environment are replaced by fixed test credentials and
no shared files, so nothing here can reach a real account.
"""

from __future__ import annotations

import http.client
import json
import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.support import plain_http
from tests.support.serving import serve_in_thread

REGION = "us-east-1"
ACCESS_KEY_ID = "AKIAFULFILLTESTKEY01"
SECRET_ACCESS_KEY = "fulfill-test-secret-access-key-0123456789"
SIGNAL_PATTERN = {"source": ["cc-native.perception"], "detail-type": ["SIGNAL_CREATED"]}


def use_test_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The standard AWS chain finds these keys in the environment, and nothing else."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


class LocalEventBridge:
    def __init__(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        self._queues: dict[str, str] = {}

    def client(self, service: str) -> Any:
        return boto3.session.Session().client(
            service,
            region_name=REGION,
            endpoint_url=self.url,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )

    def reset(self) -> None:
        plain_http.post(f"{self.url}/moto-api/reset").raise_for_status()
        self._queues.clear()

    def create_bus(self, name: str, pattern: dict[str, list[str]] | None = None) -> str:
        """Create the bus and a rule copying its signals (or the events ``pattern`` matches) to a
        queue; returns the bus ARN."""
        events, sqs = self.client("events"), self.client("sqs")
        arn = str(events.create_event_bus(Name=name)["EventBusArn"])
        queue_url = sqs.create_queue(QueueName=f"{name}-signals")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        events.put_rule(Name="signals", EventBusName=name, EventPattern=json.dumps(pattern or SIGNAL_PATTERN))
        events.put_targets(Rule="signals", EventBusName=name, Targets=[{"Id": "queue", "Arn": queue_arn}])
        self._queues[name] = queue_url
        return arn

    def received(self, bus: str) -> list[dict[str, Any]]:
        """The events the bus's rule delivered since the last call (each one once)."""
        sqs = self.client("sqs")
        events: list[dict[str, Any]] = []
        while True:
            answer = sqs.receive_message(QueueUrl=self._queues[bus], MaxNumberOfMessages=10)
            messages = answer.get("Messages", [])
            if not messages:
                return events
            for message in messages:
                events.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self._queues[bus], ReceiptHandle=message["ReceiptHandle"])

    def close(self) -> None:
        self._server.stop()


class KeepAliveFront:
    """An HTTP/1.1 server on 127.0.0.1 that keeps its clients' connections open between requests,
    and relays each request to ``upstream`` (``host``, ``port``) on a connection of its own.

    moto's server (werkzeug's) closes every connection after its answer, so a client of it never
    holds an idle connection; behind this front, a botocore client keeps them as it would with AWS.
    """

    # Hop-by-hop headers, and the length this front sets itself.
    _NOT_RELAYED = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})

    def __init__(self, host: str, port: int) -> None:
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, headers, content = front._forward(self.command, self.path, dict(self.headers), body)
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in KeepAliveFront._NOT_RELAYED:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _relay

            def log_message(self, *_args: object) -> None:
                pass

        self._upstream = (host, port)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        serve_in_thread(self._server)

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*self._upstream, timeout=30)
        try:
            connection.request(method, path, body=body or None, headers=headers)
            answer = connection.getresponse()
            return answer.status, answer.getheaders(), answer.read()
        finally:
            connection.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

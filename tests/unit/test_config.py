from __future__ import annotations

import pytest

from fulfill.config import DEV_JWT_SECRET, Settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "FULFILL_WEBHOOK_URLS",
        "FULFILL_EVENTBRIDGE_BUS",
        "FULFILL_EVENTBRIDGE_REGION",
        "FULFILL_DATABASE_URL",
        "FULFILL_GATEWAY_URL",
        "FULFILL_HOST",
        "FULFILL_PORT",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("database_url", "expected"),
    [
        ("sqlite:///./x.db", "sqlite:///./x.dbos.sqlite"),
        ("sqlite:///./fulfill.db", "sqlite:///./fulfill.dbos.sqlite"),
        ("sqlite:///./data", "sqlite:///./data.dbos.sqlite"),
        ("sqlite:///./data.sqlite", "sqlite:///./data.sqlite.dbos.sqlite"),
        ("sqlite:////var/lib/app/x.db", "sqlite:////var/lib/app/x.dbos.sqlite"),
        ("sqlite+pysqlite:///./x.db", "sqlite:///./x.dbos.sqlite"),
    ],
)
def test_sqlite_system_database_is_a_sibling_file(database_url: str, expected: str) -> None:
    settings = Settings(database_url=database_url)
    assert settings.is_sqlite is True
    assert settings.system_database_url == expected


@pytest.mark.parametrize(
    "database_url",
    [
        "postgresql://user:pw@db:5432/fulfill",
        "postgresql+psycopg://user:pw@db/fulfill?sslmode=require",
    ],
)
def test_postgres_system_database_is_unchanged(database_url: str) -> None:
    settings = Settings(database_url=database_url)
    assert settings.is_sqlite is False
    assert settings.system_database_url == database_url


def test_sqlite_in_memory_rejected() -> None:
    settings = Settings(database_url="sqlite:///:memory:")
    with pytest.raises(ValueError, match="in-memory"):
        _ = settings.system_database_url


def test_sqlite_bare_url_is_in_memory_and_rejected() -> None:
    settings = Settings(database_url="sqlite://")
    with pytest.raises(ValueError, match="in-memory"):
        _ = settings.system_database_url


def test_the_service_refuses_an_in_memory_database_before_opening_it() -> None:
    from fulfill.service import Service

    for url in ("sqlite://", "sqlite:///:memory:"):
        with pytest.raises(ValueError, match="in-memory SQLite database cannot be shared with DBOS"):
            Service(Settings(database_url=url))


def test_default_database() -> None:
    settings = Settings()
    assert settings.database_url == "sqlite:///./fulfill.db"
    assert settings.system_database_url == "sqlite:///./fulfill.dbos.sqlite"


def test_webhook_urls_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FULFILL_WEBHOOK_URLS", "http://a, http://b")
    assert Settings().webhook_urls == ["http://a", "http://b"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("http://a", ["http://a"]),
        (" http://a ,, http://b ,", ["http://a", "http://b"]),
        ("", []),
        (" , ", []),
    ],
)
def test_webhook_urls_env_variants(monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]) -> None:
    monkeypatch.setenv("FULFILL_WEBHOOK_URLS", raw)
    assert Settings().webhook_urls == expected


def test_webhook_urls_default_and_list() -> None:
    assert Settings().webhook_urls == []
    assert Settings(webhook_urls=["http://x"]).webhook_urls == ["http://x"]
    assert Settings(webhook_urls="http://x,http://y").webhook_urls == ["http://x", "http://y"]


def test_env_prefix_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FULFILL_DATABASE_URL", "sqlite:///./env.db")
    assert Settings().system_database_url == "sqlite:///./env.dbos.sqlite"


def test_effective_gateway_url_default() -> None:
    assert Settings().effective_gateway_url == "http://127.0.0.1:8080/mcp"


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("0.0.0.0", 9000, "http://127.0.0.1:9000/mcp"),
        ("::", 8080, "http://127.0.0.1:8080/mcp"),
        ("", 8080, "http://127.0.0.1:8080/mcp"),
        ("example.internal", 81, "http://example.internal:81/mcp"),
    ],
)
def test_effective_gateway_url_follows_host_and_port(host: str, port: int, expected: str) -> None:
    assert Settings(host=host, port=port).effective_gateway_url == expected


def test_effective_gateway_url_override() -> None:
    settings = Settings(gateway_url="http://gw:9999/mcp", host="0.0.0.0", port=1)
    assert settings.effective_gateway_url == "http://gw:9999/mcp"


def test_effective_gateway_url_override_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FULFILL_GATEWAY_URL", "http://proxy/mcp")
    assert Settings().effective_gateway_url == "http://proxy/mcp"


def test_effective_gateway_url_ipv6_host_is_bracketed() -> None:
    assert Settings(host="::1").effective_gateway_url == "http://[::1]:8080/mcp"


def test_uses_dev_secret() -> None:
    assert Settings().uses_dev_secret is True
    assert Settings(jwt_secret=DEV_JWT_SECRET).uses_dev_secret is True
    assert Settings(jwt_secret="unit-secret-0123456789abcdef0123456789").uses_dev_secret is False


def test_jwt_leeway_defaults_to_thirty_seconds_and_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().jwt_leeway_seconds == 30
    monkeypatch.setenv("FULFILL_JWT_LEEWAY_SECONDS", "0")
    assert Settings().jwt_leeway_seconds == 0
    monkeypatch.setenv("FULFILL_JWT_LEEWAY_SECONDS", "12.5")
    assert Settings().jwt_leeway_seconds == 12.5


@pytest.mark.parametrize("value", ["-1", "301", "soon"])
def test_jwt_leeway_out_of_range_is_rejected(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("FULFILL_JWT_LEEWAY_SECONDS", value)
    with pytest.raises(ValueError, match="jwt_leeway_seconds"):
        Settings()


def test_service_tokens_are_short_lived_by_default() -> None:
    assert Settings().service_token_ttl_seconds == 60


def test_signals_go_to_the_webhooks_then_the_event_bus(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().signal_destinations == []
    assert Settings(webhook_urls="http://a,http://b").signal_destinations == ["http://a", "http://b"]
    monkeypatch.setenv("FULFILL_EVENTBRIDGE_BUS", "cc-native-events")
    monkeypatch.setenv("FULFILL_WEBHOOK_URLS", "http://a")
    assert Settings().signal_destinations == ["http://a", "eventbridge:cc-native-events"]
    arn = "arn:aws:events:eu-west-1:123456789012:event-bus/cc-native-events"
    assert Settings(eventbridge_bus=arn, webhook_urls=[]).signal_destinations == [f"eventbridge:{arn}"]


@pytest.mark.parametrize(
    "bus",
    [
        "cc-native-events",
        "default",
        "a.b_c-1",
        "arn:aws:events:us-east-1:123456789012:event-bus/cc-native-events",
        "arn:aws-us-gov:events:us-gov-west-1:123456789012:event-bus/x",
    ],
)
def test_event_bus_names_and_arns_are_accepted(bus: str) -> None:
    assert Settings(eventbridge_bus=bus).eventbridge_bus == bus


@pytest.mark.parametrize(
    "bus",
    [
        "has space",
        "a/b",
        "eventbridge:x",
        "arn:aws:events:us-east-1:123:event-bus/x",
        "arn:aws:sqs:us-east-1:123456789012:queue",
        "x" * 257,
    ],
)
def test_malformed_event_bus_is_rejected(bus: str) -> None:
    with pytest.raises(ValueError, match="FULFILL_EVENTBRIDGE_BUS must be"):
        Settings(eventbridge_bus=bus)


def test_event_bus_region_settings_must_agree() -> None:
    arn = "arn:aws:events:eu-west-1:123456789012:event-bus/b"
    assert Settings(eventbridge_bus=arn, eventbridge_region="eu-west-1").eventbridge_region == "eu-west-1"
    with pytest.raises(ValueError, match="differs from the region"):
        Settings(eventbridge_bus=arn, eventbridge_region="us-east-1")
    with pytest.raises(ValueError, match="eventbridge_region"):
        Settings(eventbridge_region="US East")


def test_escalations_go_to_the_event_bus_only() -> None:
    assert Settings(webhook_urls="http://a").escalation_destinations == []
    assert Settings(webhook_urls="http://a", eventbridge_bus="approvals").escalation_destinations == [
        "eventbridge:approvals"
    ]


def test_escalation_interval_is_bounded() -> None:
    assert Settings().escalation_interval_seconds == 15.0
    for bad in (0, 3_601):
        with pytest.raises(ValueError, match="escalation_interval_seconds"):
            Settings(escalation_interval_seconds=bad)


@pytest.mark.parametrize(
    "url",
    ["fulfill.example", "ftp://fulfill.example", "https://", "https://fulfill.example/?a=1", "https://x/#f"],
)
def test_public_url_must_be_the_services_http_address(url: str) -> None:
    with pytest.raises(ValueError, match="FULFILL_PUBLIC_URL must be"):
        Settings(public_url=url)


def test_public_url_may_have_a_path() -> None:
    assert Settings(public_url="https://example.com/fulfill").public_url == "https://example.com/fulfill"
    assert Settings().public_url == ""


def test_event_bus_endpoint_must_be_http() -> None:
    assert Settings(eventbridge_endpoint_url="http://127.0.0.1:5000").eventbridge_endpoint_url
    with pytest.raises(ValueError, match="FULFILL_EVENTBRIDGE_ENDPOINT_URL"):
        Settings(eventbridge_endpoint_url="file:///etc/passwd")


def test_what_a_target_may_answer_is_four_mib_by_default_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().gateway_max_response_bytes == 4 * 1024 * 1024
    monkeypatch.setenv("FULFILL_GATEWAY_MAX_RESPONSE_BYTES", "1048576")
    assert Settings().gateway_max_response_bytes == 1024 * 1024
    for refused in ("1024", str(512 * 1024 * 1024)):
        monkeypatch.setenv("FULFILL_GATEWAY_MAX_RESPONSE_BYTES", refused)
        with pytest.raises(ValueError, match="gateway_max_response_bytes"):
            Settings()


@pytest.mark.parametrize(
    ("settings", "exposed"),
    [
        ({}, False),  # the default listener is loopback
        ({"host": "0.0.0.0"}, True),
        ({"host": "0.0.0.0", "metrics_token": "t" * 16}, False),
        ({"host": "0.0.0.0", "metrics_port": 9464}, False),
        ({"metrics_port": 9464, "metrics_host": "10.0.0.5"}, True),
    ],
)
def test_metrics_open_beyond_loopback_is_detected(settings: dict[str, object], exposed: bool) -> None:
    assert Settings(**settings).metrics_unprotected_beyond_loopback is exposed  # type: ignore[arg-type]


def test_the_metrics_token_is_redacted_from_logs() -> None:
    assert "m" * 20 in Settings(metrics_token="m" * 20).log_secrets  # type: ignore[arg-type]


def test_every_missing_production_setting_is_named_at_once() -> None:
    with pytest.raises(ValueError, match="FULFILL_AUTH_MODE=production requires") as refused:
        Settings(auth_mode="production", jwks_url="", jwt_issuer="fulfill-dev", service_token_secret="short")
    message = str(refused.value)
    for name in ("FULFILL_JWKS_URL", "FULFILL_JWT_ISSUER", "FULFILL_SERVICE_TOKEN_SECRET"):
        assert name in message, message


def test_an_unknown_fulfill_variable_is_named_with_the_closest_setting() -> None:
    from fulfill.config import unknown_variables

    warnings = unknown_variables(
        {
            "FULFILL_DATABSE_URL": "sqlite:///./x.db",
            "FULFILL_DATABASE_URL": "sqlite:///./x.db",  # known: no warning
            "FULFILL_URL": "http://127.0.0.1:8080",  # read by the command line
            "FULFILL_TEST_CHROMIUM": "/usr/bin/chromium",  # the test suite's own
            "FULFILL_NOTHING_LIKE_IT_AT_ALL": "1",
            "PATH": "/usr/bin",
        }
    )
    assert warnings == [
        "FULFILL_DATABSE_URL is not a fulfill setting and is ignored: did you mean FULFILL_DATABASE_URL?",
        "FULFILL_NOTHING_LIKE_IT_AT_ALL is not a fulfill setting and is ignored (README: Configuration)",
    ]


@pytest.mark.parametrize(
    ("settings", "cut"),
    [
        ({}, False),  # 15 s of grace, 10 s per gateway call
        ({"gateway_call_timeout_seconds": 15.0}, True),
        ({"gateway_call_timeout_seconds": 60.0, "shutdown_grace_seconds": 61}, False),
        ({"gateway_call_timeout_seconds": 60.0, "role": "worker"}, False),  # serves no gateway
        ({"shutdown_grace_seconds": 5, "role": "api"}, True),
    ],
)
def test_a_grace_that_can_cut_a_gateway_call_is_detected(settings: dict[str, object], cut: bool) -> None:
    assert Settings(**settings).stop_may_cut_gateway_calls is cut  # type: ignore[arg-type]

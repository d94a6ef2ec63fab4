"""Which login URLs a tenant's credential may name (domain/tenant_urls.py)."""

from __future__ import annotations

import pytest

from fulfill.config import Settings
from fulfill.domain.tenant_urls import DEFAULT_LOGIN_HOSTS, LoginUrlPolicy, TenantUrlRefused

DEFAULT = LoginUrlPolicy.parse(DEFAULT_LOGIN_HOSTS)


@pytest.mark.parametrize(
    "url",
    [
        "https://login.salesforce.com",
        "https://test.salesforce.com/",
        "https://acme.my.salesforce.com",
        "https://acme--uat.sandbox.my.salesforce.com",
        "https://LOGIN.salesforce.com:443",
    ],
)
def test_the_provider_s_hosts_are_allowed_by_default(url: str) -> None:
    assert DEFAULT.check_login_url(url) == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    [
        "https://my.salesforce.com.evil.example",
        "https://evilmy.salesforce.com",
        "https://salesforce.com",
        "https://login.salesforce.com:8443",
        "https://login.salesforce.com/services/oauth2/token",
        "https://login.salesforce.com?x=1",
        "https://user:pw@login.salesforce.com",
        "http://login.salesforce.com",
        "http://127.0.0.1:8900",
        "https://127.0.0.1",
        "ftp://login.salesforce.com",
        "https://",
    ],
)
def test_anything_else_is_refused(url: str) -> None:
    with pytest.raises(TenantUrlRefused):
        DEFAULT.check_login_url(url)


def test_named_loopback_hosts_may_be_reached_over_http_on_any_port() -> None:
    policy = LoginUrlPolicy.parse(DEFAULT_LOGIN_HOSTS, ["127.0.0.1", "localhost", "[::1]"])
    for url in ("http://127.0.0.1:8900", "http://localhost:1", "http://[::1]:8900/"):
        assert policy.check_login_url(url) == url.rstrip("/")
    with pytest.raises(TenantUrlRefused):
        policy.check_login_url("http://127.0.0.2:8900")  # loopback, but not named


@pytest.mark.parametrize("entry", ["10.0.0.5", "tickets.internal", "0.0.0.0", "169.254.169.254"])
def test_only_loopback_hosts_can_be_named_for_http(entry: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        LoginUrlPolicy.parse(DEFAULT_LOGIN_HOSTS, [entry])
    with pytest.raises(ValueError, match="FULFILL_SALESFORCE_LOGIN"):
        Settings(salesforce_login_http_hosts=[entry])


def test_the_settings_read_comma_separated_lists() -> None:
    settings = Settings(salesforce_login_hosts="login.salesforce.com, *.my.salesforce.mil")  # type: ignore[arg-type]
    assert settings.salesforce_login_policy.check_login_url("https://x.my.salesforce.mil")
    with pytest.raises(TenantUrlRefused, match=r"login\.salesforce\.com, \*\.my\.salesforce\.mil"):
        settings.salesforce_login_policy.check_login_url("https://test.salesforce.com")

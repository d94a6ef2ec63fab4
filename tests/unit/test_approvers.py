"""Who may decide on a proposal (domain/approvers.py), and how a token is known as an agent's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from pydantic import ValidationError

from fulfill.config import Settings
from fulfill.domain.approvers import (
    AGENT_CANNOT_APPROVE,
    SELF_APPROVAL,
    AgentMarker,
    AgentMarkers,
    Allowed,
    Decision,
    Refused,
    decide,
)
from fulfill.tokens import TokenVerifier, mint_token

SECRET = "unit-test-secret-0123456789abcdef0123"


@dataclass(frozen=True)
class Caller:
    subject: str
    is_agent: bool = False


@pytest.mark.parametrize("decision", list(Decision))
def test_a_person_decides_on_someone_elses_proposal(decision: Decision) -> None:
    assert decide(Caller("grace"), decision, proposed_by="ada") == Allowed()


@pytest.mark.parametrize("decision", list(Decision))
@pytest.mark.parametrize("proposed_by", ["ada", "agent-7", None])
def test_an_agent_never_decides(decision: Decision, proposed_by: str | None) -> None:
    verdict = decide(Caller("agent-7", is_agent=True), decision, proposed_by=proposed_by)
    assert isinstance(verdict, Refused)
    assert verdict.code == AGENT_CANNOT_APPROVE
    assert decision.value in verdict.message
    assert not verdict.allowed


def test_nobody_approves_their_own_proposal() -> None:
    verdict = decide(Caller("ada"), Decision.APPROVE, proposed_by="ada")
    assert isinstance(verdict, Refused)
    assert verdict.code == SELF_APPROVAL
    assert "'ada' proposed this intent" in verdict.message


def test_a_proposer_may_reject_their_own_proposal() -> None:
    assert decide(Caller("ada"), Decision.REJECT, proposed_by="ada").allowed


def test_without_a_recorded_proposer_only_the_agent_rule_applies() -> None:
    assert decide(Caller("ada"), Decision.APPROVE, proposed_by=None).allowed
    assert not decide(Caller("ada", is_agent=True), Decision.APPROVE, proposed_by=None).allowed


def test_the_subject_must_match_exactly() -> None:
    assert decide(Caller("Ada"), Decision.APPROVE, proposed_by="ada").allowed


@pytest.mark.parametrize(
    ("claims", "agent"),
    [
        ({"act": {"sub": "agent-7"}}, True),
        ({"act": "agent-7"}, True),  # malformed, still a marker: the rule fails safe
        ({"act": None}, False),
        ({"act": {}}, False),
        ({}, False),
        ({"sub": "ada"}, False),
    ],
)
def test_the_rfc_8693_actor_claim_marks_an_agent_by_default(claims: dict[str, Any], agent: bool) -> None:
    assert AgentMarkers().is_agent(claims) is agent


@pytest.mark.parametrize(
    ("claims", "agent"),
    [
        ({"token_use": "agent"}, True),
        ({"token_use": "access"}, False),
        ({"groups": ["staff", "agents"]}, True),
        ({"groups": ["staff"]}, False),
        ({"bot": True}, True),
        ({"bot": False}, False),
        ({"bot": ""}, False),
        ({"act": {"sub": "x"}}, True),  # configured markers add to act, never replace it
        ({}, False),
    ],
)
def test_configured_markers(claims: dict[str, Any], agent: bool) -> None:
    markers = AgentMarkers.parse(["token_use=agent", "groups=agents", " bot ", ""])
    assert markers.is_agent(claims) is agent


@pytest.mark.parametrize("spelled", ["=agent", "token_use=", " = "])
def test_a_malformed_marker_is_refused(spelled: str) -> None:
    with pytest.raises(ValueError, match="claim=value"):
        AgentMarker.parse(spelled)


def test_the_setting_is_comma_separated_and_checked() -> None:
    settings = Settings(jwt_secret=SECRET, agent_token_claims="token_use=agent, bot")  # type: ignore[arg-type]
    assert settings.agent_token_claims == ["token_use=agent", "bot"]
    with pytest.raises(ValidationError, match="FULFILL_AGENT_TOKEN_CLAIMS"):
        Settings(jwt_secret=SECRET, agent_token_claims="token_use=")  # type: ignore[arg-type]


def _signed(settings: Settings, **extra: Any) -> str:
    token = mint_token(settings, tenant_id="t1", scopes=["intents:approve"], subject="ada")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience=settings.jwt_audience)
    return jwt.encode({**claims, **extra}, SECRET, algorithm="HS256")


def test_the_verifier_marks_agents_with_act_and_the_configured_claims() -> None:
    plain = Settings(jwt_secret=SECRET)
    configured = Settings(jwt_secret=SECRET, agent_token_claims=["token_use=agent"])
    assert not TokenVerifier(plain).verify(_signed(plain)).is_agent
    assert TokenVerifier(plain).verify(_signed(plain, act={"sub": "agent-7"})).is_agent
    assert not TokenVerifier(plain).verify(_signed(plain, token_use="agent")).is_agent
    assert TokenVerifier(configured).verify(_signed(configured, token_use="agent")).is_agent
    assert TokenVerifier(configured).verify(_signed(configured, act={"sub": "agent-7"})).is_agent


def test_a_minted_agent_token_carries_the_actor_claim() -> None:
    settings = Settings(jwt_secret=SECRET)
    token = mint_token(settings, tenant_id="t1", scopes=[], subject="ada", actor="agent-7")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience=settings.jwt_audience)
    assert (claims["sub"], claims["act"]) == ("ada", {"sub": "agent-7"})
    principal = TokenVerifier(settings).verify(token)
    assert (principal.subject, principal.is_agent) == ("ada", True)
    assert "act" not in jwt.decode(
        mint_token(settings, tenant_id="t1", scopes=[]), SECRET, algorithms=["HS256"], audience="fulfill"
    )

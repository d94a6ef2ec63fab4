"""Who may decide on a proposal: a person, and never the one who proposed it.

An agent proposes; a person decides. A token is an agent's when it carries an RFC 8693 ``act``
claim (the token acts for its ``sub``) or one of the markers the deployment adds
(``FULFILL_AGENT_TOKEN_CLAIMS``). An agent's token may hold ``intents:approve`` (so that it can
list what waits, or cancel its own proposals) and still never approves or rejects anything:
otherwise an agent, or a prompt injected into one, could approve its own actions.

Nobody approves a proposal made with their own subject (four eyes): the subject that proposed an
intent is stored with it (``proposed_by``), and the same subject's approval is refused. Rejecting
one's own proposal stays allowed: it withdraws the proposal and executes nothing. Intents stored
before the proposer was recorded have no ``proposed_by``; only the agent rule applies to them.

The rule is pure: :func:`decide` answers :class:`Allowed` or :class:`Refused` with a stable code;
the approval use case turns a refusal into a 403.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

# RFC 8693 §4.1: the actor claim. A token carrying it is used by an actor on behalf of its subject.
ACTOR_CLAIM = "act"

AGENT_CANNOT_APPROVE = "AGENT_CANNOT_APPROVE"
SELF_APPROVAL = "SELF_APPROVAL"


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class Decider(Protocol):
    """The caller deciding: its token's subject, and whether the token is an agent's."""

    @property
    def subject(self) -> str: ...

    @property
    def is_agent(self) -> bool: ...


@dataclass(frozen=True)
class Allowed:
    allowed: bool = True


@dataclass(frozen=True)
class Refused:
    code: str
    message: str
    allowed: bool = False


def decide(decider: Decider, decision: Decision, *, proposed_by: str | None) -> Allowed | Refused:
    """May ``decider`` approve (or reject) a proposal made by ``proposed_by``?"""
    if decider.is_agent:
        return Refused(
            AGENT_CANNOT_APPROVE,
            f"an agent's token cannot {decision.value} intents: a person decides what an agent "
            "proposed (the token carries an agent marker, e.g. an 'act' claim)",
        )
    if decision is Decision.APPROVE and proposed_by is not None and proposed_by == decider.subject:
        return Refused(
            SELF_APPROVAL,
            f"'{decider.subject}' proposed this intent and cannot approve it too: another person approves it",
        )
    return Allowed()


@dataclass(frozen=True)
class AgentMarker:
    """One claim that marks an agent's token: ``claim`` present with a value (not null, false or
    empty), or, with ``value``, equal to it (a string claim) or containing it (a list claim)."""

    claim: str
    value: str | None = None

    @classmethod
    def parse(cls, spelled: str) -> AgentMarker:
        claim, separator, value = spelled.strip().partition("=")
        claim, value = claim.strip(), value.strip()
        if not claim or (separator and not value):
            raise ValueError(f"{spelled!r} is not 'claim' or 'claim=value'")
        return cls(claim, value if separator else None)

    def marks(self, claims: Mapping[str, Any]) -> bool:
        found = claims.get(self.claim)
        if self.value is None:
            return found not in (None, False, "", [], {})
        if isinstance(found, list):
            return self.value in found
        return found == self.value


@dataclass(frozen=True)
class AgentMarkers:
    """Every marker of an agent's token: the ``act`` claim always, and the configured ones."""

    markers: tuple[AgentMarker, ...] = (AgentMarker(ACTOR_CLAIM),)

    @classmethod
    def parse(cls, spelled: Iterable[str]) -> AgentMarkers:
        configured = tuple(AgentMarker.parse(item) for item in spelled if item.strip())
        return cls((AgentMarker(ACTOR_CLAIM), *(m for m in configured if m != AgentMarker(ACTOR_CLAIM))))

    def is_agent(self, claims: Mapping[str, Any]) -> bool:
        return any(marker.marks(claims) for marker in self.markers)

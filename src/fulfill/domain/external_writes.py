"""External writes: the states of a connector's reservation of an idempotency key.

A connector reserves the key (``PENDING``, with a lease naming its owner) *before* it writes to the
external system and commits it (``COMMITTED``, with the written object) afterwards; see
``store/external_writes.py`` for the transitions and ``connectors/salesforce/reservations.py`` for
the protocol built on them. The stored record is ``domain/records.py``'s ``ExternalWrite``.
"""

from __future__ import annotations

from enum import StrEnum


class WriteStatus(StrEnum):
    PENDING = "PENDING"  # reserved; the write may be under way, or its result unknown
    COMMITTED = "COMMITTED"  # written; the object is recorded


class ReservationKind(StrEnum):
    """What a reservation found when it was made."""

    FRESH = "fresh"  # nobody had the key: this call writes
    TAKEN_OVER = "taken_over"  # a lease ran out: an earlier write may have happened, look first
    COMMITTED = "committed"  # the write happened: return it, write nothing
    BUSY = "busy"  # another call holds a live lease right now


class Written(StrEnum):
    """Whether a failed call may have written."""

    NO = "no"  # certainly not: the reservation may be dropped
    UNKNOWN = "unknown"  # it may have: the next call looks before it writes

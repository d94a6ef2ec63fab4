from __future__ import annotations

import re

import pytest

from fulfill.domain.time import epoch_from_iso, iso_from_epoch

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1_767_323_045.678, "2026-01-02T03:04:05.678Z"),
        (1_767_323_045, "2026-01-02T03:04:05.000Z"),
        (1_767_323_045.0009, "2026-01-02T03:04:05.000Z"),  # milliseconds are truncated, not rounded
        (1_767_323_045.9999, "2026-01-02T03:04:05.999Z"),
        (951_782_400, "2000-02-29T00:00:00.000Z"),
    ],
)
def test_iso_from_epoch(epoch: float, expected: str) -> None:
    result = iso_from_epoch(epoch)
    assert result == expected
    assert ISO.match(result)


@pytest.mark.parametrize(
    ("iso", "expected"),
    [
        ("2026-01-02T03:04:05.678Z", 1_767_323_045.678),
        ("2026-01-02T03:04:05Z", 1_767_323_045.0),
        ("2026-01-02T03:04:05.678", 1_767_323_045.678),  # naive is UTC
        ("2026-01-02T03:04:05", 1_767_323_045.0),
        ("2026-01-02T03:04:05.678+00:00", 1_767_323_045.678),
        ("2026-01-02T05:04:05.678+02:00", 1_767_323_045.678),
        ("2026-01-01T22:04:05.678-05:00", 1_767_323_045.678),
        ("1970-01-01T00:00:00.000Z", 0.0),
    ],
)
def test_epoch_from_iso(iso: str, expected: float) -> None:
    assert epoch_from_iso(iso) == pytest.approx(expected, abs=1e-6)


def test_offset_changes_epoch() -> None:
    assert epoch_from_iso("2026-01-02T03:04:05+01:00") == epoch_from_iso("2026-01-02T03:04:05Z") - 3600


@pytest.mark.parametrize("millis", [0, 1, 7, 99, 123, 500, 678, 999])
def test_round_trip(millis: int) -> None:
    iso = f"2026-01-02T03:04:05.{millis:03d}Z"
    assert iso_from_epoch(epoch_from_iso(iso)) == iso


def test_round_trip_many_milliseconds() -> None:
    for step in range(0, 200_000, 37):
        epoch = 1_767_323_045 + step / 1000
        iso = iso_from_epoch(epoch)
        assert iso.endswith(f".{step % 1000:03d}Z"), (epoch, iso)
        assert iso_from_epoch(epoch_from_iso(iso)) == iso


def test_invalid_iso_raises() -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - datetime's own message
        epoch_from_iso("not a date")

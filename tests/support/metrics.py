"""Reading ``/metrics`` as a scraper does: prometheus_client's own parser, samples by name and
labels."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample of ``{url}/metrics`` (which must answer 200)."""
    response = httpx.get(f"{url}/metrics", timeout=10.0)
    assert response.status_code == 200, response.status_code
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 when the series does not exist (a counter never incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def has(samples: Samples, name: str) -> bool:
    return any(sample_name == name for sample_name, _ in samples)


def label_values(samples: Samples) -> set[str]:
    return {label_value for _, labels in samples for _, label_value in labels}


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)

"""Reading Prometheus scrapes in tests."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(scrape: str, name: str, **labels: str) -> list[float]:
    """Values of every sample called ``name`` whose labels include ``labels``."""
    return [
        sample.value
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    ]


def total(scrape: str, name: str, **labels: str) -> float:
    return sum(samples(scrape, name, **labels))

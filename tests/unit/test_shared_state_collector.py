"""The store-gauge collector on its own: its cache, a failing source, no source."""

from __future__ import annotations

from fulfill.metrics import SharedState, SharedStateCollector


def _names(collector: SharedStateCollector) -> list[str]:
    return [family.name for family in collector.collect()]


def _errors(collector: SharedStateCollector) -> float:
    [family] = [family for family in collector.collect() if family.name == "fulfill_metrics_store_errors"]
    return float(family.samples[0].value)


def test_reads_within_the_cache_period_share_one_read() -> None:
    reads: list[int] = []

    def source() -> SharedState:
        reads.append(1)
        return SharedState(global_stop=True)

    collector = SharedStateCollector()
    collector.set_source(source, cache_seconds=60)
    assert "fulfill_kill_switch_global_stop" in _names(collector)
    assert "fulfill_attempts_past_budget" in _names(collector)
    assert len(reads) == 1
    collector.set_source(source, cache_seconds=0)  # a new source (or period) drops the cache
    _names(collector)
    _names(collector)
    assert len(reads) == 3


def test_a_failing_source_leaves_the_gauges_out_counts_an_error_and_is_not_cached() -> None:
    answers: list[SharedState | Exception] = [RuntimeError("down"), SharedState()]

    def source() -> SharedState:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    collector = SharedStateCollector()
    collector.set_source(source, cache_seconds=60)
    assert _names(collector) == ["fulfill_metrics_store_errors"]
    assert "fulfill_attempts_past_budget" in _names(collector)  # read again, not the failure cached
    assert _errors(collector) == 1


def test_without_a_source_only_the_error_counter_is_reported() -> None:
    collector = SharedStateCollector()
    assert _names(collector) == ["fulfill_metrics_store_errors"]

    def source() -> SharedState:
        return SharedState()

    collector.set_source(source)
    collector.clear_source(lambda: SharedState())  # another service's source: left alone
    assert "fulfill_outbox_backlog" in _names(collector)
    collector.clear_source(source)
    assert _names(collector) == ["fulfill_metrics_store_errors"]


def test_tenant_families_exist_only_when_read() -> None:
    collector = SharedStateCollector()
    collector.set_source(lambda: SharedState())
    assert not any(name.startswith("fulfill_tenant_") for name in _names(collector))
    collector.set_source(
        lambda: SharedState(tenant_attempts_past_budget={("acme", "QUEUED"): 2}, stopped_tenants=["acme"])
    )
    names = _names(collector)
    assert "fulfill_tenant_attempts_past_budget" in names
    assert "fulfill_tenant_execution_stopped" in names


def _ambiguous(collector: SharedStateCollector) -> dict[str, float]:
    [family] = [family for family in collector.collect() if family.name == "fulfill_ambiguous_executions"]
    return {sample.labels["age"]: sample.value for sample in family.samples}


def test_ambiguous_executions_are_reported_by_age_and_at_zero_when_there_are_none() -> None:
    states = [SharedState(), SharedState(ambiguous_by_age={"under_1h": 2, "over_24h": 1})]
    collector = SharedStateCollector()
    collector.set_source(lambda: states.pop(0), cache_seconds=0)
    assert _ambiguous(collector) == {"under_1h": 0, "1h_to_24h": 0, "over_24h": 0}
    assert _ambiguous(collector) == {"under_1h": 2, "1h_to_24h": 0, "over_24h": 1}


def _gauge(collector: SharedStateCollector, name: str) -> float:
    [family] = [family for family in collector.collect() if family.name == name]
    return float(family.samples[0].value)


def test_the_oldest_ambiguous_age_and_the_alert_threshold_are_gauges() -> None:
    states = [
        SharedState(),
        SharedState(ambiguous_oldest_age_seconds=4000.0, ambiguous_alert_threshold_seconds=600.0),
    ]
    collector = SharedStateCollector()
    collector.set_source(lambda: states[0], cache_seconds=0)
    assert _gauge(collector, "fulfill_ambiguous_oldest_age_seconds") == 0
    assert _gauge(collector, "fulfill_ambiguous_alert_threshold_seconds") == 3600
    states.pop(0)
    assert _gauge(collector, "fulfill_ambiguous_oldest_age_seconds") == 4000
    assert _gauge(collector, "fulfill_ambiguous_alert_threshold_seconds") == 600

"""Each case runs its seeds on its own random streams (harness.suites.seeds.seed_stream)."""

from __future__ import annotations

import json

from harness.suites import case_stream, unlearning
from harness.suites.seeds import seed_stream


def test_streams_are_per_case_and_stable() -> None:
    streams = {(case, i): seed_stream("losses", case, i) for case in ("a", "b") for i in range(3)}
    assert len(set(streams.values())) == 6  # no two (case, index) pairs share a stream
    assert seed_stream("losses", "a", 0) == streams[("a", 0)] == 1807527010  # stable across versions and machines
    assert all(0 <= s < 2**31 for s in streams.values())


def test_a_record_lists_the_streams_its_seeds_ran_with(made) -> None:
    record = json.loads(next(made.rglob("*.json")).read_text())
    assert record["run"]["seed_streams"] == [seed_stream(record["suite"], record["case"], i) for i in record["seeds"]]


def test_unlearning_cases_of_one_pool_share_streams_and_others_do_not() -> None:
    specs = {s.case: s for s in unlearning.case_specs("smoke")}
    by_pool: dict[str, set[int]] = {}
    for spec in specs.values():
        by_pool.setdefault(unlearning.pool_fingerprint(spec), set()).add(case_stream(spec, 0))
    assert all(len(streams) == 1 for streams in by_pool.values())  # one original model per pool and seed
    assert len(set().union(*by_pool.values())) == len(by_pool) > 1

"""Speed of the open-set metrics on 1,000,000 scores against ``sklearn.metrics.roc_auc_score`` on the same data.

Run explicitly: ``pytest benchmarks/bench_metrics.py`` (add ``-s`` to see the printed ratios). Each group holds
one of our metrics and the sklearn reference, so pytest-benchmark's table shows the relative times; each of our
benchmarks also stores ``ratio_vs_sklearn_roc_auc`` (our median / sklearn median, below 1 = faster) in
``extra_info`` and prints it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from harness.metrics.openset import auroc, fpr_at_95_tpr, oscr

N = 1_000_000


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    is_known = rng.random(N) < 0.5
    scores = rng.normal(size=N) + 0.5 * is_known
    scores = np.round(scores, 3)  # realistic ties (float32 softmax scores repeat often)
    known, unknown = scores[is_known], scores[~is_known]
    return {
        "known": known,
        "unknown": unknown,
        "correct": rng.random(known.size) < 0.8,
        "y": is_known.astype(np.int64),
        "scores": scores,
    }


def _sklearn_median(data: dict[str, np.ndarray], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        roc_auc_score(data["y"], data["scores"])
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _report(benchmark, data: dict[str, np.ndarray], name: str) -> None:
    ref = _sklearn_median(data)
    ratio = benchmark.stats.stats.median / ref
    benchmark.extra_info["sklearn_roc_auc_median_s"] = ref
    benchmark.extra_info["ratio_vs_sklearn_roc_auc"] = ratio
    print(
        f"\n{name}: {benchmark.stats.stats.median * 1e3:.1f} ms, sklearn roc_auc_score {ref * 1e3:.1f} ms, "
        f"ratio {ratio:.2f}"
    )


def _run(benchmark, fn: Callable[[], float]) -> float:
    return benchmark.pedantic(fn, rounds=7, iterations=1, warmup_rounds=1)


@pytest.mark.benchmark(group="auroc-1M")
def test_auroc(benchmark, data) -> None:
    value = _run(benchmark, lambda: auroc(data["known"], data["unknown"]))
    assert value == pytest.approx(roc_auc_score(data["y"], data["scores"]), abs=1e-12)
    _report(benchmark, data, "auroc")


@pytest.mark.benchmark(group="auroc-1M")
def test_sklearn_roc_auc_auroc_group(benchmark, data) -> None:
    _run(benchmark, lambda: roc_auc_score(data["y"], data["scores"]))


@pytest.mark.benchmark(group="fpr95-1M")
def test_fpr_at_95_tpr(benchmark, data) -> None:
    value = _run(benchmark, lambda: fpr_at_95_tpr(data["known"], data["unknown"]))
    assert 0.0 < value < 1.0
    _report(benchmark, data, "fpr_at_95_tpr")


@pytest.mark.benchmark(group="fpr95-1M")
def test_sklearn_roc_auc_fpr95_group(benchmark, data) -> None:
    _run(benchmark, lambda: roc_auc_score(data["y"], data["scores"]))


@pytest.mark.benchmark(group="oscr-1M")
def test_oscr(benchmark, data) -> None:
    value = _run(benchmark, lambda: oscr(data["known"], data["unknown"], data["correct"]))
    assert 0.0 < value < 1.0
    _report(benchmark, data, "oscr")


@pytest.mark.benchmark(group="oscr-1M")
def test_sklearn_roc_auc_oscr_group(benchmark, data) -> None:
    _run(benchmark, lambda: roc_auc_score(data["y"], data["scores"]))

"""Cost per batch of each augmentation policy, on a 64 x 3 x 32 x 32 and a 64 x 3 x 96 x 96 batch on the CPU.

Run explicitly: ``pytest benchmarks/bench_augment.py`` (add ``-s`` to see the printed figures). Each image size is
one pytest-benchmark group holding every policy, ``none`` included as the floor (the call's checks, no op). Each
policy stores ``ms_over_none`` (its median minus ``none``'s median: what the policy adds to a training step) in
``extra_info`` and prints it. Torch runs on one thread here: on a shared machine, two OpenMP threads per process
made the medians swing by 10-50x with the load, and one thread measures the ops themselves.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import torch

from harness.core.augment import get_policy, policy_names

BATCH = 64


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _median_s(fn, repeats: int = 50) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


@pytest.mark.parametrize("side", [32, 96])
@pytest.mark.parametrize("name", policy_names())
def test_policy(benchmark: Any, name: str, side: int) -> None:
    benchmark.group = f"augment {BATCH}x3x{side}x{side} cpu"
    x = torch.rand(BATCH, 3, side, side, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    policy = get_policy(name, (side, side))
    y = benchmark.pedantic(policy, args=(x, gen), rounds=15, iterations=1, warmup_rounds=2)
    assert y.shape == x.shape

    none = get_policy("none", (side, side))
    floor = _median_s(lambda: none(x, gen))
    over = (benchmark.stats.stats.median - floor) * 1e3
    benchmark.extra_info["ms_over_none"] = over
    print(f"\n{name} {side}px: {benchmark.stats.stats.median * 1e3:.2f} ms per batch, {over:.2f} ms over none")

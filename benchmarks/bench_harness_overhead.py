"""Harness loop overhead against a plain hand-written PyTorch loop.

Same model initialisation, stored data, batches and optimiser; the only
difference is the harness's hot loop (:func:`harness.protocols.kit.train_epoch`:
gather through the data source, Batch assembly, method dispatch through the
step engine, step timer, NaN/Inf check). Before timing, one epoch of each loop
from the same weights must give the same weights (equal work, backward included).
The plain loop does the same data preparation in plain torch (``uint8 / 255``, normalisation).

Resolving a 2% target takes more than single epochs (7-10 steps, 20-90 ms,
whose ratio spread 0.95-1.05 between runs). Here each round times a *block*
of epochs lasting at least ``BLOCK_S`` seconds for each loop, the two loops
alternating which goes first, with the garbage collector off inside blocks.
The overhead is the median of the per-round ratios (harness block / plain
block), and rounds are added until the 95% bootstrap interval of that median
is within ``RESOLVE`` (±0.5%, so repeated runs agree within 1%) or
``MAX_S`` seconds pass. Target: overhead at most ``TARGET`` = 1.02.

Blocks are timed in CPU time of this process (``time.process_time``) as well
as wall time. The ratio is taken on CPU time: on a shared machine wall time
mostly measures the scheduler (other processes preempting this one), while
CPU time is what the loop itself costs. The wall-time ratio is reported too;
on a quiet machine the two agree.

Run: ``OMP_NUM_THREADS=1 pytest benchmarks/bench_harness_overhead.py -s`` on a quiet machine.
"""

from __future__ import annotations

import copy
import gc
import math
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.core.registry import create_method
from harness.core.timing import StepTimer
from harness.protocols.kit import RunContext, batch_indices, make_optimizer, train_epoch
from harness.suites import losses, shift

CPU = torch.device("cpu")
TARGET = 1.02
BLOCK_S = 0.5  # seconds of epochs per loop per round
RESOLVE = 0.005  # stop when the median's 95% interval is within ±0.5%
MIN_ROUNDS, MAX_S = 12, 120.0


def median_interval(ratios: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of the median."""
    rng = np.random.default_rng(seed)
    meds = np.median(rng.choice(ratios, size=(n_boot, len(ratios)), replace=True), axis=1)
    return float(np.percentile(meds, 2.5)), float(np.percentile(meds, 97.5))


def plain_epoch(model, optimizer, x, y, batches, binary, normalizer):
    model.train()
    for idx in batches:
        xb = x[idx].float().div_(255.0) if x.dtype == torch.uint8 else x[idx]
        if normalizer is not None:
            xb = normalizer(xb)
        yb = y[idx]
        optimizer.zero_grad(set_to_none=True)
        out = model(xb)
        loss = F.binary_cross_entropy_with_logits(out, yb.float()) if binary else F.cross_entropy(out, yb)
        loss.backward()
        optimizer.step()


@pytest.mark.parametrize("suite,case", [(losses, "mnist3v5-noise0"), (shift, "digits_embedded-digits")],
                         ids=["mlp-binary-mnist", "cnn-10class-digits"])
def test_harness_loop_overhead(benchmark, suite, case):
    spec = next(s for s in suite.case_specs("smoke") if s.case == case)
    task = spec.build(spec)
    task.balanced_domains = False  # the plain loop draws uniform batches; compare like with like
    method = create_method("erm")
    ctx = RunContext.create(task, method, CPU, seed=0, data_path="memory")
    torch.manual_seed(0)
    model_h = task.model_factory()
    model_p = copy.deepcopy(model_h)
    opt_h, opt_p = make_optimizer(model_h, ctx.budget), make_optimizer(model_p, ctx.budget)
    train = task.splits["train"].indices
    state = ctx.make_state(-(-len(train) // ctx.budget.batch_size))
    method.setup(task.sealed(), state)
    engine_h = ctx.engine(opt_h, state)  # the engine the protocols step through: forward, backward, update
    x, y, binary = ctx.source.x, ctx.source.y, task.num_classes == 2

    def epochs(seed: int, n: int) -> list[list[torch.Tensor]]:
        gen = torch.Generator().manual_seed(seed)
        return [list(batch_indices(train, ctx.budget.batch_size, gen)) for _ in range(n)]

    # equal work: one epoch of each loop from the same weights on the same batches gives the same weights
    # (an earlier version passed the optimizer where train_epoch takes the engine and ran no backward pass)
    check_h, check_p = copy.deepcopy(model_h), copy.deepcopy(model_p)
    batches = epochs(99, 1)[0]
    train_epoch(ctx, method, check_h, ctx.engine(make_optimizer(check_h, ctx.budget), state), state, batches,
                timer=StepTimer(CPU))
    plain_epoch(check_p, make_optimizer(check_p, ctx.budget), x, y, batches, binary, ctx.source.normalizer)
    for a, b in zip(check_h.parameters(), check_p.parameters()):
        assert torch.allclose(a, b, atol=1e-5), "the two loops do different work"
    assert any(not torch.equal(a, b) for a, b in zip(check_h.parameters(), model_h.parameters())), "no update"

    def run(name: str, block: list[list[torch.Tensor]]) -> tuple[float, float]:
        """(CPU seconds, wall seconds) of one block."""
        gc.collect()
        gc.disable()
        try:
            c0, t0 = time.process_time(), time.perf_counter()
            for batches in block:
                if name == "harness":
                    train_epoch(ctx, method, model_h, engine_h, state, batches, timer=StepTimer(CPU))
                else:
                    plain_epoch(model_p, opt_p, x, y, batches, binary, ctx.source.normalizer)
            return time.process_time() - c0, time.perf_counter() - t0
        finally:
            gc.enable()

    run("harness", epochs(0, 2)), run("plain", epochs(0, 2))  # warm-up
    per_epoch = run("plain", epochs(1, 3))[0] / 3
    n_epochs = max(1, math.ceil(BLOCK_S / per_epoch))
    times: dict[str, list[tuple[float, float]]] = {"harness": [], "plain": []}
    ratios: list[float] = []
    wall_ratios: list[float] = []
    start, low, high = time.perf_counter(), 0.0, math.inf
    while True:
        r = len(ratios)
        block = epochs(100 + r, n_epochs)
        for name in (("harness", "plain") if r % 2 == 0 else ("plain", "harness")):
            times[name].append(run(name, block))
        ratios.append(times["harness"][-1][0] / times["plain"][-1][0])
        wall_ratios.append(times["harness"][-1][1] / times["plain"][-1][1])
        if len(ratios) >= MIN_ROUNDS:
            ratio = float(np.median(ratios))
            low, high = median_interval(np.array(ratios))
            if high - low <= 2 * RESOLVE * ratio or time.perf_counter() - start > MAX_S:
                break
    resolved = high - low <= 2 * RESOLVE * ratio
    steps = sum(len(b) for b in block)
    wall_ratio = float(np.median(wall_ratios))
    benchmark.extra_info.update({
        "overhead_ratio": ratio, "ratio_ci95": [low, high], "resolved": resolved, "rounds": len(ratios),
        "wall_overhead_ratio": wall_ratio, "epochs_per_block": n_epochs, "steps_per_block": steps, "target": TARGET,
        "plain_step_cpu_s": float(np.median([t[0] for t in times["plain"]])) / steps,
        "harness_step_cpu_s": float(np.median([t[0] for t in times["harness"]])) / steps,
    })
    print(f"\n{case}: harness/plain CPU time = {ratio:.4f} (95% CI {low:.4f}-{high:.4f}; wall {wall_ratio:.4f}), "
          f"{len(ratios)} rounds of {n_epochs} epochs = {steps} steps, "
          f"{'resolved' if resolved else 'NOT resolved: machine too noisy'}")
    benchmark.pedantic(lambda: run("harness", block[:1]), rounds=3, iterations=1)
    assert ratio <= TARGET, f"harness loop overhead {ratio:.4f} > target {TARGET} (95% CI {low:.4f}-{high:.4f})"

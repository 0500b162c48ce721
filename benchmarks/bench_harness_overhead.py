"""Harness loop overhead against a plain hand-written PyTorch loop.

Same model initialisation, data tensors, batches and optimiser; the only
difference is the harness's hot loop (Batch assembly, method dispatch, step
timer, NaN/Inf check). Epochs of the two loops are interleaved so machine
drift hits both. Reported as ``overhead_ratio`` = median harness epoch /
median plain epoch in ``extra_info`` and on stdout. Target: at most 1.05.

Run: ``pytest benchmarks/bench_harness_overhead.py -s``.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.protocols.supervised import batch_indices, make_optimizer, make_state, to_device, train_epoch
from harness.registry import create_method
from harness.suites import losses, shift
from harness.timing import StepTimer

CPU = torch.device("cpu")
ROUNDS = 15


def plain_epoch(model, optimizer, x, y, batches, binary):
    model.train()
    for idx in batches:
        xb, yb = x[idx], y[idx]
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
    data = to_device(task, CPU)
    train_idx = task.splits["train"].indices
    torch.manual_seed(0)
    model_h = task.model_factory()
    model_p = copy.deepcopy(model_h)
    opt_h, opt_p = make_optimizer(model_h, task.budget), make_optimizer(model_p, task.budget)
    method = create_method("erm")
    state = make_state(task, CPU, 0, 1)
    method.setup(task, state)
    binary = task.num_classes == 2

    def epoch_batches(seed):
        return list(batch_indices(task, train_idx, None, torch.Generator().manual_seed(seed)))

    def harness_epoch(seed=0):
        train_epoch(method, model_h, opt_h, state, data, iter(epoch_batches(seed)), StepTimer(CPU))

    times = {"harness": [], "plain": []}
    for r in range(ROUNDS):
        batches = epoch_batches(r)
        order = ("harness", "plain") if r % 2 == 0 else ("plain", "harness")
        for name in order:
            t0 = time.perf_counter()
            if name == "harness":
                train_epoch(method, model_h, opt_h, state, data, iter(batches), StepTimer(CPU))
            else:
                plain_epoch(model_p, opt_p, data.x, data.y, batches, binary)
            times[name].append(time.perf_counter() - t0)
    ratio = float(np.median(times["harness"][1:]) / np.median(times["plain"][1:]))  # first round is warm-up
    benchmark.extra_info.update({
        "overhead_ratio": ratio, "plain_epoch_median_s": float(np.median(times["plain"][1:])),
        "harness_epoch_median_s": float(np.median(times["harness"][1:])), "steps_per_epoch": len(batches),
    })
    print(f"\n{case}: harness/plain epoch time ratio = {ratio:.3f} over {ROUNDS - 1} interleaved rounds")
    benchmark.pedantic(harness_epoch, rounds=3, iterations=1)

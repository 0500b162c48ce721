"""How many oracles per histogram bin KLoM needs to order methods (harness/protocols/unlearn.py: klom_bins).

A proxy for the suite's cases: the MNIST MLP case of tests/test_unlearning.py with a 600-image pool. Trains 40
retrained oracles (Q), and 6 models each of three "methods" of known distance from retraining: held-out retrained
models, models trained on the retain set plus half the forget set, and originals (trained on everything). For each
(number of oracles, bins), 200 resamples of Q and of 3 models per method (3 seeds, as standard) count how often
KLoM on forget orders them floor < half < original. Output: docs/tuning/unlearning_klom_bins.json.

    OMP_NUM_THREADS=1 HARNESS_DATA=... python docs/tuning/unlearning_klom_bins.py
"""

import dataclasses
import json
import sys
import time

import numpy as np
import torch

sys.path.insert(0, ".")
from harness.metrics.unlearning import klom, margins  # noqa: E402
from harness.protocols import kit  # noqa: E402
from harness.protocols import unlearn as proto  # noqa: E402
from harness.protocols.kit import RunContext, fit, infer  # noqa: E402
from tests.methods.test_unlearning import tiny_spec  # noqa: E402

torch.set_num_threads(1)
spec = tiny_spec()
spec = dataclasses.replace(spec, params={**spec.params, "pool": dict(pool=600, val=100, test=100)})
task = spec.build(spec)
f_idx = task.splits["forget"].indices
task.splits["half"] = task.data.subset(torch.cat([task.splits["retain"].indices, f_idx[: len(f_idx) // 2]]))
y = task.data.y[f_idx].numpy()


def train(split: str, seed: int) -> np.ndarray:
    ctx = RunContext.create(task, proto._TRAINER, torch.device("cpu"), seed)
    kit.seed_everything(seed)
    model = task.model_factory()
    fit(ctx, model, split=split)
    return margins(infer(ctx, model, f_idx).logits.numpy(), y)


t0 = time.time()
Q = np.stack([train("retain", 10_000 + i) for i in range(40)])
floor = np.stack([train("retain", 20_000 + i) for i in range(6)])
mid = np.stack([train("half", 30_000 + i) for i in range(6)])
orig = np.stack([train("train", 40_000 + i) for i in range(6)])
print("trained in", round(time.time() - t0), "s", flush=True)
rng = np.random.default_rng(0)
out = {}
resamples = 200
for n_q in (6, 12, 24, 40):
    for bins in (2, 3, 4, 6, 8, 12, 20):
        if bins > n_q:
            continue
        ordered, values = 0, []
        for _ in range(resamples):
            q = Q[rng.choice(40, n_q, replace=False)]
            k = [klom(s[rng.choice(6, 3, replace=False)], q, bins=bins).mean for s in (floor, mid, orig)]
            ordered += k[0] < k[1] < k[2]
            values.append(k)
        g = np.array(values)
        out[f"{n_q}/{bins}"] = dict(n_q=n_q, bins=bins, per_bin=n_q / bins, ordered=ordered / resamples,
                                    mean=g.mean(0).round(3).tolist())
        print(n_q, bins, round(n_q / bins, 1), ordered / resamples, g.mean(0).round(3).tolist(), flush=True)
json.dump(out, open("docs/tuning/unlearning_klom_bins.json", "w"), indent=1)

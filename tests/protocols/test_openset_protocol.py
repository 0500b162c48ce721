"""The open-set protocol on a tiny synthetic case: one closed-set model per (case, trainer, seed), shared by every
score; trainers as rows; checkpoints; evidence that recomputes the metrics; the trainer hparam; protocol gating."""

from __future__ import annotations

import pytest
import torch

import harness.protocols.openset as openset_protocol
from harness.core.method import Method
from harness.core.registry import create_method
from harness.core.task import Budget, CaseSpec
from harness.data.dataset import ArrayDataset
from harness.errors import Unsupported, UsageError
from harness.protocols.kit import RunContext
from harness.protocols.openset import checkpoint_epochs, run_openset
from harness.protocols.store import ModelStore
from harness.reporting.suites import openset as report
from harness.running.runner import run_case
from harness.suites import openset as suite

CPU = torch.device("cpu")
KNOWN, UNKNOWN, PER_CLASS = 4, 2, 24


def tiny_images() -> tuple[torch.Tensor, ArrayDataset]:
    """6 classes of 8 x 8 grey images, each class a bright pixel block at its own place plus noise."""
    g = torch.Generator().manual_seed(0)
    n = KNOWN + UNKNOWN
    y = torch.arange(n).repeat_interleave(PER_CLASS)
    x = torch.randint(0, 60, (len(y), 1, 8, 8), generator=g)
    for c in range(n):
        r, col = divmod(c, 3)
        x[y == c, :, 4 * r:4 * r + 4, 2 * col:2 * col + 3] += 180
    return y, ArrayDataset(x.to(torch.uint8), y, [f"c{c}" for c in range(n)], "tiny")


def tiny_task(spec: CaseSpec):
    """:func:`tiny_images`, classes 0-3 known, 4-5 unknown; half of each class trains, half tests."""
    y, base = tiny_images()
    first = (torch.arange(len(y)) % PER_CLASS) < PER_CLASS // 2
    train = torch.nonzero(first & (y < KNOWN)).flatten()
    test = torch.nonzero(~first).flatten()
    return suite.open_task(spec, base, list(range(KNOWN)), list(range(KNOWN, KNOWN + UNKNOWN)), train, test,
                           torch.zeros(len(y)), suite.SINGLE, dict(name="osr_cnn", width=4), {}, [])


SPEC = CaseSpec("openset", "tiny", "smoke", {"tiny": 1}, Budget(epochs=3, batch_size=16, lr=5e-3), tiny_task,
                "1", "openset")


@pytest.fixture
def task(cache_dir):
    return SPEC.build(SPEC)


def run(task, name: str, hparams: dict | None = None, seeds=(0,)) -> dict:
    return run_case(SPEC, create_method(name, hparams), list(seeds), CPU, task=task).record


def test_one_model_per_trainer_and_seed_shared_by_every_score(task, monkeypatch):
    calls = []
    real_infer = openset_protocol.infer
    monkeypatch.setattr(openset_protocol, "infer", lambda *a, **k: calls.append(a[2]) or real_infer(*a, **k))
    first = run(task, "msp")
    key = first["run"]["model_key"][0]  # the runner keeps one entry per seed
    assert ModelStore.trainings[key] == 1 and first["run"]["model_reused"][0] is False
    calls.clear()
    for name in ("mls", "energy", "erm"):  # erm's own row trains the very model the scores use
        rec = run(task, name)
        assert rec["run"]["model_key"][0] == key and rec["run"]["model_reused"][0] is True, name
    assert calls == []  # nor is the test split inferred again: its outputs were kept beside the model
    run(task, "knn")
    run(task, "mahalanobis")
    assert calls == ["train"]  # the training outputs once, for the first score that calibrates
    assert ModelStore.trainings[key] == 1
    strong = run(task, "msp", {"trainer": "erm-strong"})
    other = strong["run"]["model_key"][0]
    assert other != key and ModelStore.trainings[other] == 1 and strong["run"]["trainer"][0] == "erm-strong"
    assert run(task, "erm-strong")["run"]["model_key"][0] == other
    assert ModelStore.trainings[other] == 1


def test_rows_scores_checkpoints_and_directions(task):
    erm, mls, msp = run(task, "erm"), run(task, "mls"), run(task, "msp")
    assert erm["run"]["score"][0] == "mls" and mls["run"]["score"][0] == "mls" and msp["run"]["score"][0] == "msp"
    assert erm["metrics"]["acc"] == mls["metrics"]["acc"] == msp["metrics"]["acc"]
    for metric in ("auroc", "oscr", "fpr95", "aupr_in", "aupr_out"):
        assert erm["metrics"][metric]["per_seed"] == mls["metrics"][metric]["per_seed"], metric
        assert erm["metrics"][f"{metric}_msp"]["per_seed"] == msp["metrics"][metric]["per_seed"], metric
    assert "auroc_msp" not in mls["metrics"]  # a score's row holds only its own score
    assert not erm["metrics"]["fpr95"]["higher_is_better"] and not erm["metrics"]["fpr95_msp"]["higher_is_better"]
    assert erm["metrics"]["auroc"]["higher_is_better"] and erm["primary_metric"] == "auroc"
    checkpoints = erm["run"]["checkpoints"][0]
    assert [c[0] for c in checkpoints] == [0, 1, 2]
    assert checkpoints[-1][1:] == [mls["metrics"]["acc"]["mean"], mls["metrics"]["auroc"]["mean"]]
    assert erm["timing"]["step_time_median_s"] > 0 and erm["timing"]["steps_timed"] > 0  # training steps
    assert msp["timing"]["steps_timed"] == 1  # scoring: the 60 test samples fit one evaluation batch
    assert erm["model_selection"] == suite.SELECTION_RULE


def test_checkpoint_epochs():
    assert checkpoint_epochs(1) == [] and checkpoint_epochs(2) == [0] and checkpoint_epochs(3) == [0, 1]
    assert checkpoint_epochs(8) == [1, 3, 5] and checkpoint_epochs(40) == [9, 19, 29]


def test_arrays_recompute_the_metrics_exactly(task):
    for name in ("erm", "vim", "odin"):
        method = create_method(name)
        result = run_openset(task, method, RunContext.create(task, method, CPU, 0))
        assert set(result.arrays) >= {"y", "pred", "part", "score"}
        assert result.arrays["y"].dtype.itemsize <= 2 and result.arrays["score"].dtype.name == "float32"
        assert ("score_msp" in result.arrays) == (name == "erm")
        assert task.recompute_fn(result.arrays) == result.metrics, name


def test_a_retrained_model_gives_the_same_metrics(task, tmp_path, monkeypatch):
    first = run(task, "mls")
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "fresh"))
    again = run(task, "mls")
    assert again["run"]["model_reused"][0] is False and again["metrics"] == first["metrics"]


def test_trainer_hparam_is_checked(task):
    with pytest.raises(UsageError, match="itself an open-set score"):
        run(task, "msp", {"trainer": "mls"})
    with pytest.raises(UsageError, match="unknown method"):
        run(task, "msp", {"trainer": "no-such-trainer"})
    with pytest.raises(Unsupported, match="msp with trainer=groupdro: groupdro needs"):
        run(task, "msp", {"trainer": "groupdro"})


def test_supervised_methods_join_the_openset_protocol_and_nothing_else_does():
    for name in ("erm", "focal", "sam", "erm-strong", "msp"):
        create_method(name).check_protocol("openset")
    with pytest.raises(Unsupported, match="no 'supervised' protocol part"):
        create_method("msp").check_protocol("supervised")

    class UnlearnOnly(Method):
        name, family, protocols = "unlearn-only", "unlearning", frozenset({"unlearn"})

    with pytest.raises(Unsupported, match="no 'openset' protocol part"):
        UnlearnOnly().check_protocol("openset")


def test_findings_and_figure_from_records(tmp_path):
    def record(method, seeds, auroc, run_info, case="mnist-split0", extra=None, overrides=None):
        metrics = {"auroc": {"per_seed": auroc}, **(extra or {})}
        return {"suite": "openset", "status": "ok", "case": case, "method": method, "seeds": seeds,
                "hparam_overrides": overrides or {}, "metrics": metrics, "run": run_info}

    ckpt = [[[0, 0.5, 0.6], [1, 0.7, 0.8]], [[0, 0.6, 0.65], [1, 0.9, 0.95]]]
    records = [  # the runner keeps one entry per seed for every fact
        record("mls", [0, 1], [0.8, 0.95], {"trainer": ["erm"] * 2, "score": ["mls"] * 2, "checkpoints": ckpt}),
        record("msp", [0, 1], [0.7, 0.9], {"trainer": ["erm"] * 2, "score": ["msp"] * 2, "checkpoints": ckpt}),
        record("focal", [0, 1], [0.5, 0.4], {"trainer": ["focal"] * 2, "score": ["mls"] * 2,
                                             "checkpoints": [[[1, 0.3, 0.5]], [[1, 0.2, 0.4]]]},
               extra={"auroc_msp": {"per_seed": [0.45, 0.3]}}),
        record("mls", [0], [0.7], {"trainer": ["erm"], "score": ["mls"], "checkpoints": [[[0, 0.5, 0.7]]]},
               case="cub-ssb", extra={"auroc_easy": {"per_seed": [0.8]}, "auroc_hard": {"per_seed": [0.6]}}),
        record("msp", [0], [0.6], {"trainer": ["erm"], "score": ["msp"], "checkpoints": [[[0, 0.5, 0.7]]]},
               case="cub-ssb", extra={"auroc_easy": {"per_seed": [0.7]}, "auroc_hard": {"per_seed": [0.65]}}),
    ]
    lines = report.findings(records)
    mnist = next(line for line in lines if line.startswith("`mnist`"))
    # 6 checkpoints: accuracy and AUROC rank the same way (rho = 1); final models (0.7,0.8) (0.9,0.95) (0.3,0.5)
    # (0.2,0.4) too
    assert "4 models (2 trainers: erm, focal" in mnist and "ρ = +1.00" in mnist and "n = 6" in mnist
    mls_msp = next(line for line in lines if line.startswith("MLS vs MSP"))
    # pairs: erm seed 0 (0.8, 0.7), seed 1 (0.95, 0.9), focal (0.5, 0.45), (0.4, 0.3), cub erm (0.7, 0.6)
    assert "paired over 5 closed-set models" in mls_msp and "MLS higher in 5 (cub-ssb 1/1, mnist 4/4)" in mls_msp
    # mean over cases of case means: mnist (0.1 + 0.05 + 0.05 + 0.1) / 4 = 0.075, cub 0.1
    assert "mean over cases Δ +0.0875" in mls_msp and "on these cases (stratified sign-flip over 2 case(s)" in mls_msp
    cub = next(line for line in lines if line.startswith("CUB"))
    assert "2 (row, seed) pairs of 2 rows" in cub and "Easy 0.7500 vs Hard 0.6250" in cub
    (title, path), = report.figures(records, tmp_path)
    assert "accuracy against AUROC" in title and path.read_bytes()[:4] == b"\x89PNG"


def test_parameter_search_uses_validation_only_and_records_the_choice(cache_dir, monkeypatch):
    y, base = tiny_images()
    pos = torch.arange(len(y)) % PER_CLASS
    train = torch.nonzero((pos < 12) & (y < KNOWN)).flatten()
    test = torch.nonzero((pos >= 12) & (pos < 18)).flatten()
    val_known = torch.nonzero((pos >= 18) & (y < KNOWN)).flatten()
    val_unknown = torch.nonzero((pos >= 18) & (y >= KNOWN)).flatten()

    def build(spec):
        return suite.open_task(spec, base, list(range(KNOWN)), list(range(KNOWN, KNOWN + UNKNOWN)), train, test,
                               torch.zeros(len(y)), suite.SINGLE, dict(name="osr_cnn", width=4), {}, [],
                               extra={"val_known": val_known, "val_unknown": val_unknown})

    spec = CaseSpec("openset", "tiny-val", "smoke", {"tiny": 2}, SPEC.budget, build, "1", "openset")
    task = spec.build(spec)
    assert task.info["counts"]["val_known"] == len(val_known) and set(task.splits) >= {"val_known", "val_unknown"}
    read = []
    real = openset_protocol.cached_outputs
    monkeypatch.setattr(openset_protocol, "cached_outputs", lambda ctx, m, key, split: read.append(split) or
                        real(ctx, m, key, split))
    method = create_method("react")
    ctx = RunContext.create(task, method, CPU, 0)
    model, _, key = openset_protocol.closed_set_model(ctx, openset_protocol.trainer_of(method))
    state = ctx.make_state(0, 0, input_std=(1.0,))
    chosen, info = openset_protocol.choose_hparams(ctx, method, model, key, state)
    assert "test" not in read and set(read) == {"train", "val_known", "val_unknown"}  # never the test split
    best = max(a for a, _ in info["tried"])
    assert info["val_auroc"] == best and [c for a, c in info["tried"] if a == best][0] == info["chosen"]
    assert chosen.hparams["percentile"] == info["chosen"]["percentile"] and len(info["tried"]) == 4
    assert f"val_known ({len(val_known)}) vs val_unknown ({len(val_unknown)})" in info["on"]
    # a hand-set hparam is kept, not searched; a score without a grid, or a case without validation, searches nothing
    assert openset_protocol.search_grid(create_method("react", {"percentile": 97.0})) == {}
    assert openset_protocol.choose_hparams(ctx, create_method("msp"), model, key, state)[1] is None
    record = run_case(spec, create_method("react"), [0], CPU, task=task).record  # its own seed stream, own model
    search = record["run"]["search"][0]
    assert search["chosen"] == max(search["tried"], key=lambda t: t[0])[1] and len(search["tried"]) == 4
    plain = SPEC.build(SPEC)
    record = run_case(SPEC, create_method("react"), [0], CPU, task=plain).record
    assert record["run"]["search"][0]["chosen"] is None and "no validation" in record["run"]["search"][0]["on"]

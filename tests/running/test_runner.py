"""The supervised protocol and runner: determinism, divergence, interrupts, resume, support checks."""

from __future__ import annotations

import pytest
import torch

from harness import Method, register_method
from harness.core.registry import create_method
from harness.errors import Unsupported
from harness.records import load_record
from harness.running.runner import run_case
from harness.suites import losses, shift

CPU = torch.device("cpu")


def spec_named(suite, case: str, profile: str = "smoke"):
    return next(s for s in suite.case_specs(profile) if s.case == case)


@pytest.fixture(scope="module")
def bc_task():
    spec = spec_named(losses, "breast_cancer-noise0.2")
    return spec, spec.build(spec)


@register_method("test-nan-at-step-3")
class NanAtStep3(Method):
    family, protocols = "loss", frozenset({"supervised"})

    def loss(self, logits, batch, state):
        loss = super().loss(logits, batch, state)
        return loss * float("nan") if state.step == 3 else loss


@register_method("test-interrupt")
class Interrupt(Method):
    family, protocols = "loss", frozenset({"supervised"})

    def loss(self, logits, batch, state):
        if state.step == 2:
            raise KeyboardInterrupt
        return super().loss(logits, batch, state)


@register_method("test-openset-only")
class OpenSetOnly(Method):
    family, protocols = "osr", frozenset({"openset"})


def test_same_seed_gives_identical_metrics(bc_task):
    spec, task = bc_task
    a = run_case(spec, create_method("ensloss"), [0, 1], CPU, task=task).record
    b = run_case(spec, create_method("ensloss"), [0, 1], CPU, task=task).record
    assert a["metrics"] == b["metrics"]
    c = run_case(spec, create_method("ensloss"), [2], CPU, task=task).record
    assert c["metrics"]["val_acc"]["per_seed"] != a["metrics"]["val_acc"]["per_seed"][:1] or \
        c["metrics"]["gap"]["per_seed"] != a["metrics"]["gap"]["per_seed"][:1]


def test_record_contents(bc_task, tmp_path):
    spec, task = bc_task
    result = run_case(spec, create_method("bce"), [0, 1], CPU, tmp_path, task=task)
    rec = load_record(result.path)
    assert rec["status"] == "ok" and rec["seeds"] == [0, 1] and rec["fingerprint"] == spec.fingerprint
    assert set(rec["metrics"]) >= {"test_acc", "test_auroc", "gap", "train_acc"}
    acc = rec["metrics"]["test_acc"]
    assert len(acc["per_seed"]) == 2 and acc["mean"] == pytest.approx(sum(acc["per_seed"]) / 2)
    assert 0.8 < acc["mean"] <= 1.0  # breast cancer with an MLP is an easy task: a broken loop shows here
    t = rec["timing"]
    assert t["step_time_median_s"] > 0 and t["samples_per_s"] > 0 and t["peak_memory_bytes"] > 0
    assert rec["environment"]["torch"] == torch.__version__ and rec["data_fingerprint"]


def test_nan_loss_marks_record_diverged_with_step(bc_task, tmp_path):
    spec, task = bc_task
    result = run_case(spec, create_method("test-nan-at-step-3"), [0, 1], CPU, tmp_path, task=task)
    rec = load_record(result.path)
    assert result.diverged and rec["status"] == "diverged"
    assert rec["diverged"]["step"] == 3 and rec["diverged"]["seed"] == 0 and rec["diverged"]["value"] == "nan"


def test_interrupt_leaves_no_record(bc_task, tmp_path):
    spec, task = bc_task
    with pytest.raises(KeyboardInterrupt):
        run_case(spec, create_method("test-interrupt"), [0], CPU, tmp_path, task=task)
    # nothing stays: no record, no evidence, no temp file, no lock file
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == []


def test_resume_skips_matching_record(bc_task, tmp_path):
    spec, task = bc_task
    first = run_case(spec, create_method("bce"), [0], CPU, tmp_path, task=task)
    again = run_case(spec, create_method("bce"), [0], CPU, tmp_path, resume=True, task=task)
    assert again.resumed and again.record == first.record
    more_seeds = run_case(spec, create_method("bce"), [0, 1], CPU, tmp_path, resume=True, task=task)
    assert not more_seeds.resumed


def test_unsupported_protocol_and_binary_only(bc_task):
    spec, task = bc_task
    with pytest.raises(Unsupported, match="does not take part in the 'supervised' protocol"):
        run_case(spec, create_method("test-openset-only"), [0], CPU, task=task)
    method = create_method("bce")
    type(method).binary_only = True
    try:
        rot = spec_named(shift, "digits_embedded-digits")
        with pytest.raises(Unsupported, match="binary-only"):
            method.check_task(rot.build(rot))
    finally:
        type(method).binary_only = False


def test_shift_task_splits_never_leak(tmp_path):
    spec = spec_named(shift, "rotated-75deg")
    task = spec.build(spec)
    held = task.data.domain_names.index("75deg")
    parts = {k: set(v.indices.tolist()) for k, v in task.splits.items()}
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not parts[a] & parts[b], f"{a} and {b} overlap"
    assert (task.data.domain[task.splits["train"].indices] != held).all()
    assert (task.data.domain[task.splits["test"].indices] == held).all()
    assert task.num_domains == 5 and task.balanced_domains


@register_method("test-sees-unlabeled")
class SeesUnlabeled(Method):
    family, protocols = "dg", frozenset({"supervised"})
    uses_unlabeled = True
    seen: list = []

    def loss(self, logits, batch, state):
        type(self).seen.append(None if batch.unlabeled_x is None else batch.unlabeled_x.clone())
        return super().loss(logits, batch, state)


def test_unlabeled_target_data_only_for_methods_that_declare_it():
    spec = spec_named(shift, "digits_embedded-digits")
    task = spec.build(spec)
    task.spec = type(spec)(spec.suite, spec.case, spec.profile, spec.params,
                           type(spec.budget)(epochs=1, batch_size=64), spec.build)
    from harness.data.source import DeviceSource

    source = DeviceSource(task.data, CPU, task.normalize)
    pool = source.prepare(source.gather_x(task.splits["unlabeled"].indices)).flatten(1)
    SeesUnlabeled.seen = []
    run_case(task.spec, create_method("test-sees-unlabeled"), [0], CPU, task=task)
    assert SeesUnlabeled.seen and all(u is not None for u in SeesUnlabeled.seen)
    first = SeesUnlabeled.seen[0].flatten(1)
    exact = torch.cdist(first, pool, compute_mode="donot_use_mm_for_euclid_dist")
    assert exact.min(dim=1).values.max() < 1e-5  # every row comes from the unlabeled split
    seen_by_erm = []
    erm = create_method("erm")
    erm.loss = lambda logits, batch, state: seen_by_erm.append(batch.unlabeled_x) or \
        type(erm).loss(erm, logits, batch, state)
    run_case(task.spec, erm, [0], CPU, task=task)
    assert seen_by_erm and all(u is None for u in seen_by_erm)

"""The pretrain protocol: teachers, views, the EMA schedule, probes, metrics, the checkpoint cache, on tiny cases
of the embedded MNIST-5k (seconds each)."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch

from baselines.ssl.byol import BYOL
from baselines.ssl.dino import DINO
from baselines.ssl.myow import MYOW
from baselines.ssl.random_init import RandomInit
from baselines.ssl.random_teacher import RandomTeacher
from baselines.ssl.scatsimclr import ScatSimCLR, scattering_encoder
from baselines.ssl.simclr import SimCLR
from harness.errors import UsageError
from harness.protocols.kit import RunContext
from harness.protocols.pretrain import (
    Pretrainer,
    alignment_terms,
    build_encoder,
    conv_encoder,
    draw_views,
    ema_momentum,
    encoder_code,
    linear_probe,
    online_knn_steps,
    pretrain_metrics,
    run_pretrain,
    uniformity_terms,
    weighted_knn_accuracy,
)
from harness.protocols.store import ModelStore
from harness.running.runner import run_case
from harness.suites import case_stream, ssl

CPU = torch.device("cpu")
TINY_CAPS = dict(pretrain=96, train=96, val=48, test=64)


def tiny_spec(case: str = "mnist5k", epochs: int = 1, batch_size: int = 32):
    base = next(s for s in ssl.case_specs("smoke") if s.case == case)
    return dataclasses.replace(base, params=dict(base.params, caps=TINY_CAPS),
                               budget=dataclasses.replace(base.budget, epochs=epochs, batch_size=batch_size))


@pytest.fixture(scope="module")
def task():
    spec = tiny_spec()
    return spec.build(spec)


def trainer(task, method, seed: int = 0) -> Pretrainer:
    ctx = RunContext.create(task, method, CPU, seed)
    encoder = build_encoder(method.encoder_spec(task.info["encoder"], task.sealed()))
    return Pretrainer.create(ctx, method, encoder)


def one_batch(t: Pretrainer) -> torch.Tensor:
    return t.ctx.task.data.x[t.ctx.task.splits["pretrain"].indices[:16]]


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


@pytest.mark.parametrize("cls, online", [(BYOL, "online"), (DINO, "student"), (MYOW, "online")])
def test_ema_teachers_change_only_by_ema(task, cls, online):
    t = trainer(task, cls())
    teacher, student = t.state.teacher, getattr(t.state, online)
    assert all(not p.requires_grad for p in teacher.parameters())
    optimised = {id(p) for group in t.optimizer.param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in teacher.parameters()}
    t.train_mode()
    for _ in range(3):
        before = params(teacher)
        m = ema_momentum(t.state, t.method.hparams["base_momentum"])
        t.step(one_batch(t))
        after, now = params(teacher), params(student)
        assert any(not torch.equal(a, b) for a, b in zip(after, before))  # it did move
        for a, b, s in zip(after, before, now):
            torch.testing.assert_close(a, m * b + (1 - m) * s, rtol=0, atol=1e-6)


def test_random_teacher_never_changes_and_the_student_starts_as_its_copy(task):
    t = trainer(task, RandomTeacher())
    teacher, student = t.state.teacher, t.state.student
    start = copy.deepcopy(teacher.state_dict())
    for key, value in student.state_dict().items():
        assert torch.equal(value, start[key]), key
    assert not teacher.training and student.training
    t.train_mode()
    for _ in range(3):
        t.step(one_batch(t))
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, start[key]), key  # parameters and BatchNorm buffers alike
    assert any(not torch.equal(v, start[k]) for k, v in student.state_dict().items() if v.is_floating_point())


def test_random_teacher_draws_one_unaugmented_view(task):
    t = trainer(task, RandomTeacher())
    assert t.ctx.augment is None and t.ctx.budget.weight_decay == 0.0
    x = one_batch(t)
    (view,) = draw_views(t.ctx, x, t.method.num_views)
    torch.testing.assert_close(view, t.ctx.source.prepare(x))


def test_views_differ_per_sample_and_reproduce_for_a_seed(task):
    method = SimCLR()
    x = task.data.x[task.splits["pretrain"].indices[:1]].repeat(8, 1, 1, 1)  # one image, eight times
    first = draw_views(RunContext.create(task, method, CPU, seed=5), x, 2)
    again = draw_views(RunContext.create(task, method, CPU, seed=5), x, 2)
    other = draw_views(RunContext.create(task, method, CPU, seed=6), x, 2)
    for v in first:
        assert v.shape == x.shape and v.dtype == torch.float32
        assert len({v[i].numpy().tobytes() for i in range(len(v))}) == len(v)  # every sample its own draw
    assert not torch.equal(first[0], first[1])
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    assert not torch.equal(first[0], other[0])


def test_ema_momentum_rises_from_base_to_one_on_a_cosine():
    state = type("S", (), {"step": 0, "total_steps": 100})()
    values = []
    for step in range(101):
        state.step = step
        values.append(ema_momentum(state, 0.99))
    assert values[0] == pytest.approx(0.99) and values[-1] == pytest.approx(1.0) and values[50] == pytest.approx(0.995)
    assert values == sorted(values)


def test_alignment_and_uniformity_match_wang_and_isola():
    g = torch.Generator().manual_seed(0)
    f1, f2 = torch.randn(12, 6, generator=g), torch.randn(12, 6, generator=g)
    z1, z2 = (torch.nn.functional.normalize(f.double(), dim=1) for f in (f1, f2))
    align = (z1 - z2).norm(dim=1).pow(2).mean()
    unif = torch.pdist(z1, p=2).pow(2).mul(-2).exp().mean().log()  # their reference code
    assert float(np.mean(alignment_terms(f1, f2))) == pytest.approx(float(align), rel=1e-12)
    rows = uniformity_terms(f1, chunk=5)
    assert math.log(rows.sum() / (12 * 11)) == pytest.approx(float(unif), rel=1e-9)


def test_linear_probe_chooses_c_on_val_and_ignores_test():
    g = np.random.default_rng(0)
    x = g.normal(size=(120, 5))
    y = (x[:, 0] + 0.5 * g.normal(size=120) > 0).astype(int)
    train, val = (x[:80], y[:80]), (x[80:], y[80:])
    pred, c, _ = linear_probe(train, val, x[:10])
    pred_other, c_other, _ = linear_probe(train, val, g.normal(size=(30, 5)))  # other test inputs, same choice
    assert c == c_other and len(pred) == 10 and len(pred_other) == 30
    _, c_flipped, _ = linear_probe(train, (val[0], 1 - val[1]), x[:10])  # val decides
    assert c_flipped != c


def test_build_encoder_rejects_builders_outside_the_project():
    with pytest.raises(UsageError, match="harness or baselines"):
        build_encoder({"builder": "os:system", "kwargs": {}})
    with pytest.raises(UsageError, match="not available"):
        build_encoder({"builder": "harness.protocols.pretrain:no_such_encoder"})


def test_scattering_front_end_is_fixed_and_sized():
    net = scattering_encoder(3, [16, 16], J=2, L=8, widths=[8], strides=[1])
    front = net[0]
    assert not list(front.parameters())  # nothing of the scattering is trained
    assert front(torch.rand(2, 3, 16, 16)).shape == (2, 3 * 81, 4, 4)
    assert net(torch.rand(2, 3, 16, 16)).shape == (2, 8)
    with pytest.raises(UsageError, match="divisible"):
        scattering_encoder(1, [18, 18], J=2, L=8, widths=[8], strides=[1])


def test_scatsimclr_encoder_spec_is_rebuilt_from_json(task):
    spec = ScatSimCLR().encoder_spec(task.info["encoder"], task.sealed())
    assert spec["kwargs"]["in_chans"] == 1 and spec["kwargs"]["image_size"] == [28, 28]
    assert build_encoder(spec).feature_dim == 128


def test_seed_metrics_recompute_from_evidence_and_the_checkpoint_is_reused(cache_dir):
    spec = tiny_spec()
    task = spec.build(spec)
    first = run_case(spec, SimCLR(), [0], CPU, task=task)
    rec = first.record
    assert rec["status"] == "ok" and rec["run"]["encoder_reused"][0] is False
    trainings = sum(ModelStore.trainings.values())
    # evidence: the seed's arrays reproduce its metrics exactly
    ctx = RunContext.create(task, SimCLR(), CPU, case_stream(spec, 0), index=0)  # seed 0 as the runner runs it

    result = run_pretrain(task, SimCLR(), ctx)
    assert sum(ModelStore.trainings.values()) == trainings  # reused, not retrained
    assert result.info["encoder_reused"] is True
    assert task.recompute_fn(result.arrays) == result.metrics
    for name, value in result.metrics.items():
        assert rec["metrics"][name]["per_seed"] == [pytest.approx(value, abs=0)], name
    assert result.arrays["probe_pred"].dtype == np.int16 and len(result.arrays["y_test"]) == TINY_CAPS["test"]


def test_cached_encoders_lists_and_loads_what_the_suite_pretrained(cache_dir, monkeypatch):
    spec = tiny_spec()
    task = spec.build(spec)
    run_case(spec, SimCLR(), [0], CPU, task=task)
    assert ssl.cached_encoders(dataset="mnist5k") == []  # the tiny spec is not a current suite case
    found = ssl.cached_encoders(dataset="mnist5k", current=False)
    assert [e.name for e in found] == ["simclr/mnist5k/smoke/seed0"]
    enc = found[0]
    assert enc.info["method"] == "simclr" and enc.image_size == (28, 28) and enc.feature_dim == 32
    assert ssl.cached_encoders(dataset="eurosat", current=False) == []
    assert enc.info["code"] == encoder_code(SimCLR) and enc.identity["task_fingerprint"] == spec.fingerprint
    monkeypatch.setattr(ssl, "case_specs", lambda profile: [spec])  # as if the tiny spec were a suite case
    assert [e.name for e in ssl.cached_encoders(dataset="mnist5k")] == ["simclr/mnist5k/smoke/seed0"]
    monkeypatch.setattr(ssl, "_current_code", lambda method: "another digest")
    assert ssl.cached_encoders(dataset="mnist5k") == []  # trained by other code: not this code's encoder
    model = enc.load()
    mean, std = enc.normalize
    x = task.data.x[:4].float() / 255
    features = model((x - mean[0]) / std[0])
    assert features.shape == (4, 32) and not model.training


def test_random_init_is_the_random_teachers_teacher(task):
    spec = task.spec
    floor = run_case(spec, RandomInit(), [0, 1], CPU, task=task).record
    rt = run_case(spec, RandomTeacher(), [0, 1], CPU, task=task).record
    assert floor["metrics"]["probe_acc"]["per_seed"] == rt["metrics"]["teacher_probe_acc"]["per_seed"]
    assert floor["metrics"]["knn_acc"]["per_seed"] == rt["metrics"]["teacher_knn_acc"]["per_seed"]
    gain = rt["metrics"]["gain_knn_acc"]["per_seed"]
    assert gain == pytest.approx([a - b for a, b in zip(rt["metrics"]["knn_acc"]["per_seed"],
                                                        rt["metrics"]["teacher_knn_acc"]["per_seed"])])
    assert "epoch_time_s" not in floor["metrics"] and floor["run"]["pretrain_steps"][0] == 0
    assert rt["run"]["method_budget"] == {"augment": "none", "weight_decay": 0.0}


def test_pretrain_metrics_definitions():
    arrays = {"y_test": np.array([0, 1, 1, 2], dtype=np.int16), "probe_pred": np.array([0, 1, 0, 2], dtype=np.int16),
              "knn_pred": np.array([0, 0, 0, 2], dtype=np.int16), "align_sq_dist": np.array([0.5, 1.5]),
              "unif_row_sums": np.array([1.0, 2.0, 3.0]), "epoch_seconds": np.array([2.0, 4.0]),
              "peak_memory_bytes": np.array([3 * 2**20])}
    m = pretrain_metrics(arrays)
    assert m == {"probe_acc": 0.75, "knn_acc": 0.5, "alignment": 1.0, "uniformity": pytest.approx(0.0),
                 "epoch_time_s": 3.0, "peak_memory_mb": 3.0}


def test_conv_encoder_needs_a_stride_per_width():
    with pytest.raises(UsageError, match="stride"):
        conv_encoder(3, [8, 16], [1])


def test_the_same_seed_retrains_to_the_same_metrics(tmp_path, monkeypatch):
    spec = tiny_spec()
    task = spec.build(spec)
    metrics = []
    for folder in ("a", "b"):  # two empty caches: both seeds train from scratch
        monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / folder))
        rec = run_case(spec, MYOW(), [3], CPU, task=task).record
        assert rec["run"]["encoder_reused"][0] is False
        metrics.append({k: v["per_seed"] for k, v in rec["metrics"].items() if k != "epoch_time_s"
                        and k != "peak_memory_mb"})
    assert metrics[0] == metrics[1]


# -- online kNN during pretraining ------------------------------------------------------------------


def test_online_knn_steps_are_zero_then_spread_to_the_last():
    assert online_knn_steps(4, 4) == [0, 1, 2, 3, 4]
    assert online_knn_steps(40, 4) == [0, 10, 20, 30, 40]  # the standard profile: every epoch end
    assert online_knn_steps(6, 4) == [0, 2, 3, 5, 6]  # ceil(i * 6 / 4)
    assert online_knn_steps(3, 5) == [0, 1, 2, 3]  # more points than steps: every step once
    assert online_knn_steps(0, 4) == [0]  # nothing trained: the initial encoder only
    assert online_knn_steps(10, 0) == []


def test_weighted_knn_is_wu_et_al_temperature_weighted_cosine_vote():
    g = np.random.default_rng(1)
    xtr, ytr = g.normal(size=(40, 6)), g.integers(0, 3, size=40)
    xva, yva = g.normal(size=(25, 6)), g.integers(0, 3, size=25)
    # the definition written out: cosine similarity, the k most similar train rows vote exp(sim / T) for their label
    ztr = xtr / np.linalg.norm(xtr, axis=1, keepdims=True)
    zva = xva / np.linalg.norm(xva, axis=1, keepdims=True)
    for k, t in ((5, 0.07), (20, 0.5)):
        sim = zva @ ztr.T
        nbr = np.argsort(-sim, axis=1)[:, :k]
        votes = np.zeros((len(xva), 3))
        for i in range(len(xva)):
            for j in nbr[i]:
                votes[i, ytr[j]] += np.exp(sim[i, j] / t)
        expected = float(np.mean(votes.argmax(1) == yva))
        assert weighted_knn_accuracy((xtr, ytr), (xva, yva), k=k, temperature=t) == pytest.approx(expected, abs=0)
    assert weighted_knn_accuracy((xtr, ytr), (xtr, ytr), k=1) == 1.0  # each train row's nearest is itself


def online_spec(points: int = 4, epochs: int = 2):
    spec = tiny_spec(epochs=epochs)
    return dataclasses.replace(spec, params=dict(spec.params, online_knn=points))


def test_online_knn_curve_has_the_profile_points_and_a_reused_encoder_reports_it(cache_dir):
    spec = online_spec()  # 96 pretraining images in batches of 32: 3 steps an epoch, 6 in all
    task = spec.build(spec)
    rec = run_case(spec, SimCLR(), [0], CPU, task=task).record
    (curve,) = rec["run"]["online_knn"]
    assert [e for e, _ in curve] == pytest.approx([0, 2 / 3, 1, 5 / 3, 2])  # steps 0, 2, 3, 5, 6
    assert all(0.0 <= a <= 1.0 for _, a in curve)
    assert rec["run"]["online_knn_seconds"][0] > 0
    ctx = RunContext.create(task, SimCLR(), CPU, case_stream(spec, 0), index=0)
    again = run_pretrain(task, SimCLR(), ctx)
    assert again.info["encoder_reused"] is True and again.info["online_knn"] == curve  # from the sidecar
    floor = run_case(spec, RandomInit(), [0], CPU, task=task).record
    assert [e for e, _ in floor["run"]["online_knn"][0]] == [0.0]  # nothing trained: the initial encoder
    assert floor["run"]["online_knn"][0][0] == curve[0]  # the same initial encoder of the seed


def poisoned(task):
    """The task with every test image replaced by noise and every test label moved to the next class."""
    test = task.splits["test"].indices
    x, y = task.data.x.clone(), task.data.y.clone()
    x[test] = torch.randint(0, 256, x[test].shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    y[test] = (y[test] + 1) % task.num_classes
    data = dataclasses.replace(task.data, x=x, y=y, _fingerprint=None)
    return dataclasses.replace(task, data=data, splits={k: data.subset(v.indices) for k, v in task.splits.items()})


def test_online_knn_reads_no_test_data(cache_dir):
    spec = online_spec()
    task = spec.build(spec)
    bad = poisoned(task)
    assert bad.data.fingerprint != task.data.fingerprint  # another store key: both encoders are trained here
    results = []
    for t in (task, bad):
        ctx = RunContext.create(t, SimCLR(), CPU, case_stream(spec, 0), index=0)
        results.append(run_pretrain(t, SimCLR(), ctx))
    clean, dirty = results
    assert not clean.info["encoder_reused"] and not dirty.info["encoder_reused"]
    assert dirty.metrics["probe_acc"] != clean.metrics["probe_acc"]  # the test split does reach the final metrics
    assert dirty.info["online_knn"] == clean.info["online_knn"]  # but not the online curve


def test_online_knn_is_deterministic_and_leaves_training_unchanged(tmp_path, monkeypatch):
    curves, encoders = [], []
    for points in (4, 4, 0):  # twice with the curve (the second a fresh cache), once without
        monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / f"cache{len(curves)}"))
        spec = online_spec(points)
        task = spec.build(spec)
        ctx = RunContext.create(task, BYOL(), CPU, case_stream(spec, 0), index=0)
        result = run_pretrain(task, BYOL(), ctx)
        assert not result.info["encoder_reused"]
        curves.append(result.info.get("online_knn"))
        encoders.append(result)
    assert curves[0] == curves[1] and len(curves[0]) == 5 and curves[2] is None
    for a, b in zip((encoders[0], encoders[1]), (encoders[2], encoders[2])):
        for name in ("probe_acc", "knn_acc", "alignment", "uniformity"):  # the trajectory is the one without it
            assert a.metrics[name] == b.metrics[name], name
        assert a.info["epoch_loss"] == b.info["epoch_loss"]

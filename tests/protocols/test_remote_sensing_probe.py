"""The probe protocol: naive Bayes against sklearn, the feature cache, the band checks, metrics from arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.naive_bayes import GaussianNB
from torch import nn

from harness.core.preprocess import Geometry, Preprocess
from harness.core.registry import create_method
from harness.core.task import Budget, CaseSpec
from harness.data.dataset import ArrayDataset
from harness.errors import DataError
from harness.metrics._checks import MetricError
from harness.metrics.probes import GaussianNaiveBayes, naive_bayes_accuracy, naive_bayes_predict
from harness.protocols.kit import RunContext
from harness.protocols.probe import (
    Encoder,
    FeatureCache,
    ProbeTask,
    draw_shots,
    fewshot,
    probe_metrics,
    run_probe,
    stratified_split,
)

# -- Gaussian naive Bayes -------------------------------------------------------------------------------


def _blobs(seed: int, n: int, d: int = 6, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.choice(k, n, p=[0.5, 0.3, 0.2][:k] if k == 3 else None)
    centres = np.random.default_rng(7).normal(0, 1.0, (k, d))
    scales = np.random.default_rng(8).uniform(0.3, 3.0, (k, d))  # per-class, per-feature spreads: NB's model
    return centres[y] + rng.normal(0, 1, (n, d)) * scales[y] + 5.0, y


@pytest.mark.parametrize("var_smoothing", [1e-9, 1e-2, 0.5])
def test_naive_bayes_matches_sklearn(var_smoothing: float) -> None:
    xtr, ytr = _blobs(0, 200)
    xte, yte = _blobs(1, 150)
    ref = GaussianNB(var_smoothing=var_smoothing).fit(xtr, ytr)
    ours = GaussianNaiveBayes.fit(xtr, ytr, var_smoothing)
    np.testing.assert_allclose(ours.mean, ref.theta_, rtol=1e-12)
    np.testing.assert_allclose(ours.var, ref.var_, rtol=1e-12)
    np.testing.assert_allclose(ours.joint_log_likelihood(xte), ref.predict_joint_log_proba(xte), rtol=1e-10)
    np.testing.assert_array_equal(naive_bayes_predict(xtr, ytr, xte, var_smoothing=var_smoothing), ref.predict(xte))
    acc = naive_bayes_accuracy(xtr, ytr, xte, yte, var_smoothing=var_smoothing)
    assert acc == pytest.approx(ref.score(xte, yte)) and acc > 0.6


def test_naive_bayes_one_shot_and_string_free_labels_match_sklearn() -> None:
    # one sample per class: the class variances are 0 and only the smoothing term is left, as in sklearn
    xtr, ytr = np.array([[0.0, 1.0], [3.0, -1.0], [1.0, 4.0]]), np.array([7, 2, 5])
    xte = np.random.default_rng(0).normal(1, 2, (40, 2))
    np.testing.assert_array_equal(naive_bayes_predict(xtr, ytr, xte), GaussianNB().fit(xtr, ytr).predict(xte))
    with pytest.raises(MetricError, match="constant"):
        GaussianNaiveBayes.fit(np.ones((4, 2)), np.array([0, 0, 1, 1]))


# -- a tiny probe task ------------------------------------------------------------------------------------


def _tiny_encoder(expect: int | None = None) -> Encoder:
    def build(in_chans: int) -> tuple[nn.Module, dict]:
        torch.manual_seed(0)
        c = expect or in_chans
        return nn.Sequential(nn.Conv2d(c, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()), {"arch": "tiny"}

    return Encoder("tiny", build, "a tiny conv net")


def _task(channels: int = 3, encoder: Encoder | None = None, norms=("divide", "minmax"),
          x: torch.Tensor | None = None, bands: list[str] | None = None) -> ProbeTask:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat_interleave(12)
    if x is None:  # class-dependent brightness per band, so the probes have something to find
        x = (torch.rand(len(y), channels, 12, 12, generator=g) * 0.5 + 0.15 * y.view(-1, 1, 1, 1)).clamp(0, 1)
    data = ArrayDataset(x, y, ["a", "b", "c"], "tiny")
    grid = [Preprocess.make(Geometry.parse(geo), n, channels) for geo in ("native", "resize16") for n in norms]
    spec = CaseSpec("test", "probe-tiny", "smoke", {}, Budget(epochs=0, batch_size=16), lambda s: None, "1", "probe")
    return ProbeTask(spec=spec, data=data, splits={"pool": data.all()}, num_classes=3, model_factory=lambda: None,
                     metrics_fn=lambda a: {}, primary_metric="ref:linear", encoder=encoder or _tiny_encoder(),
                     grid=grid, reference="resize16/divide", shots=(1, 2, 5, 7, "all"), draws=2, band_names=bands)


def _run(task: ProbeTask, seed: int = 0):
    method = create_method("frozen")
    return run_probe(task, method, RunContext.create(task, method, torch.device("cpu"), seed))


def test_feature_cache_is_reused_across_seeds_tasks_and_runs(cache_dir) -> None:
    FeatureCache.extractions.clear()
    task = _task()
    first = _run(task, seed=0)
    assert first.info["features_computed"] == 4 and first.info["features_reused"] == 0
    assert sum(FeatureCache.extractions.values()) == 4 and max(FeatureCache.extractions.values()) == 1
    second = _run(task, seed=1)  # another seed: new split, same features
    assert second.info["features_computed"] == 0 and second.info["features_reused"] == 4
    again = _run(_task(), seed=0)  # a fresh task and encoder object (a new run): read from disk
    assert again.info["features_reused"] == 4 and sum(FeatureCache.extractions.values()) == 4
    assert again.metrics == first.metrics  # the cached features give the same numbers
    assert len(list((cache_dir / "features").glob("*.safetensors"))) == 4
    other = _task(norms=("divide", "imagenet"))  # one new policy: only it is extracted
    assert _run(other).info["features_computed"] == 2
    assert sum(FeatureCache.extractions.values()) == 6


def test_cache_key_changes_with_the_weights(cache_dir) -> None:
    FeatureCache.extractions.clear()
    _run(_task())
    base = _tiny_encoder()

    def perturbed(in_chans: int):
        model, info = base.build(in_chans)
        with torch.no_grad():
            model[0].bias.add_(0.1)
        return model, info

    assert _run(_task(encoder=Encoder("tiny2", perturbed, "perturbed"))).info["features_computed"] == 4


def test_metrics_are_recomputed_exactly_from_the_arrays(cache_dir) -> None:
    task = _task()
    res = _run(task)
    assert probe_metrics(res.arrays, task.reference) == res.metrics
    assert set(res.arrays["y"].tolist()) == {0, 1, 2} and res.arrays["y"].dtype == np.int16
    expected = {f"{p}@{g}/{n}" for p in ("knn5", "knn20", "linear") for g in ("native", "resize16")
                for n in ("divide", "minmax")}
    assert expected <= set(res.metrics)
    cells = [res.metrics[f"linear@{g}/{n}"] for g in ("native", "resize16") for n in ("divide", "minmax")]
    assert res.metrics["swing:linear"] == pytest.approx(max(cells) - min(cells))
    assert res.metrics["ref:linear"] == res.metrics["linear@resize16/divide"]
    assert res.metrics["resize_gain:knn5"] == pytest.approx(
        res.metrics["knn5@resize16/divide"] - res.metrics["knn5@native/divide"])
    # 6 train images per class: 7 shots is skipped and listed, "all" is one deterministic fit
    assert res.info["fewshot_skipped"] == ["7"] and "fewshot_lr@7" not in res.metrics
    assert res.arrays["fewshot:lr:5"].shape == (2, 18) and res.arrays["fewshot:nb:all"].shape == (1, 18)
    assert res.metrics["ref:linear"] > 0.6  # the class signal is real


def test_grid_rows_subsample_the_grid_but_not_the_fewshot_pool(cache_dir) -> None:
    task = _task()
    task.grid_rows = torch.cat([torch.arange(c * 12, c * 12 + 6) for c in range(3)])  # 6 of 12 per class
    res = _run(task)
    # strata (class, on the grid) split in half: grid 3 + 3 per class, pool 6 + 6 per class
    assert res.info["grid_train_test"] == [9, 9] and res.info["fewshot_train_test"] == [18, 18]
    assert set(res.arrays["test_index"].tolist()) <= set(task.grid_rows.tolist())
    assert set(res.arrays["test_index"].tolist()) <= set(res.arrays["fewshot_test_index"].tolist())
    assert res.arrays["pred:native:divide:knn5"].shape == (9,) and res.arrays["fewshot:lr:all"].shape == (1, 18)
    sizes = sorted(FeatureCache().get(k, None)[0].shape[0] for k in _keys(cache_dir))
    assert sizes == [18, 18, 18, 36]  # the reference point (resize16/divide) covers the whole pool
    assert probe_metrics(res.arrays, task.reference) == res.metrics


def _keys(cache_dir) -> list[str]:
    return [p.name.removesuffix(".safetensors") for p in (cache_dir / "features").glob("*.safetensors")]


def test_probe_metrics_by_hand() -> None:
    y = np.array([0, 1, 1, 0], dtype=np.int16)
    arrays = {
        "y": y,
        "pred:native:divide:linear": np.array([0, 1, 1, 1], dtype=np.int16),  # 0.75
        "pred:resize8:divide:linear": np.array([0, 1, 1, 0], dtype=np.int16),  # 1.0
        "pred:resize8:minmax:linear": np.array([1, 0, 1, 1], dtype=np.int16),  # 0.25
        "fewshot_y": np.array([1, 1, 0], dtype=np.int16),  # few-shot probes score the whole pool's test half
        "fewshot:lr:1": np.array([[1, 1, 0], [1, 1, 1]], dtype=np.int16),  # (1 + 2/3) / 2
    }
    m = probe_metrics(arrays, "resize8/divide")
    assert m["swing:linear"] == 0.75 and m["ref:linear"] == 1.0 and m["resize_gain:linear"] == 0.25
    assert m["fewshot_lr@1"] == pytest.approx(5 / 6) and m["linear@resize8/minmax"] == 0.25


def test_splits_and_shot_draws() -> None:
    y = torch.tensor([0] * 10 + [1] * 4 + [2] * 3)
    train, test = stratified_split(y, 0.5, seed=3)
    assert torch.bincount(y[train]).tolist() == [5, 2, 2] and torch.bincount(y[test]).tolist() == [5, 2, 1]
    assert not set(train.tolist()) & set(test.tolist())
    assert torch.equal(stratified_split(y, 0.5, seed=3)[0], train)
    assert not torch.equal(stratified_split(y, 0.5, seed=4)[0], train)
    picks = draw_shots(y[train].numpy(), 2, seed=0)
    assert np.bincount(y[train].numpy()[picks]).tolist() == [2, 2, 2]
    rng = np.random.default_rng(0)
    preds, skipped = fewshot(rng.normal(size=(9, 4)), y[train].numpy(), rng.normal(size=(5, 4)), (1, 3, "all"), 3, 0)
    assert skipped == ["3"] and preds["fewshot:nb:1"].shape == (3, 5)


# -- bands --------------------------------------------------------------------------------------------


def test_band_count_mismatch_is_the_clear_error(cache_dir) -> None:
    task = _task(channels=13, encoder=_tiny_encoder(expect=3))  # e.g. an RGB-only encoder on 13-band data
    with pytest.raises(DataError, match="tiny has 13 bands/channels but the model expects 3"):
        _run(task)
    assert not (cache_dir / "features").exists() or not list((cache_dir / "features").glob("*.safetensors"))


def test_band_statistics_after_the_transform(cache_dir) -> None:
    from harness.protocols.probe import extract

    names = [f"B{i}" for i in range(5)]
    task = _task(channels=5, bands=names)
    x = task.data.x
    stats = (tuple(x.mean((0, 2, 3)).tolist()), tuple(x.std((0, 2, 3), correction=0).tolist()))
    prep = Preprocess.make("native", "dataset", 5, stats)
    method = create_method("frozen")
    ctx = RunContext.create(task, method, torch.device("cpu"), 0)
    model = task.encoder.build(5)[0].eval()
    _, meta = extract(ctx, model, prep, torch.arange(36))
    np.testing.assert_allclose(meta["band_stats"]["mean"], 0.0, atol=1e-5)
    np.testing.assert_allclose(meta["band_stats"]["std"], 1.0, atol=1e-4)
    dead = x.clone()
    dead[:, 3] = 0.5  # band B3 carries nothing
    with pytest.raises(DataError, match=r"band\(s\) B3 \(all 0.5\) have no spread after preprocessing native/divide"):
        extract(RunContext.create(_task(5, x=dead, bands=names), method, torch.device("cpu"), 0), model,
                Preprocess.make("native", "divide", 5), torch.arange(36))
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(DataError, match="NaN or inf"):
        extract(RunContext.create(_task(5, x=bad), method, torch.device("cpu"), 0), model,
                Preprocess.make("native", "divide", 5), torch.arange(36))

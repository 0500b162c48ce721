"""Unlearning metrics: UA/RA/TA, MIA-efficacy, RTE, average gap, margins, KLoM."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import softmax

from harness.metrics._checks import MetricError
from harness.metrics.unlearning import (
    MIA_ATTACKS,
    average_gap,
    klom,
    margins,
    mia_attacks,
    mia_efficacy,
    mia_efficacy_from_confidence,
    mia_features,
    retain_accuracy,
    run_time_efficiency,
    true_class_probability,
    unlearning_accuracy,
)
from harness.metrics.unlearning import test_accuracy as ta_metric


def test_ua_ra_ta() -> None:
    logits = np.array([[3.0, 0.0], [0.0, 3.0], [3.0, 0.0], [3.0, 0.0]])
    y = np.array([0, 1, 1, 1])
    assert unlearning_accuracy(logits, y) == 0.5
    assert retain_accuracy(logits, y) == 0.5
    assert ta_metric([0, 1, 1], [0, 1, 0]) == pytest.approx(2 / 3)


def test_margins_against_loop() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (50, 6))
    y = rng.integers(0, 6, 50)
    expected = [
        logits[i, y[i]] - math.log(sum(math.exp(logits[i, k]) for k in range(6) if k != y[i])) for i in range(50)
    ]
    np.testing.assert_allclose(margins(logits, y), expected, rtol=1e-12)
    np.testing.assert_allclose(margins(torch.tensor(logits), torch.tensor(y)), expected, rtol=1e-12)
    # One binary logit f is the two-class logits (0, f).
    f = rng.normal(size=10)
    yb = rng.integers(0, 2, 10)
    np.testing.assert_allclose(margins(f, yb), margins(np.c_[np.zeros(10), f], yb))


def test_true_class_probability() -> None:
    logits = np.array([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(true_class_probability(logits, [1, 2]), softmax(logits, axis=1)[[0, 1], [1, 2]])
    np.testing.assert_allclose(true_class_probability(np.array([0.0, 2.0]), [0, 0]), [0.5, 1 / (1 + math.e**2)])
    with pytest.raises(MetricError, match="lie in"):
        true_class_probability(logits, [0, 3])


def _confident_logits(rng: np.random.Generator, n: int, y: np.ndarray, gap: float | np.ndarray) -> np.ndarray:
    logits = rng.normal(0, 0.3, (n, 3))
    logits[np.arange(n), y] += gap
    return logits


def test_mia_efficacy_separates_members_from_non_members() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    retain = _confident_logits(rng, 400, y, 8.0)  # members: true-class prob ~1
    test = _confident_logits(rng, 150, y[:150], 0.0)  # non-members: ~1/3
    like_member = _confident_logits(rng, 100, y[:100], 8.0)
    like_test = _confident_logits(rng, 100, y[:100], 0.0)
    args = (retain, y, test, y[:150])
    assert mia_efficacy(*args, like_member, y[:100]) <= 0.05  # forget set still looks trained on
    assert mia_efficacy(*args, like_test, y[:100]) >= 0.95  # forget set looks unseen
    # Seeded subsampling: same seed, same answer.
    mixed = np.r_[like_member[:50], like_test[:50]]
    assert mia_efficacy(*args, mixed, y[:100], seed=3) == mia_efficacy(*args, mixed, y[:100], seed=3)
    assert mia_efficacy(*args, mixed, y[:100]) == pytest.approx(0.5, abs=0.05)


def _song_mittal(p: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """The four scalar features as Song & Mittal's membership_inference_attacks.py computes them, one sample at a
    time (the reference the vectorised ones are checked against)."""
    out: dict[str, list[float]] = {"correctness": [], "confidence": [], "entropy": [], "m_entropy": []}
    for row, label in zip(p, y):
        out["correctness"].append(float(np.argmax(row) == label))
        out["confidence"].append(row[label])
        out["entropy"].append(sum(-v * math.log(v) for v in row if v != 0))
        m = 0.0
        for k, v in enumerate(row):
            if k == label:
                m += -math.log(1e-30) if v == 0 else -(1 - v) * math.log(v)
            else:
                m += -math.log(1e-30) if v == 1 else -v * math.log(1 - v)
        out["m_entropy"].append(m)
    return {k: np.array(v) for k, v in out.items()}


def test_mia_features_match_song_and_mittal() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (40, 5))
    y = rng.integers(0, 5, 40)
    p = softmax(logits, axis=1)
    ref = _song_mittal(p, y)
    for attack in ("correctness", "confidence", "entropy", "m_entropy"):
        f = mia_features(logits, y, attack)
        assert f.shape == (40, 1), attack
        np.testing.assert_allclose(f[:, 0], ref[attack], rtol=1e-12, err_msg=attack)
    np.testing.assert_allclose(mia_features(logits, y, "prob"), p, rtol=1e-12)
    # the edge cases: p_y = 0 and some p_k = 1 (k != y) take log(1e-30); 0 log 0 = 0 in the entropy
    edge = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    ye = np.array([0, 0])
    ref = _song_mittal(edge, ye)
    for attack in ("entropy", "m_entropy", "confidence", "correctness"):
        np.testing.assert_allclose(mia_features(edge, ye, attack, from_probs=True)[:, 0], ref[attack], err_msg=attack)
    with pytest.raises(MetricError, match="unknown MIA attack"):
        mia_features(logits, y, "loss")


def test_mia_attacks_average_subsamples_and_report_their_spread() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    # per-sample true-class gaps that overlap, so members and non-members are hard to tell apart
    retain = _confident_logits(rng, 400, y, rng.normal(2.5, 1.0, 400))
    test = _confident_logits(rng, 150, y[:150], rng.normal(1.8, 1.0, 150))
    forget = _confident_logits(rng, 100, y[:100], rng.normal(2.2, 1.0, 100))
    args = (retain, y, test, y[:150], forget, y[:100])
    out = mia_attacks(*args, seeds=[5, 6, 7, 8])
    assert tuple(out) == MIA_ATTACKS
    for attack, r in out.items():
        assert r.per_subsample.shape == (4,) and 0.0 <= r.mean <= 1.0, attack
        assert r.mean == pytest.approx(r.per_subsample.mean()) and r.sd == pytest.approx(r.per_subsample.std(ddof=1))
    # one subsample per seed, the same as the one-subsample function's at that seed
    assert out["confidence"].per_subsample.tolist() == [mia_efficacy(*args, seed=s) for s in (5, 6, 7, 8)]
    assert out["prob"].per_subsample[1] == mia_efficacy(*args, seed=6, attack="prob")
    # overlapping members and non-members: the subsample matters, and the spread says so
    assert out["confidence"].sd > 0
    assert mia_attacks(*args, seeds=[5, 6, 7, 8])["entropy"].per_subsample.tolist() == \
        out["entropy"].per_subsample.tolist()
    # a cap on the attack's training rows: a different (smaller) subsample
    capped = mia_attacks(*args, seeds=[5], attacks=("confidence",), max_per_side=50)["confidence"]
    assert capped.sd == 0.0 and capped.per_subsample.shape == (1,)
    with pytest.raises(MetricError, match="at least one"):
        mia_attacks(*args, seeds=[])


def test_mia_from_confidence_is_the_confidence_attack() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 300)
    lg = [_confident_logits(rng, n, y[:n], g) for n, g in ((300, 4.0), (120, 1.0), (80, 2.0))]
    conf = [true_class_probability(a, y[:len(a)]) for a in lg]
    args = (lg[0], y, lg[1], y[:120], lg[2], y[:80])
    assert mia_efficacy_from_confidence(*conf, seed=4) == mia_efficacy(*args, seed=4)


def test_rte_and_average_gap() -> None:
    assert run_time_efficiency(30.0, 120.0) == 0.25
    with pytest.raises(MetricError):
        run_time_efficiency(0.0, 10.0)
    m = {"UA": 0.10, "RA": 0.95, "TA": 0.90, "MIA": 0.20, "extra": 5.0}
    r = {"UA": 0.05, "RA": 0.99, "TA": 0.91, "MIA": 0.25}
    assert average_gap(m, r) == pytest.approx((0.05 + 0.04 + 0.01 + 0.05) / 4)
    with pytest.raises(MetricError, match="missing"):
        average_gap({"UA": 0.1}, r)


def brute_klom(p_m: np.ndarray, q_m: np.ndarray, bins: int, eps: float) -> np.ndarray:
    out = []
    for j in range(p_m.shape[1]):
        p_s, q_s = np.clip(p_m[:, j], -100, 100), np.clip(q_m[:, j], -100, 100)
        lo, hi = min(p_s.min(), q_s.min()), max(p_s.max(), q_s.max())
        if hi <= lo:
            hi = lo + 1.0
        p = np.histogram(p_s, bins=bins, range=(lo, hi))[0] / len(p_s)
        q = np.histogram(q_s, bins=bins, range=(lo, hi))[0] / len(q_s)
        out.append(sum(p[b] * math.log(p[b] / max(q[b], eps)) for b in range(bins) if p[b] > 0))
    return np.array(out)


def test_klom_against_histogram_loop() -> None:
    rng = np.random.default_rng(1)
    unl = rng.normal(0, 1, (12, 40)) + np.linspace(0, 3, 40)  # later samples drift from the retrained ones
    ret = rng.normal(0, 1, (9, 40))
    ret[:, 0] = 2.0
    unl[:, 0] = 2.0  # a sample whose margins are all equal: KLoM 0
    ret[:, 1] = 150.0  # clipped at 100
    res = klom(unl, ret, bins=10, eps=1e-5)
    expected = brute_klom(unl, ret, 10, 1e-5)
    np.testing.assert_allclose(res.per_sample, expected, rtol=1e-10, atol=1e-12)
    assert res.per_sample[0] == 0.0
    assert res.mean == pytest.approx(expected.mean())
    assert res.percentiles["p50"] == pytest.approx(np.median(expected))
    # Identical distributions give 0; drifted samples score higher than early ones.
    assert np.all(klom(ret, ret).per_sample == 0)
    assert res.per_sample[-10:].mean() > res.per_sample[2:12].mean()


def test_klom_errors() -> None:
    with pytest.raises(MetricError, match="sample counts"):
        klom(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(MetricError, match="NaN"):
        klom(np.full((3, 4), np.nan), np.zeros((3, 4)))


def test_klom_bins_like_np_histogram_on_tied_margins() -> None:
    # Margins on a 0.1 grid land exactly on bin edges; edges must be np.linspace's, not lo + (hi - lo) * b / bins.
    # P puts 1/2 in bins 0 and 5, Q 1/2 in bins 5 and 19: KLoM = 1/2 log(0.5 / eps) ~ 5.41 (the old edges: 10.82)
    assert klom([[-1.6], [-0.6]], [[2.4], [-0.4]]).mean == pytest.approx(0.5 * math.log(0.5 / 1e-5), rel=1e-12)
    np.testing.assert_allclose(klom([[-1.6], [-0.6]], [[2.4], [-0.4]]).per_sample,
                               brute_klom(np.array([[-1.6], [-0.6]]), np.array([[2.4], [-0.4]]), 20, 1e-5))
    rng = np.random.default_rng(5)
    unl = rng.integers(-30, 30, (7, 300)) / 10.0
    ret = rng.integers(-30, 30, (5, 300)) / 10.0
    for bins in (20, 7):
        np.testing.assert_allclose(klom(unl, ret, bins=bins).per_sample, brute_klom(unl, ret, bins, 1e-5),
                                   rtol=1e-12, atol=0)

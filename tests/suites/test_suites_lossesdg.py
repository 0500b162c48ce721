"""The losses suite's EnsLoss-regime cases, the shift suite's DomainBed ColoredMNIST and pretrained PACS cases,
their generated findings, and the plugin's per-case seed count and smoke caveat."""

from __future__ import annotations

import json
import math

import pytest
import torch

from harness.protocols.probe import FeatureCache
from harness.reporting.suites import losses as losses_report
from harness.reporting.suites import shift as shift_report
from harness.suites import losses, shift

# -- case definitions (no data) -------------------------------------------------


def test_ensloss_regime_cases_follow_the_reference_protocol():
    for profile in ("smoke", "standard", "full"):
        cifar = [s for s in losses.case_specs(profile) if losses.is_regime_case(s.case)]
        assert {s.params["noise"] for s in cifar} == {0.0, 0.2}
        for spec in cifar:
            b = spec.budget
            assert (b.optimizer, b.momentum, b.weight_decay, b.schedule, b.selection, b.batch_size) == \
                ("sgd", 0.9, 5e-4, "cosine", "last", 128)
    standard = {s.case for s in losses.case_specs("standard")}
    assert {"cifar3v5-noise0", "cifar3v5-noise0.2", "cifar1v9-noise0", "cifar1v9-noise0.2"} <= standard


def test_shift_cases_cmnist_and_pretrained_pacs():
    smoke = {s.case: s for s in shift.case_specs("smoke")}
    standard = {s.case: s for s in shift.case_specs("standard")}
    full = {s.case: s for s in shift.case_specs("full")}
    assert {"cmnist-plus90", "cmnist-plus80", "cmnist-minus90"} <= set(standard)
    assert "cmnist-minus90" in smoke and "pacs_pretrained-sketch" in smoke
    pretrained = [s for c, s in full.items() if c.startswith("pacs_pretrained-")]
    assert sorted(s.params["test"][0] for s in pretrained) == sorted(shift.PACS_DOMAINS)
    assert all(s.default_seeds == 5 and s.params["pretrained"] for s in pretrained)
    assert smoke["pacs_pretrained-sketch"].default_seeds is None  # smoke stays one seed
    # default_seeds is not part of the fingerprint: records do not go stale when a case asks for more seeds
    import dataclasses

    spec = full["pacs_pretrained-photo"]
    assert dataclasses.replace(spec, default_seeds=None).fingerprint == spec.fingerprint


def test_shift_standard_cases_and_reproductions():
    standard = {s.case: s for s in shift.case_specs("standard")}
    # every declared reproduction is a standard case, with a reason
    reasons = shift_report.REPRODUCTIONS
    assert set(reasons) <= set(standard) and all(len(r) > 40 for r in reasons.values())
    # PACS and RSSCN7 run on frozen ImageNet features at standard; end-to-end image cases only at smoke and full
    frozen = [s for c, s in standard.items() if s.params["model"] == "frozen_mlp"]
    assert sorted(s.case for s in frozen) == sorted([f"pacs_frozen-{d}" for d in shift.PACS_DOMAINS]
                                                     + ["rsscn7_frozen-scale"])
    assert not any(c.startswith(("pacs-", "pacs_pretrained-", "digits_embedded-", "rsscn7-")) for c in standard)
    full = {s.case for s in shift.case_specs("full")}
    assert {"pacs-sketch", "pacs_pretrained-sketch", "rsscn7-scale", "digits_embedded-digits"} <= full


# -- cases built on data ---------------------------------------------------------


def test_cmnist_environments_as_domainbed():
    spec = {s.case: s for s in shift.case_specs("standard")}["cmnist-plus90"]
    task = spec.build(spec)
    data = task.data
    assert data.x.shape[1] == 2  # red/green channels, as DomainBed
    colour = data.x.flatten(2).sum(2).argmax(1)
    digit_label = (data.meta["digit"] >= 5).long()
    names = data.domain_names
    for env, agree in (("env0_p0.90", 0.9), ("env1_p0.80", 0.8), ("env2_p0.10", 0.1)):
        in_env = data.domain == names.index(env)
        assert abs(float((colour[in_env] == data.y[in_env]).float().mean()) - agree) < 0.04, env
        assert abs(float((data.y[in_env] != digit_label[in_env]).float().mean()) - 0.25) < 0.04, env
    assert names[-1] == "env0_p0.90" and task.num_domains == 2  # the held-out environment comes last
    assert task.primary_metric == "ood_acc" and any("DomainBed" in n for n in task.notes)


def test_frozen_pacs_case_trains_a_head_on_cached_features(real_data_root):
    spec = {s.case: s for s in shift.case_specs("smoke")}["pacs_frozen-sketch"]
    task = spec.build(spec)
    used = torch.cat([v.indices for v in task.splits.values()])
    assert task.data.x.shape[1] == 1280 and task.data.x[used].abs().sum(1).gt(0).float().mean() > 0.99  # a blank
    # image can pool to all zeros (one smoke sketch does)
    assert len(task.info["frozen_encoder"]["sha256"]) == 64 and any("frozen features" in n for n in task.notes)
    model = task.model_factory()
    assert model(task.data.x[used[:3]]).shape == (3, 7) and model.n_features == shift.FROZEN_HIDDEN
    key = task.info["frozen_encoder"]["cache_key"]
    extracted = FeatureCache.extractions[key]
    again = spec.build(spec)  # read back from the cache: same features, same fingerprint, nothing recomputed
    assert torch.equal(again.data.x, task.data.x) and again.data.fingerprint == task.data.fingerprint
    assert FeatureCache.extractions[key] == extracted


def test_pretrained_pacs_case_uses_the_weights_normalisation(real_data_root):
    spec = {s.case: s for s in shift.case_specs("smoke")}["pacs_pretrained-sketch"]
    task = spec.build(spec)
    assert task.normalize == ((127 / 255,) * 3, (128 / 255,) * 3)
    assert len(task.info["pretrained"]["sha256"]) == 64 and any("ImageNet weights" in n for n in task.notes)
    model = task.model_factory()
    assert model.pretrained_info["sha256"] == task.info["pretrained"]["sha256"]


def test_cifar_regime_case_splits_and_noise(real_data_root):
    spec = {s.case: s for s in losses.case_specs("standard")}["cifar3v5-noise0.2"]
    task = spec.build(spec)
    assert len(task.splits["train"]) == 2000 and len(task.splits["test"]) == 2000 and "val" not in task.splits
    assert 350 < task.data.meta["flipped"] < 450  # 20% of the training labels, test labels clean
    assert task.normalize == ((0.5,) * 3, (0.5,) * 3) and task.selection_rule.startswith("none: the last epoch")
    assert task.data.classes == ["cat", "dog"]


# -- findings from synthetic records ------------------------------------------------


def record(suite: str, case: str, method: str, values: dict[str, list[float]], seeds: list[int] | None = None,
           primary: str = "test_acc") -> dict:
    seeds = seeds or list(range(len(next(iter(values.values())))))
    return {"suite": suite, "case": case, "method": method, "status": "ok", "hparam_overrides": {}, "seeds": seeds,
            "primary_metric": primary, "higher_is_better": True,
            "metrics": {k: {"per_seed": v, "mean": sum(v) / len(v), "higher_is_better": True}
                        for k, v in values.items()}}


def regime_records(ensloss_gain: float) -> list[dict]:
    recs = []
    for i, case in enumerate(["cifar3v5-noise0", "cifar3v5-noise0.2", "cifar1v9-noise0", "cifar1v9-noise0.2"]):
        for method in ("bce", "hinge", "exponential", "ensloss"):
            base = 0.7 + 0.02 * i + (ensloss_gain if method == "ensloss" else 0.0)
            accs = [base + 0.003 * s for s in range(3)]
            recs.append(record("losses", case, method, {"test_acc": accs, "train_acc": [1.0] * 3,
                                                        "gap": [1.0 - a for a in accs]}))
    return recs


def test_losses_findings_state_whether_the_claim_holds():
    better = losses_report.findings(regime_records(0.02))
    assert any("holds on these cases" in line for line in better), better
    assert any("Friedman" in line and "ensloss 1.00" in line for line in better)
    assert any("mean train accuracy of 1.000" in line for line in better)
    worse = losses_report.findings(regime_records(-0.02))
    assert any("is contradicted on these cases: EnsLoss is worse than bce, hinge, exponential" in line
               for line in worse)
    # no difference at all: not established, never "does not hold"
    same = losses_report.findings(regime_records(0.0))
    assert any("is not established on these cases" in line for line in same)
    assert not any("does not hold" in line for lines in (better, worse, same) for line in lines)
    ensloss_vs_bce = next(line for line in better if "ensloss − bce on test_acc" in line)
    assert "mean Δ +0.0200 over 4 case(s)" in ensloss_vs_bce and "12 case×seed pairs, Holm over 3" in ensloss_vs_bce
    # 4 cases cannot reach Holm's level for the across-cases claim; 3 seeds cannot for the per-case rule, so no
    # per-case tally is written (it would be true by construction)
    assert "across cases (exact sign-flip on case means, Holm over 3): too few cases to claim (needs ≥ 7)" \
        in ensloss_vs_bce and "per case" not in ensloss_vs_bce


def test_shift_findings_quote_domainbed_and_judge_behaviour():
    recs = []
    ours = {"erm": (0.70, 0.72, 0.10), "irm": (0.70, 0.72, 0.11), "vrex": (0.60, 0.72, 0.40)}
    for method, accs in ours.items():
        for env, acc in zip(shift.CMNIST_ENVS, accs):
            recs.append(record("shift", f"cmnist-{env}", method, {"ood_acc": [acc] * 3, "oracle_ood_acc": [acc] * 3},
                               primary="ood_acc"))
    lines = shift_report.findings(recs)
    assert any("ERM +90% 71.7 ± 0.1" in line and "IRM +90% 72.5 ± 0.1" in line and "results.tex" in line
               for line in lines)
    irm = next(line for line in lines if "training-domain validation, ood_acc), irm" in line)
    assert "as published" in irm and "not as published" not in irm
    vrex = next(line for line in lines if "training-domain validation, ood_acc), vrex" in line)
    assert "not as published" in vrex


def test_shift_findings_pretrained_and_unlabeled_methods():
    recs = []
    for held in shift.PACS_DOMAINS:
        for method, base in (("erm", 0.6), ("sam", 0.61), ("udim", 0.63), ("dann", 0.55)):
            recs.append(record("shift", f"pacs_pretrained-{held}", method,
                               {"ood_acc": [base + 0.01 * s for s in range(5)]}, primary="ood_acc"))
    lines = shift_report.findings(recs)
    udim = next(line for line in lines if "UDIM against SAM" in line)
    assert "udim − sam on ood_acc: mean Δ +0.0200 over 4 case(s)" in udim
    assert "on these cases, udim against sam: better; across cases: too few cases to claim (needs ≥ 6)" in udim
    assert any(line.startswith("Pretrained PACS") and "dann − erm" in line and "Holm over 3" in line
               for line in lines)
    dann = next(line for line in lines if line.startswith("Unlabeled target data") and "dann" in line)
    assert "on these cases, dann against erm: worse" in dann


# -- plugin -------------------------------------------------------------------------

SEEDED_SUITE = '''
import dataclasses
import types

from harness.suites import losses

SUITE = types.SimpleNamespace(NAME="losses", case_specs=lambda profile: [
    dataclasses.replace(s, default_seeds=2) for s in losses.case_specs(profile) if s.case == "breast_cancer-noise0"])


def test_seeded(harness_case, benchmark):
    harness_case.run(benchmark)
'''


def test_plugin_honours_a_case_seed_count_and_says_smoke_is_no_measurement(pytester, tmp_path):
    pytester.makepyfile(test_seeded=SEEDED_SUITE)
    result = pytester.runpytest("--method=bce", f"--results-dir={tmp_path / 'a'}", "--benchmark-disable")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*smoke numbers check the plumbing*not measurements*"])
    rec = json.loads(next((tmp_path / "a").rglob("*.json")).read_text())
    assert rec["seeds"] == [0, 1]
    pytester.runpytest("--method=bce", "--seeds=1", f"--results-dir={tmp_path / 'b'}", "--benchmark-disable")
    assert json.loads(next((tmp_path / "b").rglob("*.json")).read_text())["seeds"] == [0]


def test_smoke_caveat_absent_from_other_profiles():
    from harness.plugin import pytest_terminal_summary

    class Reporter:
        lines: list[str] = []
        stats: dict = {}

        def section(self, title):
            self.lines.append(title)

        def write_line(self, line):
            self.lines.append(line)

    from types import SimpleNamespace

    from harness.plugin import RESULTS_KEY
    from harness.running.runner import CaseResult

    rec = {"suite": "s", "case": "c", "method": "m", "primary_metric": "a", "profile": "standard", "status": "ok",
           "seeds": [0], "metrics": {"a": {"mean": 0.5, "std": math.nan}}, "timing": {"step_time_median_s": None}}
    config = SimpleNamespace(stash={RESULTS_KEY: [CaseResult(rec, None)]}, option=SimpleNamespace(reportchars=""))
    reporter = Reporter()
    pytest_terminal_summary(reporter, 0, config)
    assert not any("smoke numbers" in line for line in reporter.lines)
    rec["profile"] = "smoke"
    pytest_terminal_summary(reporter, 0, config)
    assert any("smoke numbers" in line for line in reporter.lines)


@pytest.fixture(autouse=True)
def _data_env(monkeypatch, request):
    if "real_data_root" in request.fixturenames:
        monkeypatch.setenv("HARNESS_DATA", str(request.getfixturevalue("real_data_root")))
    yield
    shift._load.cache_clear()  # in-process pytester runs after this one must not see data loaded here

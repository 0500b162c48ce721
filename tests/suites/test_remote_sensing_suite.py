"""The remote-sensing suite: case lists, SSL encoder discovery, a user's multispectral folder, supervised builds,
findings and figures (on a SYNTHETIC smoke case, which needs no data folder)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from harness.core.registry import create_method
from harness.errors import DataError, UsageError
from harness.reporting.suites import remote_sensing as rs_report
from harness.running.runner import run_case
from harness.suites import remote_sensing as rs
from harness.suites.imagefolder import folder_slug
from tests.factories import FakeSSLSuite, stored_encoder


def _spec(case: str, profile: str = "smoke", datasets: list[str] | None = None):
    return next(s for s in rs.case_specs(profile, datasets) if s.case == case)


def test_case_lists_mix_protocols_and_label_synthetic(cache_dir) -> None:  # no SSL encoders cached
    specs = rs.case_specs("smoke")
    probe = {s.case for s in specs if s.protocol == "probe"}
    supervised = {s.case for s in specs if s.protocol == "supervised"}
    assert probe == {f"probe-{d}-{e}" for d in ("eurosat", "rsscn7", "SYNTHETIC-ms") for e in ("random", "lite0")}
    assert supervised == {"rsscn7-scale", "eurosat", "SYNTHETIC-ms-haze"}
    assert all("SYNTHETIC" in s.case for s in specs if "synthetic_ms" in str(s.params) or "SYNTHETIC" in s.case)
    std = _spec("probe-eurosat-lite0", "standard")
    assert std.params["sizes"] == ["native", 64, 128, 224] and std.params["norms"] == [
        "divide", "dataset", "imagenet", "minmax"]
    assert std.params["shots"] == [1, 2, 5, 10, 20, 50, "all"]
    assert std.fingerprint != _spec("probe-eurosat-random", "standard").fingerprint


def test_leaderboard_finds_the_spec_of_builtin_and_user_records(tmp_path) -> None:
    spec = _spec("probe-rsscn7-lite0", "standard")
    record = {"profile": "standard", "case": spec.case, "task": spec.describe()}
    assert rs.spec_for_record(record).fingerprint == spec.fingerprint
    assert rs.spec_for_record({**record, "case": "probe-gone-lite0"}) is None
    gone = {**record, "case": "probe-user-ms-x-lite0", "task": {"params": {"path": str(tmp_path / "x"), "bands": "ms"}}}
    assert rs.spec_for_record(gone) is None


def test_erm_skips_probe_cases_and_frozen_skips_supervised() -> None:
    from harness.errors import Unsupported

    with pytest.raises(Unsupported, match="no 'probe' protocol part"):
        create_method("erm").check_protocol(_spec("probe-eurosat-lite0").protocol)
    with pytest.raises(Unsupported, match="no 'supervised' protocol part"):
        create_method("frozen").check_protocol(_spec("eurosat").protocol)


def _conv(in_chans: int) -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(in_chans, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _stored(tmp_path: Path, name: str, **info) -> types.SimpleNamespace:
    return stored_encoder(tmp_path / f"{name.replace('/', '_')}.safetensors", name,
                          load=lambda: _conv(info.get("in_chans", 3)), **info)


def test_ssl_encoders_are_discovered_from_the_ssl_suite_store(monkeypatch, tmp_path, cache_dir, real_data_root) -> None:
    monkeypatch.setenv("HARNESS_DATA", str(real_data_root))
    fake = FakeSSLSuite([
        _stored(tmp_path, "simclr/eurosat/smoke/seed0", dataset="eurosat", method="simclr"),
        _stored(tmp_path, "byol/rsscn7-fine-to-coarse/smoke/seed0", dataset="rsscn7", method="byol"),
        _stored(tmp_path, "byol/eurosat/smoke/seed1", dataset="eurosat"),  # first seed only
        _stored(tmp_path, "dino/cifar10/smoke/seed0", dataset="cifar10"),  # not remote sensing
        types.SimpleNamespace(name="broken", info={}),
    ])
    monkeypatch.setitem(sys.modules, "harness.suites.ssl", fake)
    with pytest.warns(UserWarning, match="ignoring SSL encoder entry"):
        cases = {s.case for s in rs.case_specs("smoke") if "-ssl-" in s.case}
    assert fake.asked == ["smoke"]
    assert cases == {f"probe-{d}-ssl-{e}" for d in ("eurosat", "rsscn7")
                     for e in ("simclr-eurosat-smoke-seed0", "byol-rsscn7-fine-to-coarse-smoke-seed0")}
    with pytest.warns(UserWarning):
        spec = _spec("probe-eurosat-ssl-simclr-eurosat-smoke-seed0")
        record = run_case(spec, create_method("frozen"), [0], torch.device("cpu")).record
    assert spec.params["ssl"] == fake.entries[0].identity  # what trained it, not the weights' bytes or the code
    enc = record["task_info"]["encoder"]
    assert record["status"] == "ok" and enc["method"] == "simclr" and enc["case"] == "eurosat"


def test_without_an_ssl_suite_only_builtin_encoders(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "harness.suites.ssl", None)  # import fails as if the module were absent
    assert rs.ssl_encoders() == []
    assert {s.params.get("encoder") for s in rs.case_specs("smoke") if s.protocol == "probe"} == {"random", "lite0"}


def _ms_folder(root: Path, bands: int = 13) -> Path:
    import tifffile

    rng = np.random.default_rng(0)
    for c, level in (("Forest", 800), ("SeaLake", 2500)):
        (root / c).mkdir(parents=True)
        for i in range(6):
            a = rng.integers(level - 300, level + 300, (16, 16, bands)).astype(np.uint16)
            tifffile.imwrite(root / c / f"{c}_{i + 1}.tif", a)
    return root


def test_users_multispectral_folder_runs_with_adapted_stem(tmp_path, cache_dir) -> None:
    root = _ms_folder(tmp_path / "my_ms")
    specs = [s for s in rs.case_specs("smoke", [f"eurosat_ms:{root}", "imagefolder:/elsewhere"])
             if s.case.startswith("probe-user")]
    slug = folder_slug(root)
    assert {s.case for s in specs} == {f"probe-user-ms-{slug}-random", f"probe-user-ms-{slug}-lite0"}
    lite0 = next(s for s in specs if s.params["encoder"] == "lite0")
    record = run_case(lite0, create_method("frozen"), [0], torch.device("cpu")).record
    info = record["task_info"]
    assert info["encoder"]["in_chans"] == 13 and info["encoder"]["stem"] == "timm adapt_input_conv"
    assert len(info["encoder"]["sha256"]) == 64 and len(info["bands"]) == 13
    assert len(record["run"]["band_stats_reference"][0]["std"]) == 13
    assert rs.spec_for_record(record).fingerprint == record["fingerprint"]
    with pytest.raises(UsageError, match="is not a folder"):
        rs.case_specs("smoke", [f"eurosat_ms:{tmp_path / 'missing'}"])


def test_users_folder_with_the_wrong_band_count_is_a_clear_error(tmp_path, cache_dir) -> None:
    root = _ms_folder(tmp_path / "four_band", bands=4)
    spec = _spec(f"probe-user-ms-{folder_slug(root)}-random", datasets=[f"eurosat_ms:{root}"])
    with pytest.raises(DataError, match=r"expected 13 bands"):
        run_case(spec, create_method("frozen"), [0], torch.device("cpu"))


def test_supervised_synthetic_case_trains_on_clear_and_tests_on_haze(cache_dir) -> None:
    task = _spec("SYNTHETIC-ms-haze").build(_spec("SYNTHETIC-ms-haze"))
    assert task.protocol == "supervised" and task.data.x.shape[1] == 13 and len(task.normalize[0]) == 13
    names = task.data.domain_names
    assert names == ["clear", "haze"] and task.num_domains == 1
    assert set(task.data.domain[task.splits["train"].indices].tolist()) == {0}
    assert set(task.data.domain[task.splits["test"].indices].tolist()) == {1}
    assert any("SYNTHETIC" in n for n in task.notes)


@pytest.fixture(scope="module")
def synthetic_records(tmp_path_factory) -> list[dict]:
    """Two seeds of the SYNTHETIC random-encoder probe case (embedded data: runs anywhere)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HARNESS_CACHE", str(tmp_path_factory.mktemp("cache")))
    try:
        spec = _spec("probe-SYNTHETIC-ms-random")
        record = run_case(spec, create_method("frozen"), [0, 1], torch.device("cpu")).record
    finally:
        mp.undo()
    return [record]


def test_synthetic_probe_record(synthetic_records) -> None:
    rec = synthetic_records[0]
    assert rec["status"] == "ok" and rec["task_info"]["synthetic"] is True
    assert rec["notes"][0].startswith("SYNTHETIC data")
    assert rec["run"]["features_reused"][1] == rec["run"]["features_computed"][0] > 0  # seed 2 used the cache
    assert rec["metrics"]["swing:linear"]["higher_is_better"] is False
    assert rec["metrics"]["ref:linear"]["higher_is_better"] is True
    assert len(rec["metrics"]["ref:linear"]["per_seed"]) == 2


def test_findings_report_swing_and_crossover(synthetic_records) -> None:
    lines = rs_report.findings(synthetic_records)
    assert len(lines) == 1 and "accuracy swing" in lines[0] and "Few-shot:" in lines[0]
    rec = synthetic_records[0]
    assert f"linear {rec['metrics']['swing:linear']['mean'] * 100:.1f}" in lines[0]


def test_crossover_rule() -> None:
    def rec(lr: list[float], nb: list[float]) -> dict:
        shots = [1, 2, 5, "all"]
        metrics = {f"fewshot_lr@{s}": {"mean": v} for s, v in zip(shots, lr)}
        metrics.update({f"fewshot_nb@{s}": {"mean": v} for s, v in zip(shots, nb)})
        return {"task": {"params": {"shots": shots}}, "metrics": metrics}

    assert "overtakes naive Bayes at 5 shots" in rs_report.crossover(rec([0.2, 0.5, 0.8, 0.9], [0.3, 0.5, 0.6, 0.7]))
    assert "ahead of naive Bayes from 1 shot" in rs_report.crossover(rec([0.4, 0.5, 0.8, 0.9], [0.3, 0.4, 0.6, 0.7]))
    assert "does not overtake" in rs_report.crossover(rec([0.4, 0.5, 0.8, 0.6], [0.3, 0.4, 0.6, 0.7]))


def test_resize_finding_against_the_seed_paper() -> None:
    native = {"per_seed": [0.80, 0.82, 0.81], "mean": 0.81}
    resized = {"per_seed": [0.90, 0.91, 0.93], "mean": 0.913}
    rec = {"case": "probe-eurosat-lite0", "task_info": {"reference": "resize224/imagenet"},
           "metrics": {"knn5@native/imagenet": native, "knn5@resize224/imagenet": resized}}
    line = rs_report._resize_finding(rec)
    assert "Δ +10.3 points" in line and "holds here" in line and "does not" not in line
    resized["per_seed"] = [0.81, 0.80, 0.83]
    assert "is not established here" in rs_report._resize_finding(rec)


def test_ssl_encoders_are_summarised_per_probe_set_not_one_line_each() -> None:
    """48 SSL-encoder probes would bury the built-in encoders' lines: one summary per probe set, counted against
    the untrained encoder of the same pretraining case, plus one resize line."""
    def probe(method: str, pretrained_on: str, acc: float, gain: float) -> dict:
        return {"case": f"probe-eurosat-ssl-{method}-{pretrained_on}-standard-seed0", "status": "ok", "seeds": [0, 1],
                "task": {"params": {"data": "eurosat", "encoder": f"ssl-{method}-{pretrained_on}-standard-seed0",
                                    "ssl": {"method": method, "case": pretrained_on}}},
                "task_info": {"reference": "resize224/imagenet"},
                "metrics": {"ref:linear": {"mean": acc}, "swing:linear": {"mean": 0.1},
                            "knn5@native/imagenet": {"per_seed": [0.5, 0.5]},
                            "knn5@resize224/imagenet": {"per_seed": [0.5 + gain, 0.5 + gain]}}}

    recs = [probe("random-init", "eurosat", 0.50, -0.01), probe("simclr", "eurosat", 0.60, 0.06),
            probe("byol", "eurosat", 0.40, -0.02), probe("random-init", "rsscn7", 0.55, 0.01),
            probe("simclr", "rsscn7", 0.58, 0.01)]
    lines = rs_report.findings(recs)
    assert len(lines) == 2 and not any(line.startswith("`probe-") for line in lines)
    assert "5 cases: 3 SSL methods pretrained on eurosat, rsscn7" in lines[0]
    assert "from 0.400 (byol pretrained on eurosat) to 0.600 (simclr pretrained on eurosat)" in lines[0]
    assert "above the untrained encoder (random-init) of the same pretraining case in 2 of 3" in lines[0]
    assert "positive in 3" in lines[1] and "holds on 1 of 5" in lines[1]  # simclr/eurosat: +6 points, every seed


def test_figures_write_pngs(synthetic_records, tmp_path) -> None:
    made = rs_report.figures(synthetic_records, tmp_path / "figs")
    kinds = sorted(title.split(": ")[1].split(" (")[0] for title, _ in made)
    assert kinds == ["few-shot curves", "preprocessing grid"]
    for _, path in made:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert rs_report.figures([], tmp_path / "empty") == []

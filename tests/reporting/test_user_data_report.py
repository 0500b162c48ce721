"""Issue 29 item 6: report pages for a user's data (class counts, chance and majority baselines, per-class accuracy,
confusion matrices) and one summary row per encoder in remote sensing."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness import cli
from harness.core.digest import REPO
from harness.core.registry import create_method
from harness.data.userfolder import prepare
from harness.records import iter_records, load_evidence
from harness.reporting import site
from harness.reporting.suites.imagefolder import baselines
from harness.running.runner import run_case
from harness.suites import imagefolder


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """One smoke record of erm on an uneven three-class folder with a clutter class left out and a corrupt file."""
    base = tmp_path_factory.mktemp("userdata")
    mp = pytest.MonkeyPatch()
    mp.setenv("HARNESS_CACHE", str(base / "cache"))
    rng = np.random.default_rng(0)
    for c, (name, n) in enumerate([("cat", 24), ("dog", 12), ("owl", 8)]):
        (base / "pets" / name).mkdir(parents=True)
        for i in range(n):
            arr = np.clip(rng.normal(40 + 80 * c, 25, (12, 12, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(base / "pets" / name / f"{i}.png")
    (base / "pets" / "clutter").mkdir()
    (base / "pets" / "owl" / "bad.png").write_bytes(b"corrupt")
    value = prepare(f"imagefolder:{base / 'pets'},exclude=clutter,name=pets,skip_corrupt").value
    (spec,) = imagefolder.case_specs("smoke", datasets=[value])
    run_case(spec, create_method("erm"), [0, 1], torch.device("cpu"), base / "results")
    yield base / "results"
    mp.undo()


def test_baselines():
    assert baselines({"train": [10, 30, 5], "test": [2, 6, 1]}) == (1 / 3, 6 / 9, 1)


def test_the_report_describes_the_data(results):
    ((path, rec),) = iter_records(results)
    report = site.build(results, profiles=None, include_stale=True)
    (sec,) = [s for s in report.sections if s.name == "imagefolder"]
    (title, table, note), (mtitle, matrix) = sec.tables
    assert "the data" in title and list(table["class"]) == ["cat", "dog", "owl"]
    counts = rec["task_info"]["split_counts"]
    assert list(table["test"]) == counts["test"] and list(table["train"]) == counts["train"]
    chance, majority, _ = baselines(counts)
    assert f"Chance {chance:.3f}; majority baseline {majority:.3f} (always 'cat'" in note
    assert "left out: clutter" in note and "1 undecodable file(s) skipped" in note
    # per-class accuracy and the confusion matrix agree with the evidence
    arrays = load_evidence(path, rec)
    y = np.concatenate([a["test.y"] for a in arrays.values()])
    p = np.concatenate([a["val:test.pred"] for a in arrays.values()])
    assert "summed over 2 seeds" in mtitle and "confusion matrix" in mtitle
    m = matrix.set_index("true class").to_numpy()
    assert m.sum() == len(y) == 2 * sum(counts["test"]) and np.trace(m) == int((y == p).sum())
    per_seed = [[(a["val:test.pred"][a["test.y"] == c] == c).mean() for c in range(3)] for a in arrays.values()]
    assert list(table["erm: test acc"]) == [f"{v:.3f}" for v in np.mean(per_seed, axis=0)]


def test_report_markdown_and_site_show_it(results, tmp_path, capsys):
    assert cli.main(["report", str(results), "--html", str(tmp_path / "site"), "--output",
                     str(tmp_path / "site" / "report.md")]) == 0
    md = (tmp_path / "site" / "report.md").read_text()
    assert "`: the data" in md and "majority baseline" in md and "| true class" in md
    page = (tmp_path / "site" / "imagefolder.html").read_text()
    assert "majority baseline" in page and "confusion matrix" in page


def test_remote_sensing_summary_has_a_row_per_encoder(tmp_path):
    """The committed probe records of the random and the ImageNet encoder: one summary row each, never one mean."""
    results = tmp_path / "results"
    for case in ("probe-eurosat-random", "probe-eurosat-lite0", "probe-SYNTHETIC-ms-random",
                 "probe-SYNTHETIC-ms-lite0"):
        src = REPO / "results" / "remote_sensing" / case
        if src.is_dir():
            shutil.copytree(src, results / "remote_sensing" / case)
    recs = [r for _, r in iter_records(results) if r["profile"] == "standard"]
    encoders = {r["task"]["params"]["encoder"] for r in recs}
    if encoders != {"random", "lite0"}:
        pytest.skip("the committed remote-sensing probe records are not here")
    report = site.build(results, profiles=("standard",), include_stale=True)
    (sec,) = [s for s in report.sections if s.name == "remote_sensing"]
    rows = set(sec.summary["method"])
    assert {"frozen [random]", "frozen [lite0]"} <= rows and "frozen" not in rows
    metric = next(c for c in sec.summary.columns if "mean ± sem" in c)
    for enc in ("random", "lite0"):
        mine = [r for r in recs if r["task"]["params"]["encoder"] == enc]
        mean = np.mean([r["metrics"][r["primary_metric"]]["mean"] for r in mine])
        cell = sec.summary.loc[sec.summary["method"] == f"frozen [{enc}]", metric].item()
        assert cell.startswith(f"{mean:.4f}"), (enc, cell)

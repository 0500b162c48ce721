"""The leaderboard as a summary plus per-suite pages, the static HTML site, `harness report`, records.to_frame,
and the headless-browser site check (.ci/site_check.py)."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from harness import cli, records
from harness.core.digest import REPO
from harness.records.manifest import file_sha256, write_manifest
from harness.reporting import site
from harness.reporting.suites import reproductions
from harness.suites import losses
from tests.factories import make_record, rendered, write

CASES = ("mnist3v5-noise0", "mnist3v5-noise0.2")
# per case: ensloss best, bce middle, hinge worst (5 seeds: the losses suite's standard count)
SCORES = {"ensloss": [0.86, 0.87, 0.88, 0.86, 0.87], "bce": [0.80, 0.81, 0.82, 0.80, 0.81],
          "hinge": [0.70, 0.72, 0.71, 0.70, 0.71]}


def fixture_results(root: Path) -> Path:
    results = root / "results"
    for case in CASES:
        for method, values in SCORES.items():
            write(results, make_record(case, method, values))
    return results


def site_check_module():
    spec = importlib.util.spec_from_file_location("site_check", REPO / ".ci" / "site_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_markdown_summary_and_suite_pages(tmp_path):
    results = fixture_results(tmp_path)
    out = tmp_path / "leaderboard.md"
    site.write_markdown(results, out)
    page = tmp_path / "docs" / "leaderboard" / "losses.md"
    assert page.is_file()
    summary = out.read_text()
    # the summary ranks the methods, best first, with absolute scores, and links the suite page
    rows = [line for line in summary.splitlines() if re.match(r"\| \d", line)]
    assert [r.split("|")[2].strip() for r in rows] == ["ensloss", "bce", "hinge"]
    ranked = len(losses.case_specs("standard")) - len(reproductions("losses"))  # coverage counts ranked cases
    assert "0.8680 ± " in rows[0] and f"2 / {ranked}" in rows[0]
    assert "(docs/leaderboard/losses.md#losses-standard)" in summary
    assert "### losses / `mnist3v5-noise0`" not in summary  # per-case tables live on the suite page
    text = page.read_text()
    assert "### losses / `mnist3v5-noise0`" in text and "p (Holm)" in text and "(../../leaderboard.md)" in text
    assert "(../figures/losses/standard/pareto-step-time.png)" in text
    assert (tmp_path / "docs" / "figures" / "losses" / "standard" / "pareto-step-time.png").is_file()
    assert site.check_markdown(results, out)
    # --check covers the suite pages and their figures too
    page.write_text(text.replace("ensloss", "ENSLOSS"))
    assert any("docs/leaderboard/losses.md differs" in p for p in site.markdown_problems(results, out))
    page.unlink()
    assert any("losses.md does not exist" in p for p in site.markdown_problems(results, out))
    site.write_markdown(results, out)
    (tmp_path / "docs" / "figures" / "losses" / "standard" / "pareto-step-time.png").unlink()
    assert any("figure" in p and "missing" in p for p in site.markdown_problems(results, out))
    site.write_markdown(results, out)
    (page.parent / "gone.md").write_text("old")
    assert any("gone.md is not generated" in p for p in site.markdown_problems(results, out))
    site.write_markdown(results, out)  # removes the orphan page
    assert not (page.parent / "gone.md").exists() and site.check_markdown(results, out)


def test_html_site(tmp_path):
    results = fixture_results(tmp_path)
    assert cli.main(["leaderboard", "--results-dir", str(results), "--html", str(tmp_path / "site")]) == 0
    index = (tmp_path / "site" / "index.html").read_text()
    suite = (tmp_path / "site" / "losses.html").read_text()
    assert re.search(r"<table [^>]*class=\"[^\"]*sortable[^\"]*\" id=\"summary-losses-standard\">", index)
    assert 'querySelectorAll("table.sortable th")' in index and "<script src" not in index  # inline, offline
    body = index.split('id="summary-losses-standard"', 1)[1].split("</table>", 1)[0]
    assert [m for m in re.findall(r"<td>([a-z]+)</td>", body) if m in SCORES] == ["ensloss", "bce", "hinge"]
    assert 'href="losses.html#losses-standard"' in index
    for case in CASES:
        assert f'id="losses-standard-{case}"' in suite
    images = re.findall(r'<img src="([^"]+)"', suite)
    assert images and all((tmp_path / "site" / src).is_file() for src in images)
    assert "http://" not in index + suite and "https://" not in index + suite  # nothing fetched from a CDN


def test_single_row_cases_merge_into_one_table():
    def view(case, method):
        frame = pd.DataFrame([{"method": method, "acc": "0.5", "n": "3"}])
        return site.CaseView(case, "acc", True, "val", frame, None, 3)

    multi = site.CaseView("c", "acc", True, "val", pd.DataFrame([{"method": "a"}, {"method": "b"}]), None, 3)
    merged, rest = site.merged_single_rows([view("a1", "frozen"), view("a2", "frozen"), multi])
    assert len(merged) == 1 and [c.case for c in rest] == ["c"]
    cases, tested, frame = merged[0]
    assert cases == ["a1", "a2"] and tested and list(frame.columns) == ["case", "method", "acc", "n"]
    assert list(frame["case"]) == ["a1", "a2"]


def test_report_on_own_results(tmp_path, capsys):
    results = fixture_results(tmp_path)
    write(results, make_record(CASES[0], "bce", [0.7, 0.71], profile="smoke"))  # any profile is reported
    stale = make_record(CASES[0], "focal", [0.75, 0.76, 0.77, 0.75, 0.76])
    stale["code"] = {**stale["code"], "method": "0" * 16}
    write(results, stale)
    theirs = make_record(CASES[1], "bce", [0.9, 0.91, 0.9, 0.92, 0.9])
    theirs["method"] = "my-loss"  # a --method-module method, not loaded here
    write(results, theirs)
    assert cli.main(["report", str(results)]) == 0
    captured = capsys.readouterr()
    md = captured.out
    assert "## losses (standard profile)" in md and "## losses (smoke profile)" in md
    assert "| focal (stale)" in md and "| my-loss (stale)" in md  # stale and unknown-code rows, labelled
    assert "stale records" in md and "Stale rows (other code; see the list at the end): focal" in md
    assert "method 'my-loss' is not registered here" in md and "made by other code (method changed)" in md
    assert "2 stale record(s) are included" in md and "are stale" in captured.err
    assert cli.main(["report", str(results), "--html", str(tmp_path / "rep"),
                     "--output", str(tmp_path / "rep" / "report.md")]) == 0
    index = (tmp_path / "rep" / "index.html").read_text()
    assert "my-loss" in index and 'class="stale"' in index and (tmp_path / "rep" / "report.md").is_file()
    assert cli.main(["report", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_to_frame_shapes(tmp_path):
    results = fixture_results(tmp_path)
    n_records, n_metrics, n_seeds = len(CASES) * len(SCORES), 2, 5
    df = records.to_frame(results)
    assert df.shape[0] == n_records * n_metrics * n_seeds
    assert {"suite", "case", "method", "metric", "primary", "seed", "value", "path"} <= set(df.columns)
    best = df[df.primary].groupby("method").value.mean()
    assert best.idxmax() == "ensloss" and best["bce"] == pytest.approx(0.808)
    per_metric = records.to_frame([r for _, r in records.iter_records(results)], per_seed=False)
    assert per_metric.shape[0] == n_records * n_metrics and "path" not in per_metric.columns
    assert set(per_metric["n"]) == {5} and per_metric["sem"].notna().all()


def test_site_check_screenshot_rules(tmp_path):
    from PIL import Image

    check = site_check_module()
    Image.new("RGB", (400, 300), "white").save(tmp_path / "blank.png")
    assert any("blank" in p for p in check.screenshot_problems(tmp_path / "blank.png"))
    (tmp_path / "junk.png").write_text("not a png")
    assert any("does not decode" in p for p in check.screenshot_problems(tmp_path / "junk.png"))


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="no chromium here; .ci/run installs it and runs .ci/site_check.py, failing without it")
def test_site_renders_in_headless_chromium(tmp_path):
    check = site_check_module()
    results = fixture_results(tmp_path)
    assert check.check(results, tmp_path / "site", shutil.which("chromium")) == []
    assert (tmp_path / "site" / "site-check.png").is_file()
    # and fails when the page does not sort, or lacks a row the records give
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(site, "SORT_JS", "")
        assert any("did not reorder" in p for p in check.check(results, tmp_path / "s2", shutil.which("chromium")))
    with pytest.MonkeyPatch.context() as mp:
        real = site.index_html
        mp.setattr(site, "index_html", lambda *a, **k: re.sub(r"<tr>\s*<td>\d+</td>\s*<td>hinge</td>.*?</tr>", "",
                                                              real(*a, **k), flags=re.S))
        found = check.check(results, tmp_path / "s3", shutil.which("chromium"))
        assert any("shows methods ['bce', 'ensloss']" in p for p in found), found


@pytest.mark.slow
def test_report_loads_method_modules(tmp_path):
    """A --method-module method's records are current once `report --method-module` loads its file."""
    import subprocess
    import sys
    import textwrap

    from harness.core.registry import load_method_module

    source = tmp_path / "site_user_loss.py"
    source.write_text(textwrap.dedent('''
        from harness import Method, register_method


        @register_method("site-user-loss")
        class SiteUserLoss(Method):
            family, protocols = "loss", frozenset({"supervised"})
    '''))
    load_method_module(source)  # in this process only, to write a record with its code versions
    results = fixture_results(tmp_path)
    write(results, make_record(CASES[0], "site-user-loss", [0.8, 0.82, 0.81, 0.8, 0.8]))

    def report(*extra: str) -> str:
        done = subprocess.run([sys.executable, "-m", "harness", "report", str(results), *extra], cwd=REPO,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return done.stdout

    unloaded = report()
    assert "| site-user-loss (stale)" in unloaded and "'site-user-loss' is not registered here" in unloaded
    loaded = report("--method-module", str(source))
    assert "| site-user-loss " in loaded and "site-user-loss (stale)" not in loaded


def test_findings_file_and_readme_block_are_generated_and_checked(tmp_path, capsys):
    """`leaderboard` writes docs/findings.md and README's findings block from the records; `--check` fails when
    either is not what the records generate (a hand-written claim, or records that changed)."""
    results = fixture_results(tmp_path)
    out = tmp_path / "leaderboard.md"
    readme = tmp_path / "README.md"
    readme.write_text(f"# A copy\n\nBefore.\n\n{site.README_START}\nhand-written: hinge beats bce\n"
                      f"{site.README_END}\n\nAfter.\n", encoding="utf-8")
    argv = ["leaderboard", "--results-dir", str(results), "--output", str(out)]
    site.write_markdown(results, out)
    readme.write_text(readme.read_text(encoding="utf-8").replace(
        readme.read_text(encoding="utf-8").split(site.README_START)[1].split(site.README_END)[0],
        "\nhand-written: hinge beats bce\n"), encoding="utf-8")
    capsys.readouterr()
    assert cli.main(argv + ["--check"]) == 1
    assert "README.md: its findings block differs" in capsys.readouterr().err
    assert cli.main(argv) == 0
    findings = (tmp_path / "docs" / "findings.md").read_text(encoding="utf-8")
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# A copy\n\nBefore.\n\n") and text.endswith("\n\nAfter.\n")
    assert "hand-written" not in text and "**losses (standard)**" in text and "](docs/findings.md)" in text
    # the same statistics as the leaderboard: its claims, and the suite's findings(records) lines
    section = site.build(results).sections[0]
    assert section.notes and all(f"- {line}" in text and f"- {line}" in findings for line in section.notes)
    assert all(f"- {line}" in findings for line in section.claims)
    assert "On these cases (stratified sign-flip over case×seed pairs, Holm over 2 methods)" in findings
    assert cli.main(argv + ["--check"]) == 0
    readme.write_text(text.replace(section.notes[0], "ensloss does not beat bce"), encoding="utf-8")
    assert cli.main(argv + ["--check"]) == 1
    cli.main(argv)
    (tmp_path / "docs" / "findings.md").write_text(findings + "- a claim by hand\n", encoding="utf-8")
    assert site.markdown_problems(results, out) == [f"docs/findings.md differs from what the records in {results} "
                                                  "generate"]
    write(results, make_record(CASES[0], "focal", [0.9, 0.9, 0.9, 0.9, 0.9]))  # new records: stale again
    cli.main(argv)
    assert site.check_markdown(results, out)
    write(results, make_record(CASES[1], "focal", [0.9, 0.9, 0.9, 0.9, 0.9]))
    assert "README.md: its findings block differs from what the records in" in " ".join(
        site.markdown_problems(results, out))


HOSTILE = "x|<script>alert(1)</script>](http://e)\nnext"


def test_strings_a_record_carries_are_inert_on_every_page(tmp_path):
    """An hparam value (any string a user or a record brings) cannot break a Markdown table, inject HTML or a link."""
    results = tmp_path / "results"
    for method, acc in (("bce", [0.8, 0.81, 0.82, 0.8, 0.79]), ("focal", [0.82, 0.83, 0.84, 0.82, 0.81])):
        write(results, make_record("mnist3v5-noise0", method, acc))
    write(results, make_record("mnist3v5-noise0", "focal", [0.9] * 5, hparam_overrides={"gamma": HOSTILE}))
    md = rendered(results)
    assert "<script>" not in md and "](http://e)" not in md and "\nnext" not in md
    row = next(line for line in md.splitlines() if line.startswith("|") and "alert" in line)
    header = next(line for line in md.split(row)[0].splitlines()[::-1] if line.startswith("|") and "---" not in line)
    assert row.count(" | ") == header.count(" | ")  # the pipe in the value did not add a column
    index = site.write_html(site.build(results), results, tmp_path / "site")
    pages = "".join(p.read_text() for p in index.parent.glob("*.html"))
    assert "alert" in pages and "<script>alert" not in pages


def test_times_re_measured_by_verify_stand_beside_the_recorded_ones(tmp_path):
    results = tmp_path / "results"
    paths = {m: write(results, make_record("mnist3v5-noise0", m, [0.8, 0.81, 0.82, 0.8, 0.79]))
             for m in ("bce", "focal")}
    assert "re-measured by verify" not in rendered(results)  # nothing re-measured: no such column
    rel = paths["bce"].relative_to(results).as_posix()
    write_manifest(results, {"version": 1, "removed": {}, "files": {rel: {
        "sha256": file_sha256(paths["bce"]), "verified_at": "abc", "remeasured": {"step_time_median_s": 0.0031}}}})
    md = rendered(results)
    assert "re-measured by verify" in md
    bce = next(line for line in md.splitlines() if line.startswith("| bce") and "| 2.00 " in line)
    assert "| 3.10 " in bce  # recorded 2 ms, re-measured 3.1 ms, side by side
    paths["bce"].write_text(paths["bce"].read_text().replace('"device": "cpu (test)"', '"device": "cpu (edited)"'))
    assert "re-measured by verify" not in rendered(results)  # the bytes verify saw are gone: no claim

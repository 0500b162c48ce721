"""Issue 29 item 7: README documents every method hook with its real signature and direction; CONTRIBUTING says
which cases a leaderboard row needs and what a row cost here, for every suite with committed standard records."""

from __future__ import annotations

import inspect
import re

from harness.core.digest import REPO
from harness.core.method import Method
from harness.suites import suite_names

LIFECYCLE = {"check_protocol", "check_task", "describe"}  # called by the harness, not hooks a method overrides


def _hook_rows() -> dict[str, str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("| hook | protocol | signature |")
    rows = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        rows[cells[0].strip("`")] = cells[2].replace("\\|", "|").strip("`")
    return rows


def test_every_hook_is_in_the_readme_table_with_its_signature():
    rows = _hook_rows()
    hooks = {n for n, v in vars(Method).items() if inspect.isfunction(v) and not n.startswith("_")} - LIFECYCLE
    assert hooks == set(rows), f"missing {hooks - set(rows)}, extra {set(rows) - hooks}"
    for name, documented in rows.items():
        sig = inspect.signature(getattr(Method, name))
        params = ", ".join(_param(p) for p in sig.parameters.values())
        assert documented.startswith(f"{name}({params})"), (name, documented, params)


def _param(p: inspect.Parameter) -> str:
    return p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"


def test_the_table_states_each_direction():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    table = text[text.index("| hook | protocol | signature |"):text.index("Class attributes a method may set")]
    assert "higher = more likely known" in table and table.count("**minimises**") + table.count("**minimised**") >= 3
    assert "**lower is better**" in table


def test_contributing_states_the_cases_and_the_cost_of_a_row():
    text = (REPO / "CONTRIBUTING.md").read_text(encoding="utf-8")
    part = text[text.index("### Which cases a row needs"):text.index("### How rows are compared")]
    assert "every case the suite declares at\n`standard`" in part and "Not ranked" in part
    standard = {p.parts[-3] for p in (REPO / "results").glob("*/*/*__standard.json")}
    for suite in standard & set(suite_names()):
        assert f"| `{suite}` |" in part, suite

"""The seed-count power analysis behind each suite's ``SEEDS`` (``python -m harness power``).

For each case of a suite at a profile, the pilot spread is the sd of the seed-paired differences (method −
baseline, on the primary metric) of the records at hand, summarised over methods by the median (a typical method)
and the maximum (the noisiest). The on-these-cases test is decided at Holm's first level alpha / k for k methods
compared with the baseline (the strictest level one comparison can face; k counts every method with a record of
the suite, smoke included, so methods added since the pilot count), and the seeds needed for 80% power at a
one-point mean difference follow (:mod:`harness.metrics.power`). Where no affordable count reaches it, the table
gives the effect the suite's current count finds with 80% power instead: the suite's claims are then read at that
resolution, and its docs say so.

Pilot records may be stale (made by older code): they measure the spread, not a result, and nothing reported is
chosen from them.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd

from harness.metrics.power import detectable_effect, seeds_for_power
from harness.reporting.claims import ALPHA
from harness.reporting.compare import oriented_diffs
from harness.reporting.suites import reference_methods, reproductions
from harness.suites import get_suite, seed_count

EFFECT = 0.01  # one point of accuracy / AUROC / gap
POWER = 0.8


def case_spreads(records: list[dict], baseline: str, skip: set[str] = frozenset()) -> dict[str, list[float]]:
    """Per case, the sd of each method's seed-paired differences with the baseline (methods with >= 2 pairs)."""
    by_case: dict[str, dict[str, dict]] = defaultdict(dict)
    for r in records:
        if r["status"] == "ok" and not r["hparam_overrides"]:
            by_case[r["case"]][r["method"]] = r
    out = {}
    for case, recs in sorted(by_case.items()):
        if baseline not in recs:
            continue
        sds = [float(np.std(d, ddof=1)) for m, r in recs.items() if m != baseline and m not in skip
               for d in [oriented_diffs(r, recs[baseline], r["primary_metric"])] if len(d) >= 2]
        if sds:
            out[case] = sds
    return out


def power_table(suite_name: str, profile: str, records: list[dict], effect: float = EFFECT,
                power: float = POWER) -> tuple[pd.DataFrame, dict[str, object]]:
    """Per case: methods, median and max sd; and the suite's verdict: seeds needed (typical and noisiest method)
    and the effect found with ``power`` at the current seed count."""
    suite = get_suite(suite_name)
    repro = reproductions(suite)
    spreads = {c: s for c, s in case_spreads([r for r in records if r["suite"] == suite_name
                                              and r["profile"] == profile], suite.BASELINE,
                                             set(reference_methods(suite))).items() if c not in repro}
    frame = pd.DataFrame([{"case": c, "methods": len(s), "median sd": np.median(s), "max sd": max(s)}
                          for c, s in spreads.items()])
    # Holm's family: every method with a record of this suite at any profile (smoke records cover every method
    # that runs here), not only the pilot's
    others = {r["method"] for r in records if r["suite"] == suite_name and not r["hparam_overrides"]}
    k = max(len(others - {suite.BASELINE} - set(reference_methods(suite))), 1)
    level = ALPHA / k
    current = seed_count(suite, profile)
    summary: dict[str, object] = {"suite": suite_name, "cases": len(spreads), "methods (k)": k,
                                  "level (alpha/k)": level, "current seeds": current}
    if spreads:
        typical = frame["median sd"].to_numpy()
        noisiest = frame["max sd"].to_numpy()
        summary.update({
            f"seeds for {effect:g} (median sd)": seeds_for_power(typical, effect, level, power),
            f"seeds for {effect:g} (max sd)": seeds_for_power(noisiest, effect, level, power),
            "effect found at current seeds (median sd)": detectable_effect(typical, current, level, power),
        })
    return frame, summary

"""The distribution-shift suite's report (:mod:`harness.suites.shift` defines its cases): comparisons with ERM,
and DomainBed's published ColoredMNIST figures beside ours."""

from __future__ import annotations

from harness.reporting.compare import oriented_diffs
from harness.reporting.informative import Floor, majority
from harness.reporting.paired import OverCases, compare, family, one_case
from harness.suites.shift import CMNIST_ENVS

DESCRIPTION = ("WILDS-like shifts: digit sources, rotations, spurious colour (incl. DomainBed's ColoredMNIST), PACS "
               "styles (random-init and ImageNet-pretrained), RSSCN7 ground scale")
LEADERBOARD_COLUMNS = ["ood_acc", "worst_group_acc", "id_acc", "worst_domain_acc", "oracle_ood_acc"]
REPRODUCTIONS: dict[str, str] = {
    "cmnist-minus90": (
        "reproduces DomainBed's ColoredMNIST -90% failure (Gulrajani & Lopez-Paz 2021, Table: every method near "
        "10%): with -90% held out, colour predicts the label in 85% of the training images and shape in 75%, so "
        "every method that fits the training domains learns colour and scores about 0.10 on the held-out domain; at "
        "standard 10 of 11 methods gave identical numbers on every seed. Kept as a check that the failure "
        "reproduces; it ranks nothing"),
    **{f"cmnist-{env}": (
        f"DomainBed's ColoredMNIST {label} environment held out: with 25% label noise no classifier exceeds 0.75, so "
        "the informativeness floor (chance 0.5 + 20 points) is out of reach by construction (DomainBed's ERM: "
        "0.717 on +90%, 0.729 on +80%, on all 70,000 MNIST digits; here 1,000 images per environment, ERM 0.55 "
        "and 0.62 at standard, seed 0). Shown beside DomainBed's figures, outside the rankings")
       for env, label in (("plus90", "+90%"), ("plus80", "+80%"))},
    "digits-mnist": (
        "not a reproduction of a published failure: MNIST held out, trained on USPS and sklearn's digits at 16 px. "
        "ERM's held-out accuracy was 0.320 in the seed-0 pilot but 0.298 over the three seeds at standard, under "
        "the floor (chance 0.114, MNIST's largest class, + 0.20); it fits its training domains (0.961). Shown, not "
        "ranked, until a protocol change fixes or drops it"),
}
"""Cases that reproduce a known result (usually a known failure) and so cannot tell methods apart: they run and
are recorded, and the reporting keeps them out of the rankings and claims, with the reason given here (a report
attribute, so rewording a reason stales no record)."""

INFORMATIVE = (
    Floor("ood_acc", majority("test.y"), label="OOD accuracy"),
    Floor("id_acc", majority("id_test.y"), each_method=True, label="held-out training-domain accuracy"),
)


def findings(records: list[dict]) -> list[str]:
    """Plain-language comparisons with ERM, generated from the records (never asserted in tests)."""
    by_case: dict[str, dict[str, dict]] = {}
    for r in records:
        if r["status"] == "ok" and not r["hparam_overrides"]:
            by_case.setdefault(r["case"], {})[r["method"]] = r
    lines = []
    for case, recs in sorted(by_case.items()):
        erm = recs.get("erm")
        metric = next(iter(recs.values()))["primary_metric"]
        best = max(recs.values(), key=lambda r: r["metrics"][metric]["mean"])
        line = f"`{case}`: best {metric} is {best['method']} ({best['metrics'][metric]['mean']:.4f})"
        if erm is not None and best is not erm:
            t = _paired(best, erm, metric)
            line += (f"; against ERM ({erm['metrics'][metric]['mean']:.4f}), the per-case rule: {t} (the best is "
                     "picked after the fact, so read this as descriptive)")
        lines.append(line + ".")
    lines += _cmnist_findings(by_case)
    pretrained = {c: r for c, r in by_case.items() if c.startswith("pacs_pretrained-")}
    if pretrained:
        methods = sorted({m for recs in pretrained.values() for m in recs} - {"erm"})
        for comparison in family([compare(pretrained, method, "erm", "ood_acc") for method in methods]):
            lines.append(f"Pretrained PACS (EfficientNet-Lite0, ImageNet): {comparison.describe()}.")
        udim = compare(pretrained, "udim", "sam", "ood_acc")
        if udim is not None:
            lines.append(f"Pretrained PACS, UDIM against SAM (UDIM's claim): {udim.describe()}; "
                         f"{_claim(udim)}.")
    for comparison in family([compare(by_case, method, "erm", "ood_acc") for method in UNLABELED_METHODS]):
        if comparison is not None:
            lines.append(f"Unlabeled target data (the held-out domains' unlabeled split): {comparison.describe()}; "
                         f"{_claim(comparison)}.")
    colored = by_case.get("colored", {})
    if "groupdro" in colored and "erm" in colored:
        g, e = colored["groupdro"], colored["erm"]
        diff = g["metrics"]["worst_group_acc"]["mean"] - e["metrics"]["worst_group_acc"]["mean"]
        lines.append(
            f"Coloured digits: GroupDRO − ERM on worst-group accuracy "
            f"({g['metrics']['worst_group_acc']['mean']:.4f} vs {e['metrics']['worst_group_acc']['mean']:.4f}, "
            f"Δ {diff:+.4f}); the per-case rule: {_paired(g, e, 'worst_group_acc')}."
        )
    return lines


UNLABELED_METHODS = ("dann", "pseudo-label", "divdis")

# DomainBed's ColoredMNIST test-environment accuracies (%), mean ± std over 3 trials, from facebookresearch/DomainBed
# domainbed/results/2020_10_06_7df6f06/results.tex (Gulrajani & Lopez-Paz, "In Search of Lost Domain
# Generalization", ICLR 2021): per model selection, method -> (+90%, +80%, -90%).
DOMAINBED_CMNIST = {
    "training-domain validation": {
        "erm": ((71.7, 0.1), (72.9, 0.2), (10.0, 0.1)), "irm": ((72.5, 0.1), (73.3, 0.5), (10.2, 0.3)),
        "groupdro": ((73.1, 0.3), (73.2, 0.2), (10.0, 0.2)), "vrex": ((72.4, 0.3), (72.9, 0.4), (10.2, 0.0)),
    },
    "test-domain validation (oracle)": {
        "erm": ((71.8, 0.4), (72.9, 0.1), (28.7, 0.5)), "irm": ((72.0, 0.1), (72.5, 0.3), (58.5, 3.3)),
        "groupdro": ((73.5, 0.3), (73.0, 0.3), (36.8, 2.8)), "vrex": ((72.8, 0.3), (73.0, 0.3), (55.2, 4.0)),
    },
}
PUBLISHED_TOLERANCE = 0.05  # |our gain over ERM - DomainBed's| below this counts as "as published"


def _cmnist_findings(by_case: dict[str, dict[str, dict]]) -> list[str]:
    cases = {env: by_case[f"cmnist-{env}"] for env in CMNIST_ENVS if f"cmnist-{env}" in by_case}
    if not cases:
        return []
    lines = []
    for rule, table in DOMAINBED_CMNIST.items():
        quoted = "; ".join(f"{m.upper() if m in ('erm', 'irm') else m} " + ", ".join(
            f"{CMNIST_ENVS[e][1]} {v[0]:.1f} ± {v[1]:.1f}" for e, v in zip(CMNIST_ENVS, table[m])) for m in table)
        lines.append(f"DomainBed's published ColoredMNIST test-environment accuracy (%), {rule} (reference, quoted "
                     f"from facebookresearch/DomainBed domainbed/results/2020_10_06_7df6f06/results.tex; full "
                     f"MNIST, DomainBed's MNIST CNN, 5,000 steps): {quoted}.")
    for rule, metric in (("training-domain validation", "ood_acc"), ("test-domain validation (oracle)",
                                                                     "oracle_ood_acc")):
        published = DOMAINBED_CMNIST[rule]
        for method in ("erm", "irm", "groupdro", "vrex"):
            ours = [(env, cases[env][method]["metrics"][metric]["mean"]) for env in cases if method in cases[env]
                    and cases[env][method]["metrics"].get(metric, {}).get("mean") is not None]
            if not ours:
                continue
            row = ", ".join(f"{CMNIST_ENVS[env][1]} {100 * v:.1f}" for env, v in ours)
            line = f"ColoredMNIST here ({rule}, {metric}), {method}: {row}"
            if method != "erm":
                line += "; " + _as_published(cases, method, metric, published)
            lines.append(line + ".")
    return lines


def _as_published(cases: dict[str, dict[str, dict]], method: str, metric: str, published: dict) -> str:
    """Our gain over ERM per environment against DomainBed's, and whether it matches within the tolerance."""
    parts, same = [], True
    for i, env in enumerate(CMNIST_ENVS):
        recs = cases.get(env, {})
        if method not in recs or "erm" not in recs:
            continue
        gain = recs[method]["metrics"][metric]["mean"] - recs["erm"]["metrics"][metric]["mean"]
        theirs = (published[method][i][0] - published["erm"][i][0]) / 100
        same &= abs(gain - theirs) <= PUBLISHED_TOLERANCE
        parts.append(f"{CMNIST_ENVS[env][1]} {gain:+.3f} (published {theirs:+.3f})")
    if not parts:
        return "no ERM record to compare with"
    verdict = "as published" if same else "not as published"
    return f"gain over ERM {', '.join(parts)}: {verdict} (tolerance {PUBLISHED_TOLERANCE})"


def _claim(comparison: OverCases) -> str:
    return (f"on these cases, {comparison.method} against {comparison.baseline}: {comparison.verdict()}; across "
            f"cases: {comparison.across.verdict}")


def _paired(a: dict, b: dict, metric: str) -> str:
    """The leaderboard's per-case rule (exact sign-flip over seeds) for ``a`` against ``b`` on one case."""
    return one_case(oriented_diffs(a, b, metric))

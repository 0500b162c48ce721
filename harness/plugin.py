"""The pytest plugin: options, case parametrisation, the ``harness_case``
fixture and the terminal summary. Everything else lives in plain modules.

Under pytest-xdist (``pytest suites/ -n K``) each worker takes its own GPU
(``cuda:{i % n}``) or an even share of the CPU threads, cases that load the
same dataset carry one ``xdist_group`` (and ``--dist loadgroup`` is the
default), and the controller's summary is built from the record files the
workers wrote.

pytest 9.2 ignores how xdist 3.8 tags a test with its group (it sets
``item._nodeid``, which pytest no longer reads: pytest-xdist issue #1386),
so under xdist the group also goes into the test id (``erm-pacs-photo@data-pacs``)
and the plugin's scheduler reads it from there.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from tabulate import tabulate

from harness.config import RunConfig, claim_worker_resources, make_config, worker_slot
from harness.errors import DataMissing, HarnessError, RecordError, RecordLocked, Unsupported
from harness.records import check_writable, load_record
from harness.runner import CaseResult, run_case
from harness.speed import PRECISIONS, SpeedOptions
from harness.suites import case_specs, get_suite, is_suite, seed_count
from harness.task import CaseSpec

RESULTS_KEY = pytest.StashKey[list]()
CONFIG_KEY = pytest.StashKey[RunConfig]()
_WARNINGS_KEY = pytest.StashKey[list]()  # records the controller could not read
_GROUP_TAG = re.compile(r"@(data-[^@\]]*)\]$")  # the group in a test id under xdist: test[erm-case@data-name]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "benchmark harness")
    group.addoption("--method", default=None, help="comma-separated method names (default: erm)")
    group.addoption("--profile", default="smoke", choices=("smoke", "standard", "full"), help="suite size")
    group.addoption("--seeds", type=int, default=None,
                    help="number of seeds (default: the suite's SEEDS, else 1 smoke, 3 standard, 5 full; "
                         "a case may ask for more)")
    group.addoption("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    group.addoption("--hparam", action="append", default=[], metavar="KEY=VALUE",
                    help="override a method hparam, typed against its default; method.key=value targets one")
    group.addoption("--results-dir", default=None,
                    help="where records go (default: <rootdir>/out/results; leaderboard rows: --results-dir=results)")
    group.addoption("--method-module", action="append", default=[], metavar="PATH",
                    help="load methods from a Python file")
    group.addoption("--resume", action="store_true", help="skip cases whose record exists with the same fingerprint")
    group.addoption("--strict-data", action="store_true", default=None,
                    help="missing datasets fail instead of skip (default on when CI=true)")
    group.addoption("--dataset", action="append", default=[], metavar="KIND:PATH",
                    help="your own data as extra cases, e.g. imagefolder:PATH (repeatable)")
    group.addoption("--data-path", default="auto", choices=("auto", "memory", "stream"),
                    help="keep each dataset on the device (memory) or stream it through a DataLoader (default: auto)")
    group.addoption("--compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                    help="torch.compile the model (--compile, or --compile=BACKEND; default backend inductor)")
    group.addoption("--precision", default="fp32", choices=PRECISIONS,
                    help="training-step precision: autocast to bf16 or fp16 (fp16 with a grad scaler)")
    group.addoption("--profile-kernels", nargs="?", const=10, default=0, type=int, metavar="K",
                    help="profile training steps after the timed window; top K kernels/ops (default 10) to the record")
    group.addoption("--profile-trace", action="store_true",
                    help="with --profile-kernels: also write a Chrome trace (.trace.json.gz) beside each record")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from harness import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def _strict_default() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _run_config(config: pytest.Config) -> RunConfig:
    if CONFIG_KEY not in config.stash:
        opt = config.getoption
        strict = opt("--strict-data")
        worker = worker_slot()
        try:
            speed = SpeedOptions(opt("--compile"), opt("--precision"), opt("--profile-kernels"), opt("--profile-trace"))
            cfg = config.stash[CONFIG_KEY] = make_config(
                opt("--method"), opt("--profile"), opt("--seeds"), opt("--device"), opt("--hparam"),
                opt("--results-dir") or str(Path(config.rootpath) / "out" / "results"), opt("--resume"),
                opt("--method-module"), _strict_default() if strict is None else strict,
                opt("--dataset"), opt("--data-path"), speed, worker,
            )
            check_writable(config.stash[CONFIG_KEY].results_dir)  # before any training, not after it
        except HarnessError as err:
            raise pytest.UsageError(str(err)) from None
        claim_worker_resources(cfg.device, worker)
    return config.stash[CONFIG_KEY]


def _dist_given(config: pytest.Config) -> bool:
    args = [*config.invocation_params.args, *os.environ.get("PYTEST_ADDOPTS", "").split()]
    return any(str(a) in ("--dist", "-d") or str(a).startswith("--dist=") for a in args)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[RESULTS_KEY] = []
    # xdist's own default is "load", which scatters the cases of one dataset over every worker: each would load it
    if getattr(config.option, "dist", "no") == "load" and not _dist_given(config):
        config.option.dist = "loadgroup"
    if getattr(config, "workerinput", {}).get("harness_loadgroup"):
        config.option.loadgroup = True  # workers re-parse the command line, which does not say loadgroup
    if config.getoption("--method") is not None or config.getoption("--hparam"):
        _run_config(config)  # fail fast: unknown method or bad hparam is a usage error before collection


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """On the xdist controller: tell each worker whether the plugin chose ``--dist loadgroup``."""
    node.workerinput["harness_loadgroup"] = node.config.option.dist == "loadgroup"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``loadgroup`` that also finds the group in the test id (see the module docstring)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class DataGroupScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            found = _GROUP_TAG.search(nodeid)
            return found.group(1) if found else super()._split_scope(nodeid)

    return DataGroupScheduling(config, log)


def data_group(suite, spec: CaseSpec) -> str:
    """The xdist group of a case: cases that load the same dataset share a worker (and its loaded copy).

    A suite may define ``data_group(spec) -> str``; the default is the case's ``dataset`` parameter.
    """
    custom = getattr(suite, "data_group", None)
    return f"data-{custom(spec) if custom else spec.params.get('dataset', spec.case)}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "harness_case" not in metafunc.fixturenames:
        return
    suite = getattr(metafunc.module, "SUITE", None)
    if suite is None:
        raise pytest.UsageError(f"{metafunc.module.__name__} uses harness_case but defines no SUITE module")
    cfg = _run_config(metafunc.config)
    params, ids = [], []
    try:
        specs = case_specs(suite, cfg.profile, cfg.datasets)
    except HarnessError as err:
        raise pytest.UsageError(str(err)) from None
    tag_ids = worker_slot() is not None and getattr(metafunc.config.option, "loadgroup", False)
    for spec in specs:
        group = data_group(suite, spec)
        for name in cfg.methods:
            params.append(pytest.param((spec, name), marks=pytest.mark.xdist_group(group)))
            ids.append(f"{name}-{spec.case}" + (f"@{group}" if tag_ids else ""))
    if not params and getattr(suite, "DATASET_OPTION", False):
        params, ids = [(None, suite.NAME)], [f"{suite.NAME}-no-dataset"]
    metafunc.parametrize("harness_case", params, ids=ids, indirect=True)


class CaseRun:
    """What a suite test calls: ``harness_case.run(benchmark)``."""

    def __init__(self, spec: CaseSpec, method_name: str, config: pytest.Config) -> None:
        self.spec, self.method_name, self.pytest_config = spec, method_name, config
        self.cfg = _run_config(config)

    def run(self, benchmark=None) -> CaseResult:
        cfg = self.cfg
        if self.spec is None:
            pytest.skip(f"suite {self.method_name!r} runs on data you name: pass --dataset=imagefolder:PATH")
        method = cfg.make_method(self.method_name)
        hook = self.pytest_config.hook.pytest_harness_update_record
        seeds = cfg.seeds
        if self.pytest_config.getoption("--seeds") is None and is_suite(self.spec.suite):
            n = max(seed_count(get_suite(self.spec.suite), self.spec.profile), self.spec.default_seeds or 0)
            seeds = list(range(n))
        try:
            result = run_case(self.spec, method, seeds, cfg.device, cfg.results_dir,
                              cfg.overrides.get(method.name, {}), cfg.resume,
                              postprocess=lambda rec: hook(record=rec, config=self.pytest_config),
                              data_path=cfg.data_path, speed=cfg.speed)
        except DataMissing as err:
            if cfg.strict_data:
                pytest.fail(f"{err} (--strict-data)", pytrace=False)
            pytest.skip(str(err))
        except Unsupported as err:
            pytest.skip(str(err))
        except RecordLocked as err:
            pytest.fail(str(err), pytrace=False)
        except HarnessError as err:  # a clear one-line failure, never a traceback into torch
            pytest.fail(f"{method.name} on {self.spec.case}: {err}", pytrace=False)
        # the summary keeps the record only: nothing that holds data or a model outlives its test
        self.pytest_config.stash[RESULTS_KEY].append(CaseResult(result.record, result.path, result.resumed))
        if result.resumed:
            pytest.skip(f"--resume: {result.path} already holds this case (same fingerprint and seeds)")
        rec = result.record
        if result.diverged:
            d = rec["diverged"]
            pytest.fail(f"{method.name} on {self.spec.case}: diverged at step {d['step']} (seed {d['seed']}, "
                        f"loss {d['value']}); record marked 'diverged' at {result.path}", pytrace=False)
        # under xdist pytest-benchmark is off and pedantic() runs the step once, untimed; the record's timing stands in
        if benchmark is not None and result.benchmark_step is not None:
            benchmark.group = f"{self.spec.suite}/{self.spec.case}"
            benchmark.extra_info.update({
                "method": method.name, "profile": self.spec.profile, "primary_metric": rec["primary_metric"],
                **{k: v["mean"] for k, v in rec["metrics"].items()},
                "step_time_median_s": rec["timing"]["step_time_median_s"],
                "device": rec["environment"]["device"],
            })
            benchmark.pedantic(result.benchmark_step, rounds=self.spec.budget.benchmark_rounds, iterations=1,
                               warmup_rounds=1)
        result.benchmark_step = None
        return result


@pytest.fixture
def harness_case(request: pytest.FixtureRequest) -> CaseRun:
    spec, method_name = request.param
    return CaseRun(spec, method_name, request.config)


def summary_rows(results: list[CaseResult]) -> list[list[str]]:
    rows = []
    for r in results:
        rec = r.record
        mean, std = r.primary()
        if mean is None:
            metric = "n/a"
        else:
            metric = f"{rec['primary_metric']} {mean:.4f}" + (f" ± {std:.4f}" if std is not None else "")
        step = rec["timing"]["step_time_median_s"]
        rows.append([rec["suite"], rec["case"], rec["method"], metric, len(rec["seeds"]),
                     f"{step * 1e3:.2f} ms" if step else "n/a", "resumed" if r.resumed else rec["status"]])
    return rows


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In an xdist worker: hand the controller the paths of the records this worker wrote or resumed."""
    config = session.config
    if hasattr(config, "workeroutput"):
        config.workeroutput["harness_records"] = [[str(r.path), r.resumed] for r in config.stash.get(RESULTS_KEY, [])
                                                  if r.path is not None]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """On the xdist controller: read the records a finished worker reports, for the summary."""
    results = node.config.stash.setdefault(RESULTS_KEY, [])
    for path, resumed in getattr(node, "workeroutput", {}).get("harness_records", []):
        try:
            results.append(CaseResult(load_record(Path(path)), Path(path), resumed))
        except (OSError, RecordError) as err:  # removed or broken since: say so rather than drop the row silently
            warnings_for(node.config).append(f"{path}: {err}")


def warnings_for(config: pytest.Config) -> list[str]:
    return config.stash.setdefault(_WARNINGS_KEY, [])


def _under_xdist(config: pytest.Config) -> bool:
    return getattr(getattr(config, "option", None), "dist", "no") != "no" or worker_slot() is not None


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    results = config.stash.get(RESULTS_KEY, [])
    for line in warnings_for(config):
        terminalreporter.write_line(f"harness: could not read a worker's record: {line}")
    if not results:
        return
    results = sorted(results, key=lambda r: (r.record["suite"], r.record["case"], r.record["method"]))
    terminalreporter.section("harness results")
    headers = ["suite", "case", "method", "primary (mean ± std)", "seeds", "step time", "status"]
    terminalreporter.write_line(tabulate(summary_rows(results), headers=headers))
    if any(r.record["profile"] == "smoke" for r in results):
        terminalreporter.write_line("smoke numbers check the plumbing (tiny data and budgets); they are not "
                                    "measurements: use --profile=standard or full")
    where = {str(r.path.parent.parent) for r in results if r.path is not None}
    if where:
        terminalreporter.write_line(f"records: {', '.join(sorted(where))}")
    if _under_xdist(config):
        terminalreporter.write_line(
            "note: pytest-benchmark turns itself off under xdist; the step times above are the harness's own "
            "(median after warm-up, CUDA events or perf_counter), read from the records every worker wrote")
    profiled = [r for r in results if r.record.get("kernels")]
    if profiled:
        from harness.profiling import kernel_lines

        terminalreporter.section("harness kernels (profiled after the timed window)")
        for r in profiled:
            for line in kernel_lines(r.record):
                terminalreporter.write_line(line)

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

pytest conventions: a case's id is ``{method}-{case}``, and a node id (or ``--lf``'s last failures) names its
method, so it re-runs without ``--method``. Cases a method takes no part in (a protocol it has no part in, a
binary-only method on a case the suite file's ``NUM_CLASSES`` declares multi-class) are deselected at collection,
counted in one summary line; real skips (missing data, ...) stay skips, their reasons listed in the summary. Each
case carries its suite's marker and ``realdata`` when it reads ``$HARNESS_DATA``. pytest-benchmark is optional
(``-p no:benchmark``); when loaded it is handed the record's own timed steps, so both report one measurement,
and its table is hidden behind the harness's unless a ``--benchmark-*`` display option asks for it. On a
terminal each case shows a tqdm bar of its optimisation steps (fed by :func:`harness.core.engine.observe_steps`).
"""

from __future__ import annotations

import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from tabulate import tabulate

from harness import hookspecs
from harness.core.engine import observe_steps
from harness.core.registry import load_method_module, method_names
from harness.core.speed import PRECISIONS, SpeedOptions
from harness.core.task import CaseSpec
from harness.data.registry import dataset_info
from harness.errors import DataMissing, HarnessError, HparamError, RecordError, RecordLocked, Unsupported
from harness.records import check_writable, load_record
from harness.running.config import RunConfig, claim_worker_resources, make_config, worker_slot
from harness.running.profiling import kernel_lines
from harness.running.runner import CaseResult, SeedProgress, progress_printer, run_case, summary_rows
from harness.suites import case_seeds, case_specs, suite_names

RESULTS_KEY = pytest.StashKey[list]()
CONFIG_KEY = pytest.StashKey[RunConfig]()
_WARNINGS_KEY = pytest.StashKey[list]()  # records the controller could not read
_GROUP_TAG = re.compile(r"@(data-[^@\]]*)\]$")  # the group in a test id under xdist: test[erm-case@data-name]
_DESELECTED_KEY = pytest.StashKey[Counter]()  # (suite, why) -> cases deselected because the method has no part
_PARAM_ID = re.compile(r"::[^\[\]:]+\[([^\]]+)\]$")  # the parameter id of a node id: file.py::test_x[ID]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "benchmark harness")
    group.addoption("--method", default=None,
                    help="comma-separated method names (default: the methods that node ids or --lf name, else erm)")
    group.addoption("--profile", default="smoke", choices=("smoke", "standard", "full"), help="suite size")
    group.addoption("--seeds", type=int, default=None,
                    help="number of seeds (default: the suite's SEEDS, else 1 smoke, 3 standard, 5 full; "
                         "a case may ask for more)")
    group.addoption("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    group.addoption("--hparam", action="append", default=[], metavar="KEY=VALUE",
                    help="override a method hparam, typed against its default; method.key=value targets one; "
                         "each key once (a repeated key is an error, not a sweep)")
    group.addoption("--results-dir", default=None,
                    help="where records go (default: <rootdir>/out/results; leaderboard rows: --results-dir=results)")
    group.addoption("--method-module", action="append", default=[], metavar="PATH",
                    help="load methods from a Python file")
    group.addoption("--resume", action="store_true", help="skip cases whose record exists with the same fingerprint")
    group.addoption("--strict-data", action="store_true", default=None,
                    help="missing datasets fail instead of skip (default on when CI=true)")
    group.addoption("--no-strict-data", dest="strict_data", action="store_false",
                    help="missing datasets skip with the reason, even when CI=true (a project's own CI without them)")
    group.addoption("--dataset", action="append", default=[], metavar="KIND:PATH[,OPTION...]",
                    help="your own data as extra cases (repeatable): imagefolder:PATH, openset:PATH,known=N, "
                         "eurosat:PATH; options exclude=CLASS (repeatable), name=NAME, skip_corrupt")
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


def pytest_report_header(config: pytest.Config) -> list[str]:
    """What preparing the ``--dataset`` folders found (a wrapper unwrapped, classes left out), before any case runs."""
    cfg = config.stash.get(CONFIG_KEY, None)
    return [f"harness: {note}" for note in (cfg.dataset_notes if cfg is not None else [])]


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def _strict_default() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _run_config(config: pytest.Config) -> RunConfig:
    if CONFIG_KEY not in config.stash:
        opt = config.getoption
        strict = opt("--strict-data")
        worker = worker_slot()
        try:
            check_repeated_hparams(opt("--hparam"))
            for path in opt("--method-module"):  # before the names in node ids are matched against the registry
                load_method_module(path)
            methods = opt("--method")
            if methods is None:
                methods = methods_from_node_ids(_node_id_args(config)) or None
            speed = SpeedOptions(opt("--compile"), opt("--precision"), opt("--profile-kernels"), opt("--profile-trace"))
            cfg = config.stash[CONFIG_KEY] = make_config(
                methods, opt("--profile"), opt("--seeds"), opt("--device"), opt("--hparam"),
                opt("--results-dir") or str(Path(config.rootpath) / "out" / "results"), opt("--resume"),
                [], _strict_default() if strict is None else strict,
                opt("--dataset"), opt("--data-path"), speed, worker,
            )
            check_writable(config.stash[CONFIG_KEY].results_dir)  # before any training, not after it
        except HarnessError as err:
            raise pytest.UsageError(str(err)) from None
        claim_worker_resources(cfg.device, worker)
    return config.stash[CONFIG_KEY]


def check_repeated_hparams(items: list[str]) -> None:
    """The same ``--hparam`` key given twice is an error: argparse would silently keep the last value.

    A sweep is ``harness sweep`` / one run per value; here one run has one value per key. ``k=1`` and
    ``ensloss.k=3`` are different keys (the method-qualified one wins for that method), so they are allowed.
    """
    seen: dict[str, str] = {}
    for item in items:
        key = item.split("=", 1)[0].strip()
        if "=" in item and key in seen:
            raise HparamError(f"--hparam {key} is given twice ({seen[key]!r} and {item!r}); one run takes one value "
                              "per key: run once per value to compare them")
        seen[key] = item


def _node_id_args(config: pytest.Config) -> list[str]:
    """Node ids named on the command line, plus the last failures when ``--lf``/``--ff`` asks for them."""
    ids = [str(a) for a in config.args if "::" in str(a)]
    cache = getattr(config, "cache", None)
    if (config.getoption("lf", False) or config.getoption("failedfirst", False)) and cache is not None:
        ids += list(cache.get("cache/lastfailed", {}))
    return ids


def methods_from_node_ids(node_ids: list[str]) -> str:
    """The methods that node ids such as ``suites/test_losses.py::test_losses[ensloss-breast_cancer-noise0]`` name,
    comma-separated (empty when none does), so such an id re-runs without ``--method``.

    The id is ``{method}-{case}``; method names may hold dashes (``erm-strong``), so the longest registered
    name that prefixes the id wins.
    """
    names = sorted(method_names(), key=len, reverse=True)
    found: list[str] = []
    for node_id in node_ids:
        param = _PARAM_ID.search(node_id)
        if param is None:
            continue
        pid = param.group(1).split("@", 1)[0]
        name = next((n for n in names if pid.startswith(n + "-")), None)
        if name is not None and name not in found:
            found.append(name)
    return ",".join(found)


def _dist_given(config: pytest.Config) -> bool:
    args = [*config.invocation_params.args, *os.environ.get("PYTEST_ADDOPTS", "").split()]
    return any(str(a) in ("--dist", "-d") or str(a).startswith("--dist=") for a in args)


@pytest.hookimpl(trylast=True)  # after the cache provider: --lf's node ids name methods too
def pytest_configure(config: pytest.Config) -> None:
    config.stash[RESULTS_KEY] = []
    config.stash[_DESELECTED_KEY] = Counter()
    # one marker per suite and realdata, so -m selects cases and --strict-markers passes outside this repo too
    for name in suite_names():
        config.addinivalue_line("markers", f"{name}: cases of the {name} suite (harness)")
    config.addinivalue_line("markers", "realdata: needs the real datasets under $HARNESS_DATA")
    _register_case_fixture(config)
    # xdist's own default is "load", which scatters the cases of one dataset over every worker: each would load it
    if getattr(config.option, "dist", "no") == "load" and not _dist_given(config):
        config.option.dist = "loadgroup"
    if getattr(config, "workerinput", {}).get("harness_loadgroup"):
        config.option.loadgroup = True  # workers re-parse the command line, which does not say loadgroup
    if config.getoption("--method") is not None or config.getoption("--hparam") \
            or methods_from_node_ids(_node_id_args(config)):
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
        specs, refused = suite_specs(suite, cfg.profile, cfg.datasets, dict(zip(cfg.datasets, cfg.datasets_given)))
    except HarnessError as err:
        raise pytest.UsageError(str(err)) from None
    for i, (_value, why) in enumerate(refused):
        params.append(pytest.param((None, suite.NAME), marks=[pytest.mark.skip(reason=why),
                                                               getattr(pytest.mark, suite.NAME)]))
        ids.append(f"{suite.NAME}-dataset{i}-not-for-this-suite")
    tag_ids = worker_slot() is not None and getattr(metafunc.config.option, "loadgroup", False)
    named = [a for a in metafunc.config.args if "::" in str(a) and "[" in str(a)]
    if named:  # ids named on the command line are found as written: with the xdist group tag or without it
        tag_ids = any("@data-" in str(a) for a in named)
    for spec in specs:
        group = data_group(suite, spec)
        marks = [pytest.mark.xdist_group(group), getattr(pytest.mark, suite.NAME)]
        if reads_harness_data(spec):
            marks.append(pytest.mark.realdata)
        for name in cfg.methods:
            params.append(pytest.param((spec, name), marks=marks))
            ids.append(f"{name}-{spec.case}" + (f"@{group}" if tag_ids else ""))
    if not params and getattr(suite, "DATASET_OPTION", False):
        params, ids = [(None, suite.NAME)], [f"{suite.NAME}-no-dataset"]
    metafunc.parametrize("harness_case", params, ids=ids, indirect=True)


def suite_specs(suite, profile: str, datasets: list[str],
                given: dict[str, str] | None = None) -> tuple[list[CaseSpec], list[tuple[str, str]]]:
    """A suite's cases, and the ``--dataset`` values it refuses with the reason.

    A value of the suite's own kind (``openset:`` in the open-set suite) that the suite refuses is a usage error;
    one it shares with other suites (``imagefolder:`` is read by the imagefolder and open-set suites) is skipped
    here with the reason, so a three-class folder, too few classes for an open-set split (at least 3 known and 1
    unknown), still runs as a classification case. ``given`` maps a prepared value to the one the user typed.
    """
    if not getattr(suite, "DATASET_OPTION", False) or not datasets:
        return case_specs(suite, profile, datasets), []
    specs = case_specs(suite, profile, [])
    names = {s.case for s in specs}
    refused = []
    for value in datasets:
        try:
            specs += [s for s in case_specs(suite, profile, [value]) if s.case not in names]
        except HarnessError as err:
            if value.partition(":")[0] == suite.NAME:
                raise
            shown = (given or {}).get(value, value)  # the value as typed, not the view it became
            refused.append((value, f"{suite.NAME} takes no case from --dataset {shown}: {err}"))
    return specs, refused


def reads_harness_data(spec: CaseSpec) -> bool:
    """Whether the case's dataset is a real or user set under ``$HARNESS_DATA`` (the ``realdata`` marker)."""
    name = spec.params.get("dataset") or spec.params.get("data")
    tiers = {d.name: d.tier for d in dataset_info(check=False)}
    return tiers.get(name) in ("real", "user")


def case_classes(module, spec: CaseSpec) -> int | None:
    """The class count of a case known without loading data: the suite file's ``NUM_CLASSES`` (an int, or a
    function of the spec returning an int or None). None: unknown until the data is loaded."""
    declared = getattr(module, "NUM_CLASSES", None)
    return declared(spec) if callable(declared) else declared


def mismatch(method, spec: CaseSpec, module) -> str | None:
    """Why ``method`` takes no part in the case, judged without loading data (None: it may run).

    A protocol the method has no part in, or a binary-only method on a case the suite file declares
    multi-class. Anything that needs the data (domains, unlabeled target data) stays a skip with its reason.
    """
    try:
        method.check_protocol(spec.protocol)
    except Unsupported:
        return f"no {spec.protocol!r} part"
    classes = case_classes(module, spec)
    if method.binary_only and classes is not None and classes > 2:
        return "binary-only on multi-class"
    return None


@pytest.hookimpl(trylast=True)  # after -k/-m: the count is of the cases those would have kept
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (not skip) the cases a method takes no part in, so a multi-suite run reports only real outcomes."""
    kept, dropped = [], []
    counts = config.stash.setdefault(_DESELECTED_KEY, Counter())
    methods: dict[str, object] = {}
    for item in items:
        param = getattr(getattr(item, "callspec", None), "params", {}).get("harness_case")
        if not isinstance(param, tuple) or param[0] is None:
            kept.append(item)
            continue
        spec, name = param
        if name not in methods:
            methods[name] = _run_config(config).make_method(name)
        why = mismatch(methods[name], spec, item.module)
        if why is None:
            kept.append(item)
        else:
            dropped.append(item)
            counts[(spec.suite, why)] += 1
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


class _TerminalFile:
    """A file for tqdm that writes to the terminal past pytest's output capture (as live logging does).

    The bar gets a line of its own below pytest's progress line; on close the cursor goes back to the end of
    that line (ANSI), so the test's outcome letter lands where pytest expects it.
    """

    def __init__(self, config: pytest.Config) -> None:
        self.capman = config.pluginmanager.getplugin("capturemanager")
        self.tw = config.get_terminal_writer()
        self.raw = getattr(self.tw, "_file", sys.stdout)  # untracked by the writer: its column count stays true

    def isatty(self) -> bool:
        with self.capman.global_and_fixture_disabled() if self.capman else _nothing():  # fd 1 is a file under capture
            return bool(getattr(self.raw, "isatty", lambda: False)())

    def write(self, text: str) -> None:
        with self.capman.global_and_fixture_disabled() if self.capman else _nothing():
            self.raw.write(text)
            self.raw.flush()

    def flush(self) -> None:
        pass

    def open_line(self) -> None:
        self.write("\n")

    def back_to_pytest_line(self) -> None:
        self.write(f"\r\x1b[2K\x1b[1A\x1b[{self.tw.width_of_current_line + 1}G")


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def progress_enabled(config: pytest.Config) -> bool:
    """A per-case progress bar: not under -q, not in an xdist worker, only on a terminal that takes ANSI codes."""
    if config.getoption("verbose") < 0 or worker_slot() is not None:
        return False
    out = _TerminalFile(config)
    return out.isatty() and out.tw.hasmarkup


PROGRESS_INTERVAL_S = 0.5  # between redraws: a bar costs the timed steps next to nothing


@contextmanager
def case_progress(config: pytest.Config, label: str) -> Iterator[Callable[[SeedProgress], None] | None]:
    """Where a long case stands, where someone watches: a tqdm bar of the current seed's optimisation steps (of
    its total when the protocol's state says it, so tqdm shows that seed's ETA), its epoch, and from the runner
    the seed (i/n), the case's elapsed time and its ETA from the seeds done. Yields the runner's progress callback.

    Quiet under ``-q``, in xdist workers and when the output is no terminal. A terminal without ANSI codes gets a
    line per seed instead of a bar (:func:`harness.running.runner.progress_printer`)."""
    if not progress_enabled(config):
        quiet = config.getoption("verbose") < 0 or worker_slot() is not None
        yield None if quiet else progress_printer(_TerminalFile(config), config.getoption("verbose"))
        return
    from tqdm import tqdm

    out = _TerminalFile(config)
    out.open_line()
    bar = tqdm(desc=label, unit="step", file=out, leave=False, mininterval=PROGRESS_INTERVAL_S, dynamic_ncols=True)
    now = {"seed": "", "epoch": None, "run": None}

    def show() -> None:
        epoch = f" · epoch {now['epoch'] + 1}" if now["epoch"] is not None else ""
        bar.set_postfix_str(f"{now['seed']}{epoch}", refresh=False)

    def tick(engine) -> None:
        state = engine.state
        run = (engine.seed, getattr(state, "total_steps", None))
        if run != now["run"]:  # a new seed (or a new training run in it): the bar counts its steps afresh
            now["run"] = run
            bar.reset()
            bar.total = run[1] if isinstance(run[1], int) and run[1] > 0 else None
        epoch = getattr(state, "epoch", None)
        if epoch != now["epoch"]:
            now["epoch"] = epoch
            show()
        bar.update(1)

    def seeds(p: SeedProgress) -> None:
        now["seed"] = p.short()
        show()
        bar.refresh()

    try:
        with observe_steps(tick):
            yield seeds
    finally:
        bar.close()
        out.back_to_pytest_line()


def feed_benchmark(benchmark, durations: tuple[float, ...]) -> bool:
    """Give pytest-benchmark the harness's own timed steps as its rounds, so both report one measurement.

    pytest-benchmark has no public call to add measured durations, so this uses its ``_make_stats`` (the
    method its ``pedantic`` uses) and marks the fixture used; tests/test_plugin.py checks the two agree.
    """
    if benchmark is None or benchmark.disabled or not durations:
        return False
    stats = benchmark._make_stats(1)
    for d in durations:
        stats.update(d)
    benchmark._mode = "harness step timing"  # used once: a second benchmark call raises, as pytest-benchmark does
    return True


class CaseRun:
    """What a suite test calls: ``harness_case.run()`` (``run(benchmark)`` also works)."""

    def __init__(self, spec: CaseSpec, method_name: str, config: pytest.Config, benchmark=None) -> None:
        self.spec, self.method_name, self.pytest_config = spec, method_name, config
        self.benchmark = benchmark
        self.cfg = _run_config(config)

    def run(self, benchmark=None) -> CaseResult:
        cfg = self.cfg
        if self.spec is None:
            pytest.skip(f"suite {self.method_name!r} runs on data you name: pass --dataset=imagefolder:PATH")
        method = cfg.make_method(self.method_name)
        benchmark = benchmark if benchmark is not None else self.benchmark
        hook = self.pytest_config.hook.pytest_harness_update_record
        seeds = case_seeds(self.spec, self.pytest_config.getoption("--seeds"))
        try:
            with case_progress(self.pytest_config, f"{method.name}-{self.spec.case}") as progress:
                result = run_case(self.spec, method, seeds, cfg.device, cfg.results_dir,
                                  cfg.overrides.get(method.name, {}), cfg.resume,
                                  postprocess=lambda rec: hook(record=rec, config=self.pytest_config),
                                  data_path=cfg.data_path, speed=cfg.speed, progress=progress)
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
        result.benchmark_step = None
        if result.resumed:
            pytest.skip(f"--resume: {result.path} already holds this case (same fingerprint and seeds)")
        rec = result.record
        if result.diverged:
            d = rec["diverged"]
            pytest.fail(f"{method.name} on {self.spec.case}: diverged at step {d['step']} (seed {d['seed']}, "
                        f"loss {d['value']}); record marked 'diverged' at {result.path}", pytrace=False)
        # pytest-benchmark reports the record's own timed steps (off under xdist, where the records stand alone)
        if benchmark is not None:
            benchmark.group = self.spec.suite
            benchmark.extra_info.update({
                "method": method.name, "case": self.spec.case, "profile": self.spec.profile,
                "primary_metric": rec["primary_metric"], **{k: v["mean"] for k, v in rec["metrics"].items()},
                "step_time_median_s": rec["timing"]["step_time_median_s"],
                "device": rec["environment"]["device"],
            })
            if not feed_benchmark(benchmark, result.step_durations):
                benchmark.skipped = True  # no timed steps (a probe-only case): nothing to report, and no warning
        return result


class CaseFixture:
    """``harness_case`` without pytest-benchmark (``-p no:benchmark``): the record's timing stands alone."""

    @pytest.fixture
    def harness_case(self, request: pytest.FixtureRequest) -> CaseRun:
        spec, method_name = request.param
        return CaseRun(spec, method_name, request.config)


class BenchmarkedCaseFixture:
    """``harness_case`` that hands pytest-benchmark the record's timed steps (``--benchmark-*`` work as usual)."""

    @pytest.fixture
    def harness_case(self, request: pytest.FixtureRequest, benchmark) -> CaseRun:
        spec, method_name = request.param
        return CaseRun(spec, method_name, request.config, benchmark)


def _register_case_fixture(config: pytest.Config) -> None:
    """One of the two fixtures, chosen by whether pytest-benchmark is loaded, so suite files need not ask for it."""
    benchmarked = config.pluginmanager.hasplugin("benchmark") or config.pluginmanager.hasplugin("pytest_benchmark")
    config.pluginmanager.register(BenchmarkedCaseFixture() if benchmarked else CaseFixture(), "harness-case-fixture")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In an xdist worker: hand the controller the paths of the records this worker wrote or resumed."""
    config = session.config
    if hasattr(config, "workeroutput"):
        config.workeroutput["harness_records"] = [[str(r.path), r.resumed] for r in config.stash.get(RESULTS_KEY, [])
                                                  if r.path is not None]
        config.workeroutput["harness_deselected"] = [[*k, n] for k, n in config.stash.get(_DESELECTED_KEY, {}).items()]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """On the xdist controller: read the records a finished worker reports, for the summary."""
    results = node.config.stash.setdefault(RESULTS_KEY, [])
    deselected = node.config.stash.setdefault(_DESELECTED_KEY, Counter())
    if not deselected:  # every worker collects every case: one worker's count is the run's
        deselected.update({(suite, why): n for suite, why, n in getattr(node, "workeroutput", {}).get(
            "harness_deselected", [])})
    for path, resumed in getattr(node, "workeroutput", {}).get("harness_records", []):
        try:
            results.append(CaseResult(load_record(Path(path)), Path(path), resumed))
        except (OSError, RecordError) as err:  # removed or broken since: say so rather than drop the row silently
            warnings_for(node.config).append(f"{path}: {err}")


def warnings_for(config: pytest.Config) -> list[str]:
    return config.stash.setdefault(_WARNINGS_KEY, [])


def _under_xdist(config: pytest.Config) -> bool:
    return getattr(getattr(config, "option", None), "dist", "no") != "no" or worker_slot() is not None


def deselected_line(counts: Counter) -> str | None:
    """One line for the cases deselected because the method takes no part in them (None when there were none)."""
    if not counts:
        return None
    by_why: dict[str, Counter] = {}
    for (suite, why), n in counts.items():
        by_why.setdefault(why, Counter())[suite] += n
    parts = [f"{why}: " + ", ".join(f"{suite} {n}" for suite, n in sorted(c.items()))
             for why, c in sorted(by_why.items())]
    n = sum(counts.values())
    return f"harness: deselected {n} case{'s' * (n != 1)} the method does not take part in ({'; '.join(parts)})"


def results_folder(config: pytest.Config) -> Path:
    """The run's ``--results-dir`` (default ``<rootdir>/out/results``), relative to the current folder if inside."""
    given = config.getoption("--results-dir")
    folder = Path(given) if given else Path(config.rootpath) / "out" / "results"
    try:
        return folder.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return folder


def next_command(folder: Path) -> str:
    """The line that ends a run with records: what to run next to read them."""
    return (f"next: python -m harness report {folder} (the tables, with stale and unregistered rows flagged), or "
            f"python -m harness report {folder} --html {folder.parent / 'report'} (a static site)")


_TABLE_OPTIONS = ("--benchmark-columns", "--benchmark-sort", "--benchmark-group-by", "--benchmark-name",
                  "--benchmark-histogram", "--benchmark-compare", "--benchmark-verbose", "--benchmark-cprofile")


def _benchmark_table_asked(config: pytest.Config) -> bool:
    args = [*map(str, config.invocation_params.args), *os.environ.get("PYTEST_ADDOPTS", "").split()]
    return any(a.split("=", 1)[0] in _TABLE_OPTIONS for a in args)


def _skip_lines(terminalreporter, config: pytest.Config) -> list[str]:
    """Every suite case's skip reason, unless ``-rs`` (or ``-ra``/``-rA``) already lists them."""
    if set(getattr(config.option, "reportchars", "") or "") & set("saA"):
        return []
    suites = set(suite_names())
    lines = []
    for rep in terminalreporter.stats.get("skipped", []):  # suite cases carry their suite's marker (also under xdist)
        if suites & set(getattr(rep, "keywords", {}) or {}) and isinstance(rep.longrepr, tuple):
            lines.append(f"skipped {rep.nodeid}: {str(rep.longrepr[2]).removeprefix('Skipped: ')}")
    return lines


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark's table, which this may hide
def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    results = config.stash.get(RESULTS_KEY, [])
    for line in warnings_for(config):
        terminalreporter.write_line(f"harness: could not read a worker's record: {line}")
    skips = _skip_lines(terminalreporter, config)
    deselected = deselected_line(config.stash.get(_DESELECTED_KEY, Counter()))
    if not results and not skips and deselected is None:
        return
    terminalreporter.section("harness results")
    if deselected is not None:
        terminalreporter.write_line(deselected)
    for line in skips:
        terminalreporter.write_line(line)
    if not results:
        return
    results = sorted(results, key=lambda r: (r.record["suite"], r.record["case"], r.record["method"]))
    headers = ["suite", "case", "method", "primary (mean ± std)", "seeds", "step time", "status"]
    terminalreporter.write_line(tabulate(summary_rows(results), headers=headers))
    if any(r.record["profile"] == "smoke" for r in results):
        terminalreporter.write_line("smoke numbers check the plumbing (tiny data and budgets); they are not "
                                    "measurements: use --profile=standard or full")
    where = {str(r.path.parent.parent) for r in results if r.path is not None}
    if where:
        terminalreporter.write_line(f"records: {', '.join(sorted(where))}")
        terminalreporter.write_line(next_command(results_folder(config)))
    session = getattr(config, "_benchmarksession", None)
    if session is not None and not _under_xdist(config) and not _benchmark_table_asked(config) \
            and getattr(session, "groups", None):
        # the step-time column above is the same measurement pytest-benchmark holds: one table, not one per case
        session.quiet = True
        terminalreporter.write_line("pytest-benchmark's table (the same timed steps) is hidden: --benchmark-columns="
                                    "median,iqr,rounds shows it; --benchmark-json saves it")
    if _under_xdist(config):
        terminalreporter.write_line(
            "note: pytest-benchmark turns itself off under xdist; the step times above are the harness's own "
            "(median after warm-up, CUDA events or perf_counter), read from the records every worker wrote")
    profiled = [r for r in results if r.record.get("kernels")]
    if profiled:
        terminalreporter.section("harness kernels (profiled after the timed window)")
        for r in profiled:
            for line in kernel_lines(r.record):
                terminalreporter.write_line(line)

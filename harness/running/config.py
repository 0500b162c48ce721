"""Run configuration parsed from command-line values; plain Python so it is
tested without pytest and shared by the plugin and the CLI."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.core.environment import resolve_device
from harness.core.method import Method
from harness.core.registry import create_method, get_method_class, load_method_module
from harness.core.speed import SpeedOptions
from harness.core.task import PROFILES
from harness.data.source import DATA_PATHS
from harness.data.userfolder import prepare_all
from harness.errors import HparamError, UsageError
from harness.records import unrecordable
from harness.suites.seeds import DEFAULT_SEEDS

_START_THREADS = torch.get_num_threads()


@dataclass
class RunConfig:
    methods: list[str]
    profile: str = "smoke"
    seeds: list[int] = field(default_factory=lambda: [0])
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # per method
    results_dir: Path | None = Path("results")
    resume: bool = False
    strict_data: bool = False
    # --dataset values as the suites read them (harness.data.userfolder: a checked folder, or a view of it)
    datasets: list[str] = field(default_factory=list)
    dataset_notes: list[str] = field(default_factory=list)  # what preparing them found (a wrapper unwrapped, ...)
    datasets_given: list[str] = field(default_factory=list)  # the values as the user gave them, in the same order
    data_path: str = "auto"  # auto | memory | stream (harness.data.source)
    speed: SpeedOptions = field(default_factory=SpeedOptions)  # --compile, --precision, --profile-kernels

    def make_method(self, name: str) -> Method:
        return create_method(name, self.overrides.get(name, {}))


def parse_methods(value: str | None) -> list[str]:
    """``None`` (no --method) means erm; a given but empty value is an error, never a silent default."""
    names = [n.strip() for n in ("erm" if value is None else value).split(",") if n.strip()]
    if not names:
        raise UsageError("--method is empty; give a comma-separated list, e.g. --method=ensloss,bce")
    for name in names:
        get_method_class(name)  # unknown names raise a UsageError listing the registry
    return list(dict.fromkeys(names))


def parse_hparams(items: list[str], methods: list[str]) -> dict[str, dict[str, Any]]:
    """``key=value`` applies to every selected method, ``method.key=value`` to one.

    Values are typed against each method's defaults when the method is built;
    this checks keys and types now so a typo fails before any training.
    """
    out: dict[str, dict[str, Any]] = {m: {} for m in methods}
    for item in items:
        if "=" not in item:
            raise HparamError(f"--hparam {item!r}: expected key=value (or method.key=value)")
        key, value = item.split("=", 1)
        key = key.strip()
        targets = methods
        if "." in key:
            owner, key = key.split(".", 1)
            if owner not in methods:
                raise HparamError(f"--hparam {item!r}: method {owner!r} is not among --method {','.join(methods)}")
            targets = [owner]
        for m in targets:
            out[m][key] = value
    for m in methods:
        method = create_method(m, out[m])  # raises HparamError on unknown key / wrong type
        check_recordable(method)
        out[m] = {k: method.hparams[k] for k in out[m]}
    return {m: o for m, o in out.items() if o}


def check_recordable(method: Method) -> None:
    """Every hparam (default or given) goes into the record, which is written after training: a value its JSON
    cannot hold (an inf or nan inside a dict, a set, a complex number) is refused now, before any training."""
    for key, value in method.hparams.items():
        why = unrecordable(value)
        if why is not None:
            raise HparamError(f"hparam {key}={value!r} for {method.name!r} {why}; it is refused before training "
                              "rather than failing when the record is written")


def make_config(method: str | None, profile: str = "smoke", seeds: int | None = None, device: str = "auto",
                hparams: list[str] | None = None, results_dir: str | None = "results", resume: bool = False,
                method_modules: list[str] | None = None, strict_data: bool = False,
                datasets: list[str] | None = None, data_path: str = "auto", speed: SpeedOptions | None = None,
                worker: tuple[int, int] | None = None) -> RunConfig:
    """The run's configuration; ``worker`` is this process's (index, count) under pytest-xdist."""
    for path in method_modules or []:
        load_method_module(path)
    if profile not in PROFILES:
        raise UsageError(f"--profile {profile!r}: choose one of {', '.join(PROFILES)}")
    n_seeds = DEFAULT_SEEDS[profile] if seeds is None else seeds
    if n_seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {n_seeds}")
    methods = parse_methods(method)
    if data_path not in DATA_PATHS:
        raise UsageError(f"--data-path {data_path!r}: choose one of {', '.join(DATA_PATHS)}")
    prepared, notes = prepare_all(list(datasets or []))  # folder checks before any image is decoded
    return RunConfig(
        methods=methods, profile=profile, seeds=list(range(n_seeds)),
        device=resolve_device(worker_device(device, worker)), overrides=parse_hparams(hparams or [], methods),
        results_dir=Path(results_dir) if results_dir else None,
        resume=resume, strict_data=strict_data, datasets=prepared, dataset_notes=notes,
        datasets_given=list(datasets or []), data_path=data_path,
        speed=speed or SpeedOptions(),
    )


# -- pytest-xdist workers ----------------------------------------------------------------------------


def worker_slot() -> tuple[int, int] | None:
    """(index, count) of this pytest-xdist worker, from the variables xdist sets in each worker; None outside."""
    name, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if not name.startswith("gw") or not count.isdigit():
        return None
    return int(name[2:]), int(count)


def worker_device(device: str, worker: tuple[int, int] | None) -> str:
    """``auto`` or ``cuda`` become ``cuda:{i % n}`` in worker i when there are n GPUs; anything else is kept."""
    if worker is None or device not in ("auto", "cuda") or not torch.cuda.is_available():
        return device
    return f"cuda:{worker[0] % torch.cuda.device_count()}"


def thread_share(total: int, worker: tuple[int, int] | None) -> int:
    """An even share of ``total`` intra-op threads for one of the workers (at least one)."""
    return total if worker is None else max(1, total // worker[1])


def claim_worker_resources(device: torch.device, worker: tuple[int, int] | None) -> None:
    """Make this worker's GPU the current device and take its share of the CPU threads.

    The total is torch's thread count when this module was imported, so
    ``OMP_NUM_THREADS`` set by the user stays the budget the workers share, and
    a second call takes the same share.
    """
    if worker is None:
        return
    torch.set_num_threads(thread_share(_START_THREADS, worker))
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)

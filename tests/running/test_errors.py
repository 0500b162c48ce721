"""Bad input gets one clear line that names the input and the fix, before training where possible."""

from __future__ import annotations

import json
import pickle
import socket
from pathlib import Path

import pytest
import torch
from torch import nn

from harness import cli
from harness.core.registry import create_method
from harness.data import load
from harness.data.fetch import FetchEntry, Remote, fetch
from harness.data.layouts import load_ssb_splits
from harness.errors import DataError, DataMissing, HarnessError, MethodError, RecordError, UsageError
from harness.records import load_record
from harness.running.runner import run_case
from harness.suites import losses

SUITE_FILE = '''
from harness.suites import losses as SUITE


def test_losses(harness_case, benchmark):
    harness_case.run(benchmark)
'''


def usage_error(pytester: pytest.Pytester, *args: str) -> str:
    pytester.makepyfile(test_s=SUITE_FILE)
    res = pytester.runpytest(*args, "--benchmark-disable")
    assert res.ret == pytest.ExitCode.USAGE_ERROR, res.stdout.str() + res.stderr.str()
    err = res.stderr.str()
    assert "INTERNALERROR" not in err and "Traceback" not in err
    return err


def test_method_module_with_a_syntax_error(pytester):
    bad = pytester.path / "bad.py"
    bad.write_text("from harness import Method\n\nclass X(Method)\n    pass\n")
    err = usage_error(pytester, "--method=erm", f"--method-module={bad}")
    assert f"--method-module {bad}: syntax error at line 3" in err


def test_method_module_with_an_import_error(pytester):
    bad = pytester.path / "broken.py"
    bad.write_text("import not_a_real_package_xyz\n")
    err = usage_error(pytester, "--method=erm", f"--method-module={bad}")
    assert "failed to import: ModuleNotFoundError" in err and "not_a_real_package_xyz" in err


def test_empty_method_option_is_refused(pytester):
    assert "--method is empty" in usage_error(pytester, "--method=")


@pytest.mark.parametrize("device, says", [("mps", "mps is not available"), ("banana", "is not a device name"),
                                          ("cuda:7", "cuda")])
def test_unavailable_or_unknown_device(pytester, device, says):
    err = usage_error(pytester, "--method=erm", f"--device={device}")
    assert f"--device '{device}'" in err and says in err and "--device cpu" in err


def test_harness_data_pointing_at_a_file(tmp_path, monkeypatch, cache_dir):
    f = tmp_path / "data.txt"
    f.write_text("not a folder")
    monkeypatch.setenv("HARNESS_DATA", str(f))
    with pytest.raises(DataError, match="is a file, not a folder"):
        load("pacs")


def test_harness_data_pointing_at_an_unrelated_folder(tmp_path, monkeypatch, cache_dir):
    (tmp_path / "holiday_photos").mkdir()
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path))
    with pytest.raises(DataMissing, match="holds none of the folders the harness knows"):
        load("pacs")


def test_unreadable_harness_data_lists_without_crashing(tmp_path, monkeypatch, capsys):
    root = tmp_path / "locked"
    root.mkdir()
    monkeypatch.setenv("HARNESS_DATA", str(root))
    real_exists, real_iterdir = Path.exists, Path.iterdir

    def deny(path, inside):  # root ignores chmod 000, so refuse access the way the kernel would for others
        if root in path.parents or (inside and path == root):
            raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Path, "exists", lambda self, **kw: deny(self, False) or real_exists(self, **kw))
    monkeypatch.setattr(Path, "iterdir", lambda self: deny(self, True) or real_iterdir(self))
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "cannot be read" in out and "missing" in out
    with pytest.raises(DataError, match="cannot be read"):
        load("pacs")


def test_record_from_a_newer_harness(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"schema_version": 99, "suite": "losses"}))
    with pytest.raises(RecordError, match="newer harness .*schema 99.*pip install -e"):
        load_record(path)


def test_truncated_split_pickle(tmp_path):
    blob = pickle.dumps({"known_classes": list(range(50)), "unknown_classes": {"Easy": [1]}})
    (tmp_path / "cub_osr_splits.pkl").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="is truncated or empty") as err:
        load_ssb_splits(tmp_path)
    assert "global" not in str(err.value)


def test_fetch_offline_leaves_no_folder_behind(tmp_path):
    with socket.socket() as s:  # a port with nothing listening: the connection is refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reg = {"toy": FetchEntry("toy", "Toy", (Remote((f"http://127.0.0.1:{port}/toy.bin",), "toy.bin",
                                                   sha256="0" * 64),))}
    dest = tmp_path / "new" / "data"
    with pytest.raises(HarnessError):
        fetch("toy", dest, registry=reg)
    assert not dest.exists() and not (tmp_path / "new").exists()


@pytest.fixture(scope="module")
def bc_spec():
    spec = next(s for s in losses.case_specs("smoke") if s.case == "breast_cancer-noise0")
    return spec


def test_model_with_n_by_1_binary_output_fails_before_training(bc_spec):
    task = bc_spec.build(bc_spec)
    task.model_factory = lambda: _Wrapped(nn.Sequential(nn.Flatten(), nn.Linear(30, 1)))
    with pytest.raises(MethodError, match=r"returns shape \('N', 1\) but this 2-class task needs \(N,\)"):
        run_case(bc_spec, create_method("bce"), [0], torch.device("cpu"), task=task)


class _Wrapped(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.featurizer, self.classifier = net, nn.Identity()

    def forward(self, x):
        return self.classifier(self.featurizer(x))


def test_method_with_wrong_target_dtype_gets_the_convention(pytester, tmp_path):
    mod = tmp_path / "wrong.py"
    mod.write_text(
        "import torch.nn.functional as F\nfrom harness import Method, register_method\n\n"
        "@register_method('long-targets')\nclass LongTargets(Method):\n"
        "    family, protocols = 'loss', frozenset({'supervised'})\n\n"
        "    def loss(self, logits, batch, state):\n"
        "        return F.binary_cross_entropy_with_logits(logits, batch.y)\n"
    )
    pytester.makepyfile(test_s=SUITE_FILE)
    res = pytester.runpytest("--method=long-targets", f"--method-module={mod}", "-k", "breast_cancer-noise0]",
                             "--benchmark-disable", f"--results-dir={tmp_path / 'out'}")
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert "long-targets: its train step failed" in out and "y is torch.int64" in out and "conventions:" in out
    assert "Traceback" not in out


def test_usage_error_type_for_bad_profile():
    from harness.running.config import make_config

    with pytest.raises(UsageError, match="--profile"):
        make_config("erm", profile="huge")

"""Registry, hparam typing and option parsing."""

from __future__ import annotations

import sys
import textwrap
from importlib.metadata import EntryPoint

import pytest

from harness import cli
from harness.core import registry
from harness.core.method import Method, resolve_hparams
from harness.core.registry import create_method, get_method_class, method_names, register_method
from harness.errors import HparamError, UsageError
from harness.running.config import make_config, parse_hparams


def test_builtin_methods_are_discovered_without_import():
    names = method_names()
    for expected in ("bce", "hinge", "exponential", "focal", "ensloss", "ldr-kl", "erm", "sam", "groupdro"):
        assert expected in names
    entry = registry._METHODS["ensloss"]
    assert entry.family == "loss" and entry.protocols == ("supervised",)
    assert entry.target == "baselines.losses.ensloss:EnsLoss"


def test_fnmatch_listing():
    assert set(method_names("*loss")) == {"ensloss"}
    assert all(n.startswith("e") for n in method_names("e*"))


def test_unknown_method_lists_names_and_suggests_nearest():
    with pytest.raises(UsageError) as err:
        get_method_class("enslos")
    text = str(err.value)
    assert "Did you mean 'ensloss'" in text
    assert "Registered methods:" in text and "groupdro" in text


def test_duplicate_registration_is_a_usage_error():
    @register_method("dup-test-method")
    class First(Method):
        family, protocols = "loss", frozenset({"supervised"})

    with pytest.raises(UsageError, match="'dup-test-method' is registered twice"):
        @register_method("dup-test-method")
        class Second(Method):
            family, protocols = "loss", frozenset({"supervised"})

    assert get_method_class("dup-test-method") is First


def test_method_module_file(tmp_path):
    path = tmp_path / "my_methods.py"
    path.write_text(textwrap.dedent('''
        from harness import Method, register_method

        @register_method("file-method")
        class FileMethod(Method):
            family, protocols = "loss", frozenset({"supervised"})
            hparams = dict(scale=1.0)
    '''))
    assert registry.load_method_module(path) == ["file-method"]
    assert create_method("file-method", {"scale": "2"}).hparams == {"scale": 2.0}
    with pytest.raises(UsageError, match="no such file"):
        registry.load_method_module(tmp_path / "missing.py")


def test_entry_point_methods_load_lazily(tmp_path, monkeypatch):
    (tmp_path / "ep_methods_pkg.py").write_text(textwrap.dedent('''
        from harness import Method, register_method

        @register_method("ep-method")
        class EpMethod(Method):
            family, protocols = "dg", frozenset({"supervised"})
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    fake = [EntryPoint("ep-method", "ep_methods_pkg:EpMethod", registry.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(registry, "entry_points", lambda group: fake if group == registry.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(registry, "_discovered", False)
    monkeypatch.setattr(registry, "_METHODS", {})
    registry.discover()
    assert "ep_methods_pkg" not in sys.modules  # listed, not imported
    assert registry._METHODS["ep-method"].source.startswith("entry point")
    assert get_method_class("ep-method").family == "dg"


def test_broken_method_file_breaks_only_its_entry(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text('import not_a_real_package\n\n@register_method("broken")\nclass B:\n    family = "loss"\n')
    entries = registry._scan_file(path, "broken_module")
    assert [e.name for e in entries] == ["broken"] and entries[0].family == "loss"
    with pytest.raises(UsageError, match="method 'broken' .* failed to import"):
        registry.MethodEntry("broken", "no_such_module_xyz:B").load()


def test_hparams_are_typed_against_defaults():
    assert create_method("focal", {"gamma": "3"}).hparams["gamma"] == 3.0
    assert isinstance(create_method("focal", {"gamma": "3"}).hparams["gamma"], float)
    with pytest.raises(HparamError, match="wrong type"):
        create_method("focal", {"gamma": "abc"})
    with pytest.raises(HparamError, match="Did you mean 'gamma'"):
        create_method("focal", {"gama": 1.0})
    with pytest.raises(HparamError, match="wrong type"):
        create_method("sam", {"rho": "true"})


def test_parse_hparams_targets_methods():
    out = parse_hparams(["focal.gamma=1", "ldr-kl.lam=5"], ["focal", "ldr-kl"])
    assert out == {"focal": {"gamma": 1.0}, "ldr-kl": {"lam": 5.0}}
    with pytest.raises(HparamError, match="key=value"):
        parse_hparams(["gamma"], ["focal"])
    with pytest.raises(HparamError, match="not among"):
        parse_hparams(["sam.rho=1"], ["focal"])
    with pytest.raises(HparamError, match="unknown hparam"):  # a plain key must suit every selected method
        parse_hparams(["gamma=1"], ["focal", "bce"])


def test_make_config_defaults_and_errors():
    cfg = make_config("ensloss,bce,ensloss", profile="standard", device="cpu")
    assert cfg.methods == ["ensloss", "bce"] and cfg.seeds == [0, 1, 2]
    assert make_config("erm", profile="smoke", device="cpu").seeds == [0]
    assert make_config("erm", profile="full", seeds=2, device="cpu").seeds == [0, 1]
    with pytest.raises(UsageError, match="--profile"):
        make_config("erm", profile="huge", device="cpu")
    with pytest.raises(UsageError, match="--seeds"):
        make_config("erm", seeds=0, device="cpu")
    with pytest.raises(UsageError, match="unknown method"):
        make_config("nosuch", device="cpu")


def test_unavailable_device_is_a_usage_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the error path needs one without")
    with pytest.raises(UsageError, match="CUDA is not available"):
        make_config("erm", device="cuda")
    with pytest.raises(UsageError, match="--device 'tpu9'"):
        make_config("erm", device="tpu9")


@pytest.mark.parametrize("value", ["1e999", "-1e999", "float('nan')", "nan", "inf"])
def test_a_non_finite_hparam_is_refused_before_any_training(value: str):
    with pytest.raises((HparamError, UsageError), match="not a finite number|wrong type"):
        make_config("focal", hparams=[f"gamma={value}"])  # parse time: nothing has been built or trained


def test_a_non_finite_number_inside_a_list_hparam_is_refused():
    with pytest.raises(HparamError, match="not finite"):
        resolve_hparams({"widths": [1.0, 2.0]}, {"widths": "[1.0, 1e999]"}, "m")


def test_list_shows_the_family_a_subclass_inherits(capsys):
    assert cli.main(["list", "rmds"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("rmds "))
    assert row.split()[1:3] == ["osr", "openset"]

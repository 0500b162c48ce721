"""Code fingerprints follow imports inside baselines/ and harness/ and ignore comments and docstrings."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.digest import REPO, files_digest, import_closure
from harness.records.provenance import method_files, stale_parts

SAM = '''"""Sharpness-aware minimisation."""

from harness.core.method import Method


def ascend(rho):
    """Climb to the worst nearby weights."""
    return rho * 2  # scaled
'''

UDIM = '''"""UDIM: SAM on unknown domains."""

from baselines.dg.sam import ascend
from harness.core.method import Method


class UDIM(Method):
    def step(self):
        return ascend(0.05)
'''

METHOD = '''class Method:
    pass
'''

CORAL = '''from harness.core.method import Method


def coral(x):
    return x
'''


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    files = {"baselines/__init__.py": "", "baselines/dg/__init__.py": "", "baselines/dg/sam.py": SAM,
             "baselines/dg/udim.py": UDIM, "baselines/dg/coral.py": CORAL, "harness/__init__.py": "",
             "harness/core/method.py": METHOD, "harness/data/__init__.py": "", "harness/data/load.py": "X = 1\n"}
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


PACKAGES = {"baselines/__init__.py", "baselines/dg/__init__.py", "harness/__init__.py"}  # run on import: followed


def udim_digest(root: Path) -> str:
    return files_digest(import_closure([root / "baselines/dg/udim.py"], root), root)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_closure_follows_imports_transitively(tree: Path):
    rel = {p.relative_to(tree).as_posix() for p in import_closure([tree / "baselines/dg/udim.py"], tree)}
    assert rel == {"baselines/dg/udim.py", "baselines/dg/sam.py", "harness/core/method.py"} | PACKAGES


def test_an_import_inside_a_function_is_followed(tree: Path):
    (tree / "baselines/dg/helper.py").write_text("def scale(x):\n    return 2 * x\n")
    inside = "    from baselines.dg.helper import scale\n\n    return scale(x)"
    edit(tree / "baselines/dg/coral.py", "    return x", inside)
    coral = [tree / "baselines/dg/coral.py"]
    assert tree / "baselines/dg/helper.py" in import_closure(coral, tree)
    before = files_digest(import_closure(coral, tree), tree)
    edit(tree / "baselines/dg/helper.py", "2 * x", "3 * x")
    assert files_digest(import_closure(coral, tree), tree) != before


def test_comment_and_docstring_edits_change_no_fingerprint(tree: Path):
    before = udim_digest(tree)
    edit(tree / "baselines/dg/sam.py", "# scaled", "# scaled by two, see the paper\n# another comment")
    edit(tree / "baselines/dg/udim.py", "class UDIM(Method):", "\n\nclass UDIM(Method):  # the method")
    assert udim_digest(tree) == before
    edit(tree / "baselines/dg/sam.py", "Climb to the worst nearby weights.", "Ascend along the gradient.")
    edit(tree / "baselines/dg/udim.py", "UDIM: SAM on unknown domains.", "Unknown-domain inconsistency.")
    assert udim_digest(tree) == before


def test_an_imported_files_code_edit_changes_the_importers_fingerprint(tree: Path):
    before = udim_digest(tree)
    edit(tree / "baselines/dg/sam.py", "rho * 2", "rho * 3")
    assert udim_digest(tree) != before


def test_an_unrelated_files_edit_changes_nothing(tree: Path):
    before = udim_digest(tree)
    edit(tree / "baselines/dg/coral.py", "return x", "return -x")
    (tmp := tree / "harness/data/load.py").write_text("X = 2\n")
    assert tmp.is_file() and udim_digest(tree) == before


def test_the_data_layer_is_not_followed(tree: Path):
    (tree / "harness/core/method.py").write_text("from harness.data.load import X\n\n" + METHOD)
    rel = {p.relative_to(tree).as_posix() for p in import_closure([tree / "harness/core/method.py"], tree)}
    assert rel == {"harness/core/method.py", "harness/__init__.py"}


def test_relative_imports_and_type_checking_imports(tree: Path):
    (tree / "baselines/dg/udim.py").write_text("from typing import TYPE_CHECKING\n\nfrom .sam import ascend\n\n"
                                               "if TYPE_CHECKING:\n    from baselines.dg.coral import coral\n")
    rel = {p.relative_to(tree).as_posix() for p in import_closure([tree / "baselines/dg/udim.py"], tree)}
    assert rel == {"baselines/dg/udim.py", "baselines/dg/sam.py", "harness/core/method.py"} | PACKAGES


def test_real_udim_fingerprint_covers_sam_and_not_coral():
    from harness.core.registry import get_method_class

    files = {p.relative_to(REPO).as_posix() for p in method_files(get_method_class("udim"))}
    assert {"baselines/dg/udim.py", "baselines/dg/sam.py", "harness/core/method.py"} <= files
    assert "baselines/dg/coral.py" not in files


def test_old_or_malformed_code_fields_read_as_stale_not_a_crash():
    now = {"method": "a" * 16, "protocol": "b" * 16, "suite": "c" * 16}
    assert stale_parts({"code": dict(now)}, now) == []
    assert stale_parts({}, now) == ["method", "protocol", "suite"]
    assert stale_parts({"code": "0123abcd"}, now) == ["method", "protocol", "suite"]
    assert stale_parts({"code": {"method": "a" * 16}}, now) == ["protocol", "suite"]

"""Code fingerprints hash the syntax tree of a method's files and follow their imports (issue 20)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.provenance import REPO, code_digest, import_closure, method_files
from harness.registry import get_method_class


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """A copy of the files udim's digest covers (and one it does not), edited freely."""
    files = set(method_files(get_method_class("udim"))) | {REPO / "baselines" / "dg" / "coral.py"}
    for path in files:
        dest = tmp_path / path.relative_to(REPO)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
    return tmp_path


def udim_digest(root: Path) -> str:
    return code_digest(import_closure([root / "baselines" / "dg" / "udim.py"], root), root)


def test_udim_digest_follows_its_import_of_sam() -> None:
    files = {p.relative_to(REPO).as_posix() for p in method_files(get_method_class("udim"))}
    assert {"baselines/dg/udim.py", "baselines/dg/sam.py", "harness/method.py", "harness/engine.py"} <= files
    assert "baselines/dg/coral.py" not in files


def test_comment_and_docstring_edits_stale_nothing(tree: Path) -> None:
    before = udim_digest(tree)
    sam = tree / "baselines" / "dg" / "sam.py"
    text = sam.read_text()
    sam.write_text('"""A rewritten module docstring."""\n# a new comment\n' + text.split('"""', 2)[2]
                   .replace("\n\n\n", "\n\n\n# another comment\n", 1))
    assert udim_digest(tree) == before
    udim = tree / "baselines" / "dg" / "udim.py"
    udim.write_text(udim.read_text().replace("import torch\n", "import torch  # the tensor library\n", 1))
    assert udim_digest(tree) == before


def test_code_edit_of_sam_stales_udim_and_unrelated_edit_does_not(tree: Path) -> None:
    before = udim_digest(tree)
    coral = tree / "baselines" / "dg" / "coral.py"
    coral.write_text(coral.read_text() + "\nUNUSED = 1\n")
    assert udim_digest(tree) == before
    sam = tree / "baselines" / "dg" / "sam.py"
    sam.write_text(sam.read_text() + "\nUNUSED = 1\n")
    assert udim_digest(tree) != before


def test_old_record_code_format_reads_as_stale() -> None:
    from harness.provenance import CODE_PARTS, stale_parts

    current = {part: "0" * 16 for part in CODE_PARTS}
    assert stale_parts({"code": "a-string-from-an-old-version"}, current) == list(CODE_PARTS)
    assert stale_parts({}, current) == list(CODE_PARTS)
    assert stale_parts({"code": dict(current)}, current) == []

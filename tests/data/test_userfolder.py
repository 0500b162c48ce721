"""Issue 29 item 1: ``--dataset KIND:PATH,opt=value,...``: options, folder checks before any image is decoded,
views of folders that need one, and fingerprints through symbolic links."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from harness.core.digest import REPO
from harness.data import load_imagefolder
from harness.data.cache import source_listing
from harness.data.userfolder import VIEW_FILE, check_folder, parse, prepare
from harness.errors import UsageError
from harness.running.config import make_config
from harness.suites import imagefolder


def _images(folder: Path, n: int, value: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((8, 8, 3), (value + 13 * i) % 256, np.uint8)).save(folder / f"{i}.png")


@pytest.fixture
def plain(tmp_path, cache_dir) -> Path:
    root = tmp_path / "pets"
    for c, name in enumerate(["cat", "dog", "owl"]):
        _images(root / name, 4, 60 * c)
    return root


def digits_folder(base: Path, per_class: int = 60) -> Path:
    """The folder of issue 29: a wrapper (``MyPhotos/Images/``), class folders that are symbolic links to another
    place, a clutter folder without images and a corrupt file; classes are sklearn digits 0, 1 and 7."""
    d = load_digits()
    store, root = base / "store", base / "MyPhotos" / "Images"
    root.mkdir(parents=True)
    for c in (0, 1, 7):
        cls = store / f"digit{c}"
        cls.mkdir(parents=True)
        for i, img in enumerate(d.images[d.target == c][:per_class]):
            Image.fromarray((img / 16 * 255).astype(np.uint8)).resize((16, 16)).convert("RGB").save(cls / f"{i}.png")
        os.symlink(cls, root / f"digit{c}")
    (root / "clutter").mkdir()
    (root / "clutter" / "notes.txt").write_text("not images")
    (store / "digit7" / "broken.jpg").write_bytes(b"not an image")
    return base / "MyPhotos"


# -- parsing --------------------------------------------------------------------------------------------------------


def test_options_follow_the_path(plain):
    v = parse(f"imagefolder:{plain},exclude=dog,exclude=_*,name=my-pets,skip_corrupt")
    assert (v.kind, v.path, v.exclude, v.name, v.skip_corrupt) == ("imagefolder", plain, ("dog", "_*"), "my-pets",
                                                                   True)
    assert parse(f"openset:{plain},known=2,seed=3,name=x").passed_on == ("known=2", "seed=3")
    assert parse(f"imagefolder:{plain},skip_corrupt=false").skip_corrupt is False
    assert parse("mykind:/anything") is None  # a third-party suite's kind is handed on as given


def test_a_path_may_hold_commas(tmp_path, cache_dir):
    root = tmp_path / "a,b"
    for name in ("x", "y"):
        _images(root / name, 3)
    assert parse(f"imagefolder:{root},name=ab").path == root


@pytest.mark.parametrize("tail, match", [
    (",foo=1", "unknown option 'foo=1'.*exclude=.*name=.*skip_corrupt"),
    (",name=a b", "may hold only letters"),
    (",known=3", "unknown option 'known=3'"),  # openset's option on an imagefolder value
])
def test_bad_options_are_usage_errors(plain, tail, match):
    with pytest.raises(UsageError, match=match):
        parse(f"imagefolder:{plain}{tail}")


def test_a_missing_folder_is_named_without_its_options(tmp_path):
    with pytest.raises(UsageError, match=f"{tmp_path / 'nope'} is not a folder"):
        parse(f"imagefolder:{tmp_path / 'nope'},name=x")


# -- folder checks, before any image is decoded -------------------------------------------------------------------


def test_a_wrapper_folder_is_unwrapped(tmp_path, cache_dir):
    for name in ("cat", "dog"):
        _images(tmp_path / "shots" / "Images" / name, 3)
    plan = check_folder(parse(f"imagefolder:{tmp_path / 'shots'}"))
    assert plan.unwrapped == ["Images"] and [c.name for c in plan.classes] == ["cat", "dog"]
    done = prepare(f"imagefolder:{tmp_path / 'shots'}")
    view = Path(done.value.removeprefix("imagefolder:"))
    assert view.name == "shots" and "unwrapped Images/" in done.notes[0]  # named after the folder the user named
    assert imagefolder.case_name(view).startswith("imagefolder-shots-")


def test_one_class_is_refused_with_the_fix(tmp_path, cache_dir):
    _images(tmp_path / "one" / "cat", 5)
    with pytest.raises(UsageError, match=r"has one class folder \(cat, 5 images\).*one subfolder per class"):
        prepare(f"imagefolder:{tmp_path / 'one'}")
    for name in ("a", "b"):  # one folder whose subfolders hold images beside images of its own: which is meant?
        _images(tmp_path / "odd" / "top" / name, 3)
    _images(tmp_path / "odd" / "top", 2)
    with pytest.raises(UsageError, match=rf"its subfolders a, b hold images: .*imagefolder:{tmp_path / 'odd' / 'top'}"):
        prepare(f"imagefolder:{tmp_path / 'odd'}")
    assert not (cache_dir / "datasets").exists()  # nothing was decoded or cached


def test_empty_and_tiny_classes_are_named_with_the_option_that_fixes_them(plain):
    (plain / "clutter").mkdir()
    with pytest.raises(UsageError, match=rf"clutter of {plain} hold no image files.*imagefolder:{plain},"
                                         r"exclude=clutter$"):
        prepare(f"imagefolder:{plain}")
    _images(plain / "rare", 2)
    with pytest.raises(UsageError, match=r"rare \(2 images\).*at least 3 images per class.*exclude=rare"):
        prepare(f"imagefolder:{plain},exclude=clutter")
    assert prepare(f"openset:{plain},exclude=clutter").value  # the open-set split needs 2: rare stays
    with pytest.raises(UsageError, match="exclude='bird' matches no class folder"):
        prepare(f"imagefolder:{plain},exclude=clutter,exclude=rare,exclude=bird")


# -- views ----------------------------------------------------------------------------------------------------------


def test_a_plain_folder_is_handed_on_as_given(plain):
    assert prepare(f"imagefolder:{plain}").value == f"imagefolder:{plain}"
    assert make_config("erm", datasets=[f"imagefolder:{plain}"]).datasets == [f"imagefolder:{plain}"]


def test_options_make_a_view_of_links(plain, cache_dir):
    value = f"imagefolder:{plain},exclude=owl,name=two"
    view = Path(prepare(value).value.removeprefix("imagefolder:"))
    assert view.is_relative_to(cache_dir) and view.name == "two"
    assert sorted(p.name for p in view.iterdir()) == [VIEW_FILE, "cat", "dog"]
    assert all(f.is_symlink() and f.resolve().is_relative_to(plain.resolve()) for f in view.rglob("*.png"))
    manifest = json.loads((view / VIEW_FILE).read_text())
    assert manifest["source"] == str(plain) and manifest["excluded"] == ["owl"] and manifest["value"] == value
    stamp = (view / VIEW_FILE).stat().st_mtime_ns
    listing = imagefolder.listing_hash(view)
    assert Path(prepare(value).value.removeprefix("imagefolder:")) == view  # the same view, unchanged
    assert (view / VIEW_FILE).stat().st_mtime_ns == stamp and imagefolder.listing_hash(view) == listing
    (plain / "dog" / "0.png").unlink()  # the user's files change: the view follows, and so does the fingerprint
    prepare(value)
    assert not (view / "dog" / "0.png").exists() and imagefolder.listing_hash(view) != listing


def test_symlinked_class_folders_are_fingerprinted_through_the_links(tmp_path, cache_dir):
    store, root = tmp_path / "store", tmp_path / "linked"
    root.mkdir()
    for name in ("cat", "dog", "owl"):
        _images(store / name, 3)
        os.symlink(store / name, root / name)
    assert source_listing([root])  # the cache key lists the files behind the links
    view = Path(prepare(f"imagefolder:{root}").value.removeprefix("imagefolder:"))
    assert view != root and view.name == "linked"
    before = imagefolder.listing_hash(view)
    f = store / "cat" / "0.png"
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    assert imagefolder.listing_hash(view) != before  # a changed file behind a link makes the record stale
    os.symlink(root, store / "cat" / "loop")  # a link loop ends
    assert source_listing([root])


def test_a_view_carries_skip_corrupt_to_the_loader(plain, cache_dir):
    (plain / "dog" / "bad.png").write_bytes(b"no image here")
    view = Path(prepare(f"imagefolder:{plain},skip_corrupt").value.removeprefix("imagefolder:"))
    ds = load_imagefolder(view, size=8)
    assert ds.meta["skipped_files"] == ["dog/bad.png"] and len(ds) == 12
    assert ds.meta["user_folder"]["source"] == str(plain)


# -- through pytest, as a user runs it ----------------------------------------------------------------------------


def _pytest(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HARNESS_CACHE=str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "pytest", *args, f"--results-dir={tmp_path / 'results'}", "-p", "no:cacheprovider",
           "-p", "no:randomly", "--benchmark-disable", "-rs"]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_the_issue_folder_runs_with_one_dataset_string(tmp_path):
    """Wrapper, clutter class, corrupt file and symlinked classes: one ``--dataset`` string gives a named case that
    beats chance, and its record says what was unwrapped, left out and skipped."""
    folder = digits_folder(tmp_path / "data")
    value = f"imagefolder:{folder},exclude=clutter,name=digits,skip_corrupt"
    # three seeds: a user folder's case name holds its path's hash, so each run here draws other seed streams, and
    # at the smoke budget one seed in a few stays at chance on this 3-class folder
    done = _pytest(["suites/test_imagefolder.py", "--method=erm", "--seeds=3", f"--dataset={value}"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    (path,) = (tmp_path / "results" / "imagefolder").glob("imagefolder-digits-*/erm__smoke.json")
    rec = json.loads(path.read_text())
    assert rec["task_info"]["classes"] == ["digit0", "digit1", "digit7"]
    assert max(rec["metrics"]["test_acc"]["per_seed"]) > 1 / 3  # chance with three balanced classes
    data = rec["run"]["data"]
    assert data["skipped_files"] == ["digit7/broken.jpg"] and data["user_folder"]["excluded"] == ["clutter"]
    assert data["user_folder"]["unwrapped"] == ["Images"] and data["user_folder"]["value"] == value


@pytest.mark.slow
def test_a_folder_too_small_for_one_suite_is_skipped_there_not_fatal(tmp_path, plain):
    """Two classes: a classification case, but too few for an open-set split: openset skips it with the reason."""
    value = f"imagefolder:{plain},exclude=owl"
    done = _pytest(["suites/test_openset.py", "suites/test_imagefolder.py", "--method=erm", f"--dataset={value}",
                    "--collect-only", "-q"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "openset-dataset0-not-for-this-suite" in done.stdout
    assert "test_imagefolder[erm-imagefolder-pets-" in done.stdout
    bad = _pytest(["suites/test_imagefolder.py", "--method=erm", f"--dataset=imagefolder:{plain},exclude=x",
                   "--collect-only", "-q"], tmp_path)
    assert bad.returncode == 4 and "exclude='x' matches no class folder" in bad.stderr

"""Atomic writes: concurrent writers of one path never share a temporary file, a failed write
leaves the old file, and nothing half-written is left behind."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from fmpretrain.files import (
    atomic_open,
    atomic_write_text,
    is_partial,
    replace_dir,
    temp_sibling,
)


def race(work, target) -> None:
    """``work(str(target), tag)`` in two forked processes at once (tags 1 and 2); both succeed."""
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=work, args=(str(target), tag)) for tag in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0


def _write_many(path: str, tag: int) -> None:
    for _ in range(50):
        with atomic_open(path) as handle:
            np.savez_compressed(handle, tag=np.full(1000, tag))


def test_concurrent_writers_of_one_path_do_not_collide(tmp_path):
    target = tmp_path / "features.npz"
    race(_write_many, target)
    with np.load(target) as saved:  # one writer's whole file, never a mix
        assert len(set(saved["tag"].tolist())) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.npz"]


def test_failed_write_keeps_the_old_file_and_leaves_no_partial(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as handle:
        handle.write("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_temp_siblings_are_unique_and_recognised():
    names = {temp_sibling(Path("/x/shard-000.tar")) for _ in range(100)}
    assert len(names) == 100
    assert all(is_partial(n) and n.parent == Path("/x") for n in names)
    assert not is_partial("shard-000.tar")


def test_atomic_open_refuses_append():
    with pytest.raises(ValueError, match="mode 'a'"), atomic_open("/tmp/never", "a"):
        pass


def _replace_many(target: str, tag: int) -> None:
    for i in range(30):
        src = Path(target).with_name(f"src-{tag}-{i}")
        src.mkdir()
        for name in ("a", "b", "c"):
            (src / name).write_text(str(tag))
        replace_dir(src, target)


def test_concurrent_directory_replacements_leave_one_whole_directory(tmp_path):
    target = tmp_path / "release"
    race(_replace_many, target)
    contents = {f.name: f.read_text() for f in target.iterdir()}
    assert sorted(contents) == ["a", "b", "c"] and len(set(contents.values())) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release"]

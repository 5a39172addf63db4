"""Atomic writes: the old version or the new one, never half; and ordinary permissions."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from lorauq.atomic import atomic_dir, atomic_path, write_text_atomic


def files_in(folder):
    return sorted(p.name for p in folder.iterdir())


def test_atomic_path_success_replaces(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp != target
        tmp.write_text("new")
        assert target.read_text() == "old"  # not visible until the block ends
    assert target.read_text() == "new"
    assert files_in(tmp_path) == ["out.txt"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_atomic_path_failure_keeps_old_and_cleans_up(tmp_path, error):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(error), atomic_path(target) as tmp:
        tmp.write_text("half written")
        raise error("killed")
    assert target.read_text() == "old"
    assert files_in(tmp_path) == ["out.txt"]


def test_atomic_path_failure_without_old_file(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    with pytest.raises(ValueError), atomic_path(target) as tmp:
        tmp.write_bytes(b"x")
        raise ValueError
    assert not target.exists()
    assert files_in(tmp_path / "sub") == []


def test_atomic_path_temp_removed_even_if_never_written(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(OSError), atomic_path(target) as tmp:
        os.unlink(tmp)
        raise OSError("gone")
    assert files_in(tmp_path) == []


def test_write_text_atomic(tmp_path):
    target = tmp_path / "a" / "b" / "metrics.json"
    write_text_atomic(target, '{"x": 1}\n')
    assert target.read_text(encoding="utf-8") == '{"x": 1}\n'
    write_text_atomic(target, "ünïcode ✓")
    assert target.read_text(encoding="utf-8") == "ünïcode ✓"
    assert files_in(target.parent) == ["metrics.json"]


def test_atomic_dir_failure_between_renames_restores_the_previous_folder(tmp_path, monkeypatch):
    target = tmp_path / "epoch-1"
    target.mkdir()
    (target / "weights").write_text("previous")
    real_rename = Path.rename

    def failing_rename(self, destination):
        if Path(destination) == target:
            raise OSError("simulated failure while renaming the new folder into place")
        return real_rename(self, destination)

    monkeypatch.setattr(Path, "rename", failing_rename)
    with pytest.raises(OSError, match="simulated failure"), atomic_dir(target) as tmp:
        (tmp / "weights").write_text("new")
    assert (target / "weights").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-1"]  # no hidden leftovers


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outputs_get_the_permissions_of_an_ordinary_write(tmp_path, umask):
    """mkstemp/mkdtemp create 0600/0700; a shared DVC cache or group folder needs what the
    user's umask gives ``open``/``mkdir``. Checked in a child so the umask change stays there."""
    code = f"""
import os, sys, tempfile
from pathlib import Path
from lorauq.atomic import atomic_dir, atomic_path
os.umask({umask:#o})
root = Path(sys.argv[1])
with atomic_path(root / "file.txt") as tmp:
    tmp.write_text("x")
with atomic_dir(root / "folder") as tmp:
    (tmp / "inner.txt").write_text("y")
    (tmp / "sub").mkdir(mode=0o700)
    fd, private = tempfile.mkstemp(dir=tmp / "sub")  # a library's own 0600 temporary
    os.close(fd)
    os.replace(private, tmp / "sub" / "weights.safetensors")
with atomic_dir(root / "folder") as tmp:  # replacing an existing folder
    (tmp / "inner.txt").write_text("z")
    (tmp / "sub").mkdir(mode=0o700)
    fd, private = tempfile.mkstemp(dir=tmp / "sub")
    os.close(fd)
    os.replace(private, tmp / "sub" / "weights.safetensors")
(root / "plain.txt").write_text("p")
(root / "plain").mkdir()
"""
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True)
    assert _mode(tmp_path / "file.txt") == 0o666 & ~umask == _mode(tmp_path / "plain.txt")
    assert _mode(tmp_path / "folder") == 0o777 & ~umask == _mode(tmp_path / "plain")
    assert _mode(tmp_path / "folder" / "inner.txt") == 0o666 & ~umask
    assert (tmp_path / "folder" / "inner.txt").read_text() == "z"
    assert _mode(tmp_path / "folder" / "sub") == 0o777 & ~umask
    assert _mode(tmp_path / "folder" / "sub" / "weights.safetensors") == 0o666 & ~umask


def test_atomic_helpers_leave_the_process_umask_as_it_was(tmp_path):
    before = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "f") as tmp:
            tmp.write_text("x")
        with atomic_dir(tmp_path / "d"):
            pass
        assert os.umask(0o027) == 0o027
    finally:
        os.umask(before)

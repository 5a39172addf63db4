"""Atomic file and folder writes: a killed run leaves the old version or the new one, never half.

Every file lorauq writes goes through :func:`atomic_path` or :func:`atomic_dir`. The result
gets the permissions an ordinary write would (``0666``/``0777`` minus the umask), not the
private ``0600``/``0700`` of ``mkstemp``/``mkdtemp``: outputs live in shared DVC caches and
group folders, where the rest of the group must be able to read them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lorauq.errors import StoreError

__all__ = ["atomic_dir", "atomic_path", "remove_stale_temps", "write_text_atomic"]

#: errno values that mean "the disk is full", not "this is a bug": reported as StoreError.
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
#: Names of the temporaries below: ``.<target>.<mkstemp/mkdtemp suffix>[.tmp]``.
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}(\.tmp)?$")


def _umask() -> int:
    """The process umask (``os.umask`` can only be read by setting it, so set it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _ordinary_permissions(path: Path, *, folder: bool) -> None:
    """Give a temporary what ``open(..., "w")`` or ``mkdir`` would have given the final name.

    A folder's whole content gets it too: libraries that write files through their own
    private temporaries (safetensors, for one) leave them ``0600`` inside the folder.
    """
    umask = _umask()
    os.chmod(path, (0o777 if folder else 0o666) & ~umask)
    if not folder:
        return
    for parent, folders, files in os.walk(path):
        for name in folders:
            os.chmod(Path(parent) / name, 0o777 & ~umask)
        for name in files:
            file = Path(parent) / name
            if not file.is_symlink():
                os.chmod(file, 0o666 & ~umask)


def _disk_full(target: Path, exc: BaseException) -> StoreError | None:
    """A StoreError naming ``target`` if ``exc`` is a full disk or quota, else None."""
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
        return StoreError(
            f"{target}: no space left while writing ({exc.strerror}); the previous version, "
            "if any, is kept and the partial write was removed"
        )
    return None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds.

    The temporary file lives in the same folder, so the final ``os.replace`` is atomic on
    POSIX: readers see the old file or the complete new one. On any error the temporary
    file is removed and the old file is untouched; a full disk becomes a StoreError naming
    ``path`` (a bare ``OSError: [Errno 28]`` from inside pyarrow names no file).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _ordinary_permissions(tmp, folder=False)
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        full = _disk_full(target, exc)
        if full is not None:
            raise full from exc
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` only if the block succeeds.

    A checkpoint or model folder is therefore complete or absent: a killed run never leaves
    a folder that looks finished. An existing ``path`` is first renamed aside (not deleted
    in place), so a kill during the swap leaves whole folders only, never a half-deleted one.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    old: Path | None = None
    try:
        yield tmp
        _ordinary_permissions(tmp, folder=True)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
            os.replace(target, old)  # an empty folder is replaced atomically on POSIX
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException as exc:
        if old is not None and old.exists():
            if target.exists():
                shutil.rmtree(old, ignore_errors=True)
            else:  # failed between the two renames: put the previous folder back
                os.replace(old, target)
        shutil.rmtree(tmp, ignore_errors=True)
        full = _disk_full(target, exc)
        if full is not None:
            raise full from exc
        raise


def remove_stale_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete temporaries that :func:`atomic_path`/:func:`atomic_dir` left in ``folder`` when
    their process was killed (SIGKILL runs no cleanup); return what was removed.

    Only call this where no other process writes into ``folder`` at the same time (a
    member's checkpoint folder belongs to its one training run).
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    removed = []
    for child in root.iterdir():
        if not _TEMP_NAME.match(child.name):
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
        removed.append(child)
    return removed


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")

"""Progress of the long loops, drawn for whoever is watching.

A person running a notebook in JupyterLab gets tqdm's live widget (``tqdm.auto`` with
ipywidgets); a terminal gets tqdm's text bar. Nobody watches a papermill run (the DVC stages):
there a bar is a stream of carriage-return redraws on stderr, which the executed notebook
keeps as hundreds of red outputs. So under papermill each loop prints one short line on
stdout when it ends instead (``member 0 epoch 1/6: 42 steps in 3.1 s, loss=0.912``).

The mode comes from the environment variable ``LORAUQ_PROGRESS``, inherited by the notebook's
kernel from the process that starts it: the DVC stages set ``LORAUQ_PROGRESS=lines`` in front
of ``papermill`` (dvc.yaml), and so should a papermill run by hand. A kernel cannot tell
papermill from JupyterLab by itself (neither gives it a TTY), hence the explicit variable.

``bars`` (the default): tqdm.auto; ``lines``: one stdout line per loop; ``off``: nothing.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

from tqdm.auto import tqdm

from lorauq.errors import ConfigError

__all__ = ["ENV", "MODES", "LineProgress", "T", "progress_bar", "progress_mode", "progress_note"]

ENV = "LORAUQ_PROGRESS"
MODES = ("bars", "lines", "off")

T = TypeVar("T")


def progress_mode() -> str:
    """``LORAUQ_PROGRESS`` checked against :data:`MODES`; ``bars`` when it is unset or empty."""
    raw = os.environ.get("LORAUQ_PROGRESS", "")
    mode = raw.strip().lower() or "bars"
    if mode not in MODES:
        raise ConfigError(f"environment variable {ENV}={raw!r}: expected one of {', '.join(MODES)}")
    return mode


class LineProgress(Generic[T]):
    """Iterates silently, then prints ``desc: N steps in T s[, postfix]`` on stdout once.

    Offers the part of tqdm's interface the loops use (``set_postfix``), so a loop does not
    care which it got.
    """

    def __init__(self, iterable: Iterable[T], desc: str, unit: str) -> None:
        self.iterable = iterable
        self.desc = desc
        self.unit = unit
        self.postfix: dict[str, object] = {}

    def set_postfix(self, refresh: bool = True, **values: object) -> None:
        """Remember the values for the closing line (``refresh`` only matters to tqdm)."""
        del refresh
        self.postfix = values

    def __iter__(self) -> Iterator[T]:
        start = time.perf_counter()
        count = 0
        for item in self.iterable:
            yield item
            count += 1
        elapsed = time.perf_counter() - start
        extra = "".join(f", {key}={value}" for key, value in self.postfix.items())
        print(f"{self.desc}: {count} {self.unit} in {elapsed:.1f} s{extra}", flush=True)


def progress_bar(
    iterable: Iterable[T], desc: str, *, enabled: bool = True, unit: str = "steps"
) -> tqdm | LineProgress[T]:
    """``iterable`` with progress in the mode of :func:`progress_mode` (silent if not enabled).

    ``enabled=False`` is the callers' own switch (tests, library use): it wins over the mode.
    """
    mode = progress_mode() if enabled else "off"
    if mode == "lines":
        return LineProgress(iterable, desc, unit)
    return tqdm(iterable, desc=desc, disable=mode == "off")


def progress_note(message: str, *, enabled: bool = True) -> None:
    """A one-off message beside the bars (tqdm.write keeps a live text bar intact)."""
    mode = progress_mode() if enabled else "off"
    if mode == "bars":
        tqdm.write(message, file=sys.stdout)
    elif mode == "lines":
        print(message, flush=True)

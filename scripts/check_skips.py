"""Fail CI when a test skipped for a reason outside a short allowlist.

A test that skips is a test that did not run. A few reasons are legitimate on the CPU machine
CI runs on: there is no GPU (or, on a GPU machine, one is present, so the no-GPU branch
cannot run), and the optional full-size data and real tokenizers (``LORAUQ_REALDATA``,
``LORAUQ_REALTOKENIZERS``) are not there. Any other skip (no chromium for the JupyterLab check,
no C compiler, a missing package) means CI claims a test it never ran, so the run fails and
lists them.

Usage: ``python scripts/check_skips.py report.xml`` on the JUnit XML of
``pytest --junitxml=report.xml``; prints each skip and exits 1 if one is not allowed.
Expected failures (``xfail``) are not skips and are left to pytest.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

__all__ = ["ALLOWED", "Skip", "disallowed", "skips"]

#: What may skip in CI, each a pattern searched in the skip's reason.
ALLOWED = (
    re.compile(r"\bGPU is present\b|\bneeds? a GPU\b|\bno GPU\b|CUDA is not available"),
    re.compile(r"\bLORAUQ_REALDATA\b"),
    re.compile(r"\bLORAUQ_REALTOKENIZERS\b"),
)


class Skip(NamedTuple):
    """One skipped test: ``classname::name`` and the reason pytest recorded."""

    test: str
    reason: str


def skips(report: str | Path) -> list[Skip]:
    """Every skipped test of a pytest JUnit XML report (xfails are left out)."""
    path = Path(report)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise SystemExit(f"error: {path}: not a readable JUnit XML report ({exc})") from exc
    found = []
    for case in root.iter("testcase"):
        for skipped in case.findall("skipped"):
            if skipped.get("type") == "pytest.xfail":
                continue
            reason = skipped.get("message") or (skipped.text or "").strip()
            found.append(Skip(f"{case.get('classname')}::{case.get('name')}", reason))
    return found


def disallowed(found: Sequence[Skip]) -> list[Skip]:
    """The skips whose reason no pattern of :data:`ALLOWED` matches."""
    return [s for s in found if not any(p.search(s.reason) for p in ALLOWED)]


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        print("usage: python scripts/check_skips.py REPORT.xml", file=sys.stderr)
        return 2
    found = skips(args[0])
    bad = disallowed(found)
    for skip in found:
        print(f"{'NOT ALLOWED' if skip in bad else 'allowed'}: {skip.test}: {skip.reason}")
    print(f"{len(found)} skipped, {len(bad)} not allowed")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Generated text kept between two marker lines of a hand-written file.

dvc.yaml's method stage (:mod:`lorauq.methods.pipeline`), the README's results block
(``scripts/readme_results.py``) and docs/gpu.md's tables (``scripts/gpu_tables.py``) are
generated into files people also edit by hand; the markers say where the generated part
starts and ends, so a regenerator rewrites that part and nothing else.
"""

from __future__ import annotations

from lorauq.errors import ConfigError

__all__ = ["replace_marked"]


def replace_marked(text: str, start: str, end: str, block: str, where: str) -> str:
    """``text`` with everything from ``start`` to ``end`` (both markers included) replaced by
    ``block``, which brings its own markers. Exactly one of each marker must be there: a file
    with none or two has been edited by hand in a way a rewrite could damage, so it is an error
    naming ``where``."""
    if text.count(start) != 1 or text.count(end) != 1:
        raise ConfigError(f"{where}: expected exactly one {start!r} … {end!r} block")
    head, rest = text.split(start)
    _old, tail = rest.split(end)
    return head + block + tail

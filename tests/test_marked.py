"""lorauq.marked: a regenerator rewrites the marked block of a hand-edited file, and nothing else."""

from __future__ import annotations

import pytest

from lorauq.errors import ConfigError
from lorauq.marked import replace_marked

START, END = "<!-- begin -->", "<!-- end -->"


def test_the_block_and_its_markers_are_replaced_and_the_rest_kept() -> None:
    text = f"head\n{START}\nold line\n{END}\ntail\n"
    block = f"{START}\nnew 1\nnew 2\n{END}"
    assert replace_marked(text, START, END, block, "f.md") == f"head\n{block}\ntail\n"


@pytest.mark.parametrize(
    "text",
    [
        "no markers at all\n",
        f"{START}\nonly the start\n",
        f"{START}\na\n{END}\n{START}\nb\n{END}\n",  # two blocks: which one?
    ],
)
def test_a_file_without_exactly_one_block_is_an_error_naming_it(text: str) -> None:
    with pytest.raises(ConfigError, match=r"docs/gpu\.md: expected exactly one"):
        replace_marked(text, START, END, f"{START}\n{END}", "docs/gpu.md")

"""benchmarks/laplace_curvature.py: every curvature batch size fits the same diagonal GGN."""

from __future__ import annotations

import pytest

from benchmarks import laplace_curvature


@pytest.mark.slow
def test_curvature_batch_sizes_agree_on_the_diagonal(capsys) -> None:
    out = laplace_curvature.main(["--questions", "8", "--batches", "1,4"])
    assert out["diagonal_diff_batch1"] == 0.0
    # left padding and batching change the float sums only: the same curvature
    assert out["diagonal_diff_batch4"] < 1e-4
    printed = capsys.readouterr().out
    assert "8 questions" in printed and "batch" in printed

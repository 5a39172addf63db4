"""Every test starts from the session's global state, whatever the test before it changed.

The first test changes each piece of state ``conftest.GlobalState`` covers (``session_state``
is that state as the session found it), without monkeypatch; the second (pytest runs a module's tests in file order) finds each back as the
session started.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch


def test_a_test_changes_the_global_state(tmp_path: Path, session_state) -> None:
    torch.set_num_threads(session_state.threads + 2)
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    os.environ["LORAUQ_PROGRESS"] = "lines"
    os.environ["LORAUQ_TEST_LEFTOVER"] = "1"
    os.chdir(tmp_path)
    assert torch.get_num_threads() == session_state.threads + 2
    assert torch.zeros(1).dtype == torch.float64


def test_the_next_test_starts_from_the_session_state(session_state) -> None:
    assert torch.get_num_threads() == session_state.threads == 1
    assert torch.get_default_dtype() == session_state.dtype == torch.float32
    assert torch.equal(torch.get_rng_state(), session_state.torch_rng)
    assert np.array_equal(np.random.get_state()[1], session_state.numpy_rng[1])
    assert random.getstate() == session_state.python_rng
    assert os.environ.get("LORAUQ_PROGRESS") == session_state.environ.get("LORAUQ_PROGRESS")
    assert "LORAUQ_TEST_LEFTOVER" not in os.environ
    assert os.getcwd() == session_state.cwd

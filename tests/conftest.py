"""What every test shares: the tiny base, the global state each test starts from, the tiers.

- **One tiny base per session.** ``tiny_base`` (the tiny world's base model and tokenizer,
  saved; ``tinyworld.BASE``) and ``tiny_tokenizer`` are built once and shared by every tier:
  building one is ten pre-training steps of a one-layer model. Tests read them and never write
  into the folder (copy it first). ``tiny_member`` is member 0 trained one epoch on that base;
  it trains, so the tests that use it are ``slow``.
- **The same start for every test.** After each test the global state is put back as the
  session found it, whatever the test or its fixtures changed: the torch thread count (one
  thread: the tiny models run fastest so, and CPU floats are bitwise reproducible only at a
  fixed count; a test that wants more sets it), the default dtype, the torch, numpy and
  ``random`` generators, the environment (``LORAUQ_PROGRESS``, ``OMP_NUM_THREADS`` …) and
  the working directory. A test's result then does not depend on which tests ran before it.
- **The tiers** (``slow_policy``): a test that trains or runs a stage is marked ``slow``;
  ``make test-fast`` runs the others. ``pytester`` tests the policy itself.
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tinyworld as tw
import torch
from slow_policy import shared_build

pytest_plugins = ["pytester", "slow_policy"]

#: Keys pytest itself sets and clears around each test phase.
PYTEST_ENV = frozenset({"PYTEST_CURRENT_TEST"})


@dataclasses.dataclass(frozen=True)
class GlobalState:
    """The process-wide settings a test can change, as they were at one moment."""

    threads: int
    dtype: torch.dtype
    torch_rng: torch.Tensor
    numpy_rng: tuple
    python_rng: tuple
    environ: dict[str, str]
    cwd: str

    @classmethod
    def now(cls) -> GlobalState:
        return cls(
            threads=torch.get_num_threads(),
            dtype=torch.get_default_dtype(),
            torch_rng=torch.get_rng_state(),
            numpy_rng=np.random.get_state(),
            python_rng=random.getstate(),
            environ=dict(os.environ),
            cwd=os.getcwd(),
        )

    def restore(self) -> None:
        torch.set_num_threads(self.threads)
        torch.set_default_dtype(self.dtype)
        torch.set_rng_state(self.torch_rng)
        np.random.set_state(self.numpy_rng)
        random.setstate(self.python_rng)
        os.chdir(self.cwd)
        for key in set(os.environ) - set(self.environ) - PYTEST_ENV:
            del os.environ[key]
        for key, value in self.environ.items():
            if key not in PYTEST_ENV and os.environ.get(key) != value:
                os.environ[key] = value


@pytest.fixture(scope="session", autouse=True)
def session_state() -> GlobalState:
    """The state every test starts from: as the session found it, on one torch thread."""
    torch.set_num_threads(1)
    return GlobalState.now()


@pytest.fixture(autouse=True)
def restore_global_state(session_state: GlobalState) -> Iterator[None]:
    yield
    session_state.restore()


@pytest.fixture(scope="session")
@shared_build("ten pre-training steps of a one-layer model, about a second, once per session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny world's base model and tokenizer, saved (read-only for tests: copy to change)."""
    return tw.build_base(tmp_path_factory.mktemp("tiny-base") / "base")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_base: Path):
    """``tiny_base``'s tokenizer, loaded once."""
    from lorauq.model import load_tokenizer

    return load_tokenizer(str(tiny_base), tw.BASE)


@pytest.fixture(scope="session")
def tiny_member(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Member 0 trained one epoch on ``tiny_base`` (``epoch-1/`` inside); it trains, so a test
    using it is ``slow``. Read-only for tests: copy it to damage or resume it."""
    folder = tmp_path_factory.mktemp("tiny-member") / "member-0"
    tw.train(tiny_base, folder, epochs=1)
    return folder

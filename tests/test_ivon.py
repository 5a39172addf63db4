"""IVON against hand-built cases: a collapsed posterior's one draw is the mean member, draws
repeat under one seed and change with another, the trained mean is not AdamW's, a resumed
run ends where an uninterrupted one does, and the settings out of range name their key."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tinyworld
import torch

from lorauq.checkpoints import STATE_FILE
from lorauq.config import TrainParams, resolve_params
from lorauq.errors import ConfigError, StoreError
from lorauq.methods.registry import IvonSettings
from lorauq.schema import LOGIT_COLUMNS
from lorauq.store import normalize_logits_frame

#: The tiny test world's IVON: its step cap lr · clip_radius near the AdamW member's lr.
IVON = IvonSettings(ess=1e7, hess_init=3e-4, lr=0.03, weight_decay=1e-4, clip_radius=0.3)


def _train(
    base: Path,
    folder: Path,
    epochs: int = 1,
    ivon: IvonSettings = IVON,
    train: TrainParams | None = None,
) -> list[dict]:
    from lorauq.methods.ivon import train_ivon_member
    from lorauq.model import load_base_model, load_tokenizer

    return train_ivon_member(
        load_base_model(str(base), tinyworld.BASE),
        load_tokenizer(str(base), tinyworld.BASE),
        tinyworld.train_set(),
        member=0,
        member_dir=folder,
        lora=tinyworld.LORA,
        train=train or dataclasses.replace(tinyworld.TRAIN, epochs=epochs),
        ivon=ivon,
        progress=False,
    )


def _samples(base: Path, adapter: Path, samples: int = 2, seed: int = 0) -> pd.DataFrame:
    from lorauq.methods.ivon import ivon_samples
    from lorauq.model import load_base_model, load_tokenizer

    table = ivon_samples(
        load_base_model(str(base), tinyworld.BASE),
        load_tokenizer(str(base), tinyworld.BASE),
        adapter,
        {"in_domain": tinyworld.eval_set()},
        epoch=1,
        samples=samples,
        seed=seed,
        infer=tinyworld.INFER,
    )
    return normalize_logits_frame(table)


def _values(frame: pd.DataFrame, member: int) -> np.ndarray:
    rows = frame[frame["member"] == member].sort_values("id")
    return rows[[*LOGIT_COLUMNS[:4], "logsumexp_vocab"]].to_numpy()


@pytest.fixture(scope="module")
def ivon_member(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Member 0 trained one epoch with IVON on the tiny base (read-only: copy to change)."""
    folder = tmp_path_factory.mktemp("ivon") / "member-0"
    _train(tiny_base, folder)
    return folder


@pytest.mark.slow
def test_collapsed_posterior_draws_the_mean_member(tiny_base, ivon_member, tmp_path) -> None:
    """ess 1e30: the draws' standard deviation is ~1e-13, so one draw reads out the mean
    weights, the adapter file as plain inference reads it."""
    from lorauq.infer import evaluate_member
    from lorauq.model import load_base_model, load_tokenizer
    from lorauq.store import read_logits

    folder = tmp_path / "member-0"
    shutil.copytree(ivon_member, folder)
    state_path = folder / "epoch-1" / STATE_FILE
    state = torch.load(state_path, weights_only=True)
    state["optimizer"]["param_groups"][0]["ess"] = 1e30
    torch.save(state, state_path)
    mean = evaluate_member(
        load_base_model(str(tiny_base), tinyworld.BASE),
        load_tokenizer(str(tiny_base), tinyworld.BASE),
        {"in_domain": tinyworld.eval_set()},
        folder,
        tmp_path / "mean.parquet",
        member=0,
        infer=tinyworld.INFER,
        progress=False,
    )
    mean = normalize_logits_frame(read_logits(mean))
    draw = _samples(tiny_base, folder / "epoch-1", samples=1)
    assert set(draw["member"]) == {0}
    np.testing.assert_allclose(_values(draw, 0), _values(mean[mean["epoch"] == 1], 0), atol=1e-5)
    # the trained posterior is not collapsed: its draws move the logits well beyond that
    wide = _samples(tiny_base, ivon_member / "epoch-1", samples=1)
    assert np.abs(_values(wide, 0) - _values(draw, 0)).max() > 1e-3


@pytest.mark.slow
def test_draws_repeat_under_one_seed_and_change_with_another(tiny_base, ivon_member) -> None:
    adapter = ivon_member / "epoch-1"
    first = _samples(tiny_base, adapter, seed=0)
    again = _samples(tiny_base, adapter, seed=0)
    other = _samples(tiny_base, adapter, seed=1)
    assert sorted(set(first["member"])) == [0, 1]
    pd.testing.assert_frame_equal(first, again)
    assert not np.allclose(_values(first, 0), _values(first, 1), atol=1e-4)
    assert not np.allclose(_values(first, 0), _values(other, 0), atol=1e-4)


@pytest.mark.slow
def test_ivon_mean_moves_elsewhere_than_adamw_from_the_same_start(ivon_member, tiny_member) -> None:
    """Same seed, LoRA init, batches and loss: the optimiser alone separates the two."""
    ivon = tinyworld.adapter_tensors(ivon_member / "epoch-1")
    adamw = tinyworld.adapter_tensors(tiny_member / "epoch-1")
    assert ivon.keys() == adamw.keys()
    b_keys = [k for k in ivon if "lora_B" in k]
    assert b_keys
    for key in b_keys:  # B starts at zero: both trained it
        assert ivon[key].abs().max() > 1e-4 and adamw[key].abs().max() > 1e-4
    gap = max((ivon[k] - adamw[k]).abs().max().item() for k in ivon)
    assert gap > 1e-3


@pytest.mark.slow
def test_resumed_ivon_run_ends_where_an_uninterrupted_one_does(tiny_base, tmp_path) -> None:
    """Two epochs at once against one, then a resume: the same weights and posterior (the
    step count that IVON's bias correction reads included)."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _train(tiny_base, straight, epochs=2)
    _train(tiny_base, resumed, epochs=1)
    _train(tiny_base, resumed, epochs=2)
    a = tinyworld.adapter_tensors(straight / "epoch-2")
    b = tinyworld.adapter_tensors(resumed / "epoch-2")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    sa = torch.load(straight / "epoch-2" / STATE_FILE, weights_only=True)
    sb = torch.load(resumed / "epoch-2" / STATE_FILE, weights_only=True)
    assert sa["ivon_step"] == sb["ivon_step"] > 0
    for key in ("hess", "momentum"):
        ga, gb = sa["optimizer"]["param_groups"][0], sb["optimizer"]["param_groups"][0]
        torch.testing.assert_close(ga[key], gb[key], rtol=0, atol=0)


@pytest.mark.slow
def test_ivon_trains_by_steps_as_by_epochs_and_resumes_mid_epoch(tiny_base, tmp_path) -> None:
    """``train.steps`` reaches IVON too: 12 steps with a checkpoint at 6 are the tiny world's two
    epochs (6 steps each), bit for bit; a schedule whose checkpoint falls mid epoch (4 of 9)
    resumes to the weights and posterior of an uninterrupted run."""
    by_epochs, by_steps = tmp_path / "epochs", tmp_path / "steps"
    _train(tiny_base, by_epochs, epochs=2)
    logs = _train(tiny_base, by_steps, train=tinyworld.schedule(0, 12, [6]))
    assert [log["step"] for log in logs] == [6, 12]
    for k in (1, 2):
        a = tinyworld.adapter_tensors(by_epochs / f"epoch-{k}")
        b = tinyworld.adapter_tensors(by_steps / f"epoch-{k}")
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    mid = tinyworld.schedule(0, 9, [4])
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _train(tiny_base, straight, train=mid)
    _train(tiny_base, resumed, train=tinyworld.schedule(0, 4))
    # the first run's one checkpoint (step 4) is the second schedule's checkpoint 1
    _train(tiny_base, resumed, train=mid)
    sa = torch.load(straight / "epoch-2" / STATE_FILE, weights_only=True)
    sb = torch.load(resumed / "epoch-2" / STATE_FILE, weights_only=True)
    assert sa["ivon_step"] == sb["ivon_step"] == 9
    a = tinyworld.adapter_tensors(straight / "epoch-2")
    b = tinyworld.adapter_tensors(resumed / "epoch-2")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


@pytest.mark.slow
def test_an_adamw_checkpoint_is_no_posterior(tiny_base, tiny_member) -> None:
    with pytest.raises(StoreError, match="not an IVON checkpoint"):
        _samples(tiny_base, tiny_member / "epoch-1")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"methods.ivon.ess": 0.0}, r"methods\.ivon\.ess must be positive, got 0\.0"),
        ({"methods.ivon.ess": -1.0}, r"methods\.ivon\.ess must be positive"),
        ({"methods.ivon.hess_init": 0.0}, r"methods\.ivon\.hess_init must be positive"),
        ({"methods.ivon.lr": 0.0}, r"methods\.ivon\.lr must be positive"),
        ({"methods.ivon.clip_radius": 0.0}, r"methods\.ivon\.clip_radius must be positive"),
        ({"methods.ivon.beta1": 1.0}, r"methods\.ivon\.beta1 must be in \[0, 1\), got 1\.0"),
        ({"methods.ivon.beta2": 1.5}, r"methods\.ivon\.beta2 must be in \[0, 1\), got 1\.5"),
        ({"methods.ivon.beta2": -0.5}, r"methods\.ivon\.beta2 must be in \[0, 1\)"),
        ({"methods.ivon.weight_decay": -1e-4}, r"methods\.ivon\.weight_decay must be at least 0"),
        ({"methods.ivon.samples": 0}, r"methods\.ivon\.samples must be at least 1, got 0"),
        ({"methods.ivon.train_samples": 0}, r"methods\.ivon\.train_samples must be at least 1"),
        ({"methods.ivon.hess": 1.0}, r"methods\.ivon.*hess"),
    ],
)
def test_ivon_settings_out_of_range_name_their_key(override: dict, message: str) -> None:
    import yaml

    raw = yaml.safe_load((tinyworld.ROOT / "params.yaml").read_text(encoding="utf-8"))
    with pytest.raises(ConfigError, match=message):
        resolve_params(raw, override)


def test_tiny_defaults_are_in_range_and_ivon_runs_by_default() -> None:
    import yaml

    raw = yaml.safe_load((tinyworld.ROOT / "params.yaml").read_text(encoding="utf-8"))
    params = resolve_params(raw)
    assert "ivon" in params.methods.run
    m = params.methods.ivon
    # the draws' standard deviation at the start, 1/sqrt(ess (hess_init + wd)): a perturbation
    # of the LoRA weights (A ~ 0.1 at init), neither nothing nor larger than them
    assert 3e-3 < (m.ess * (m.hess_init + m.weight_decay)) ** -0.5 < 0.05

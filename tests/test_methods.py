"""The rival methods' samples against hand-built cases: a snapshot of one checkpoint is that
checkpoint, temperature 1 is the member itself, MC dropout with p = 0 is the deterministic
member, and the settings out of range are refused naming their key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tinyworld

from lorauq.config import resolve_params
from lorauq.errors import ConfigError
from lorauq.methods import posthoc
from lorauq.schema import LOGIT_COLUMNS
from lorauq.store import normalize_logits_frame


def _table(members: int = 2, epochs: int = 3, questions: int = 5, seed: int = 0) -> pd.DataFrame:
    """A logits table of ``members`` × epochs 0…``epochs`` × ``questions`` 4-letter questions."""
    rng = np.random.default_rng(seed)
    rows = []
    for m in range(members):
        for e in range(epochs + 1):
            for q in range(questions):
                logits = [*rng.normal(size=4), *[np.nan] * 6]
                rows.append([m, e, "in_domain", f"q{q}", "s", "g", q % 4, 4, 4, *logits, 2.0 + e])
    columns = ["member", "epoch", "eval_set", "id", "subject", "group", "answer"]
    columns += ["n_choices", "n_letters", *LOGIT_COLUMNS, "logsumexp_vocab"]
    return normalize_logits_frame(pd.DataFrame(rows, columns=columns))


def _values(frame: pd.DataFrame, member: int, epoch: int) -> np.ndarray:
    rows = frame[(frame["member"] == member) & (frame["epoch"] == epoch)]
    return rows.sort_values("id")[[*LOGIT_COLUMNS[:4], "logsumexp_vocab"]].to_numpy()


def test_single_is_member_0_at_its_last_epoch() -> None:
    table = _table()
    got = posthoc.single(table)
    assert set(got["member"]) == {0} and set(got["epoch"]) == {3}
    np.testing.assert_array_equal(_values(got, 0, 3), _values(table, 0, 3))


def test_snapshot_of_one_checkpoint_is_that_checkpoint() -> None:
    table = _table()
    got = posthoc.snapshot(table, last=1)
    assert len(got) == 5
    np.testing.assert_array_equal(_values(got, 0, 3), _values(table, 0, 3))


def test_snapshot_takes_the_last_epochs_in_order_and_never_the_base() -> None:
    table = _table()
    got = posthoc.snapshot(table, last=3)
    assert sorted(set(got["member"])) == [0, 1, 2] and set(got["epoch"]) == {3}
    for sample, epoch in enumerate([1, 2, 3]):
        np.testing.assert_array_equal(_values(got, sample, 3), _values(table, 0, epoch))
    with pytest.raises(ConfigError, match=r"methods\.checkpoints\.last is 4"):
        posthoc.snapshot(table, last=4)


def test_temperature_one_is_the_member_itself() -> None:
    rows = posthoc.single(_table())
    np.testing.assert_array_equal(_values(posthoc.scale(rows, 1.0), 0, 3), _values(rows, 0, 3))


def test_fitted_temperature_recovers_the_one_the_labels_were_drawn_at() -> None:
    """Labels drawn from softmax(z / 2): the NLL-optimal temperature is near 2, and it is a
    minimum of the held-out NLL (both neighbours are worse)."""
    rng = np.random.default_rng(1)
    n = 4000
    z = rng.normal(scale=3.0, size=(n, 4))
    p = np.exp(z / 2.0)
    p /= p.sum(axis=1, keepdims=True)
    answers = np.array([rng.choice(4, p=row) for row in p])
    frame = pd.DataFrame(np.c_[z, np.full((n, 6), np.nan)], columns=LOGIT_COLUMNS)
    frame["answer"] = answers
    fitted = posthoc.fit_temperature(frame)
    assert 1.85 < fitted < 2.15
    logits = frame[LOGIT_COLUMNS].to_numpy()
    best = posthoc.temperature_nll(logits, answers, fitted)
    assert best < posthoc.temperature_nll(logits, answers, fitted * 1.05)
    assert best < posthoc.temperature_nll(logits, answers, fitted / 1.05)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"methods.mc_dropout.passes": 0}, "methods.mc_dropout.passes must be at least 1"),
        ({"methods.mc_dropout.dropout": 1.0}, r"methods.mc_dropout.dropout must be in \[0, 1\)"),
        ({"methods.mc_dropout.dropout": -0.1}, r"methods.mc_dropout.dropout must be in \[0, 1\)"),
        ({"methods.checkpoints.last": 9}, "methods.checkpoints.last is 9, more than the 8"),
        ({"data.calibration_fraction": 1.0}, "data.calibration_fraction must be in"),
        ({"data.calibration_fraction": 0.0}, "calibration_fraction is 0 but methods.run"),
        ({"methods.laplace.samples": 0}, "methods.laplace.samples must be at least 1"),
        ({"methods.laplace.prior_precision": 0.0}, "prior_precision must be positive"),
        ({"methods.laplace.prior_precision": "grid"}, "'grid' is not one of"),
        (
            {"data.calibration_fraction": 0.0, "methods.run": ["laplace"]},
            "prior_precision is 'validation', which chooses it on the held-out",
        ),
        ({"methods.run": ["single", "dropout"]}, "'dropout' is not a method"),
    ],
)
def test_bad_method_settings_name_their_key(override: dict, message: str) -> None:
    import yaml

    raw = yaml.safe_load((tinyworld.ROOT / "params.yaml").read_text(encoding="utf-8"))
    with pytest.raises(ConfigError, match=message):
        resolve_params(raw, override)


@pytest.fixture(scope="module")
def trained(tiny_base: Path, tiny_member: Path) -> tuple[Path, Path]:
    """The shared tiny base and its one-epoch member's adapter (it trains: users are slow)."""
    return tiny_base, tiny_member / "epoch-1"


def _dropout(base: Path, adapter: Path, dropout: float, passes: int = 2) -> pd.DataFrame:
    from lorauq.methods.mc_dropout import dropout_samples
    from lorauq.model import load_base_model, load_tokenizer

    return dropout_samples(
        load_base_model(str(base), tinyworld.BASE),
        load_tokenizer(str(base), tinyworld.BASE),
        adapter,
        {"in_domain": tinyworld.eval_set()},
        epoch=1,
        dropout=dropout,
        passes=passes,
        seed=0,
        infer=tinyworld.INFER,
    )


@pytest.mark.slow
def test_mc_dropout_with_p_0_is_the_single_member(trained, tmp_path: Path) -> None:
    from lorauq.infer import evaluate_member
    from lorauq.model import load_base_model, load_tokenizer
    from lorauq.store import read_logits

    base, adapter = trained
    out = evaluate_member(
        load_base_model(str(base), tinyworld.BASE),
        load_tokenizer(str(base), tinyworld.BASE),
        {"in_domain": tinyworld.eval_set()},
        adapter.parent,
        tmp_path / "single.parquet",
        member=0,
        infer=tinyworld.INFER,
        progress=False,
    )
    single = normalize_logits_frame(read_logits(out))
    samples = normalize_logits_frame(_dropout(base, adapter, 0.0))
    for t in (0, 1):  # same code path, same adapter: the same floats
        np.testing.assert_allclose(_values(samples, t, 1), _values(single, 0, 1), atol=1e-6)


@pytest.mark.slow
def test_mc_dropout_samples_differ_and_rerun_identically(trained) -> None:
    base, adapter = trained
    first = normalize_logits_frame(_dropout(base, adapter, 0.5))
    again = normalize_logits_frame(_dropout(base, adapter, 0.5))
    assert not np.allclose(_values(first, 0, 1), _values(first, 1, 1))
    pd.testing.assert_frame_equal(first, again)


def _laplace(base: Path, adapter: Path, prior, samples: int = 3, **extra):
    from lorauq.methods.laplace import laplace_samples
    from lorauq.model import load_base_model, load_tokenizer

    return laplace_samples(
        load_base_model(str(base), tinyworld.BASE),
        load_tokenizer(str(base), tinyworld.BASE),
        adapter,
        tinyworld.train_set(),
        {"in_domain": tinyworld.eval_set()},
        epoch=1,
        hessian="diag",
        samples=samples,
        seed=0,
        prior_precision=prior,
        infer=tinyworld.INFER,
        **extra,
    )


def _map_member(base: Path, adapter: Path) -> pd.DataFrame:
    from lorauq.methods.mc_dropout import dropout_samples
    from lorauq.model import load_base_model, load_tokenizer

    return dropout_samples(  # p = 0: the deterministic member (tested above)
        load_base_model(str(base), tinyworld.BASE),
        load_tokenizer(str(base), tinyworld.BASE),
        adapter,
        {"in_domain": tinyworld.eval_set()},
        epoch=1,
        dropout=0.0,
        passes=1,
        seed=0,
        infer=tinyworld.INFER,
    )


@pytest.mark.slow
def test_laplace_with_infinite_prior_precision_collapses_onto_the_map_member(trained) -> None:
    base, adapter = trained
    single = _map_member(base, adapter)
    table, fitted, probit = _laplace(base, adapter, prior=1e12, member_table=single)
    assert fitted["prior_precision"] == pytest.approx(1e12, rel=1e-6)
    assert fitted["prior_fitted_by"] == "given"
    single, table = normalize_logits_frame(single), normalize_logits_frame(table)
    for s in range(3):  # posterior sd 1e-6: the draws sit on the MAP weights
        np.testing.assert_allclose(_values(table, s, 1), _values(single, 0, 1), atol=1e-4)
    # no function-space variance: the probit read-out is the member itself
    np.testing.assert_allclose(
        _values(normalize_logits_frame(probit), 0, 1), _values(single, 0, 1), rtol=1e-5
    )


@pytest.mark.slow
def test_laplace_fits_the_prior_by_marginal_likelihood_and_draws_reproducibly(trained) -> None:
    base, adapter = trained
    first, fitted, probit = _laplace(base, adapter, prior="marglik")
    again, _, _ = _laplace(base, adapter, prior="marglik")
    assert probit is None  # no member table given: no linearised read-out
    assert 0 < fitted["prior_precision"] < 1e6 and fitted["prior_precision"] != 1.0
    assert fitted["prior_fitted_by"] == "marglik"
    assert fitted["n_params"] == 448  # r 4 on q_proj (32→32) and v_proj (32→16), one layer
    assert not np.allclose(_values(first, 0, 1), _values(first, 1, 1), atol=1e-3)
    pd.testing.assert_frame_equal(first, again)


@pytest.mark.slow
def test_laplace_chooses_the_prior_on_held_out_rows_from_its_grid(trained) -> None:
    from lorauq.methods.laplace import PRIOR_GRID

    base, adapter = trained
    held = tinyworld.train_set().iloc[:8]
    first, fitted, _ = _laplace(base, adapter, prior="validation", validation_frame=held)
    again, _, _ = _laplace(base, adapter, prior="validation", validation_frame=held)
    low, high, points = PRIOR_GRID
    grid = np.logspace(low, high, int(points))
    assert np.isclose(fitted["prior_precision"], grid, rtol=1e-5).any()
    assert fitted["prior_at_grid_edge"] == bool(
        np.isclose(fitted["prior_precision"], grid[[0, -1]], rtol=1e-5).any()
    )
    pd.testing.assert_frame_equal(first, again)
    with pytest.raises(ConfigError, match="no held-out training rows"):
        _laplace(base, adapter, prior="validation")


def test_probit_read_out_shrinks_each_letter_and_keeps_the_other_mass() -> None:
    from lorauq.methods.laplace import probit_table

    logits = np.array([2.0, 0.0, -1.0])
    lse = 3.0  # the vocabulary holds more than the letters
    row = {c: np.nan for c in LOGIT_COLUMNS}
    row.update(dict(zip(LOGIT_COLUMNS, logits, strict=False)))
    member = pd.DataFrame([{**row, "logsumexp_vocab": lse, "id": "q"}])
    variance = np.array([[0.0, 8 / np.pi, 3 * 8 / np.pi]])  # kappa 1, 1/sqrt(2), 1/2
    out = probit_table(member, variance)
    scaled = out[LOGIT_COLUMNS[:3]].to_numpy(dtype=float)[0]
    np.testing.assert_allclose(scaled, [2.0, 0.0, -0.5], rtol=1e-6)
    assert out[LOGIT_COLUMNS[3:]].isna().all(axis=None)
    other_before = np.exp(lse) - np.exp(logits).sum()
    other_after = np.exp(float(out["logsumexp_vocab"][0])) - np.exp(scaled).sum()
    assert other_after == pytest.approx(other_before, rel=1e-5)


@pytest.mark.slow
def test_linearised_variance_is_the_jacobian_through_the_posterior(trained) -> None:
    """The per-letter variance equals Σ_p J_kp² σ²_p from autograd, for a diagonal posterior,
    on an eval set whose letters the head is pointed at afresh."""
    import torch
    from laplace import Laplace
    from peft import PeftModel

    from lorauq.batching import collate_left
    from lorauq.methods.laplace import LetterHead, _function_variance, _loader
    from lorauq.model import load_base_model, load_tokenizer
    from lorauq.readout import encode_eval_set

    base, adapter = trained
    tokenizer = load_tokenizer(str(base), tinyworld.BASE)
    model = PeftModel.from_pretrained(
        load_base_model(str(base), tinyworld.BASE), str(adapter), is_trainable=True
    ).eval()
    train = encode_eval_set(tokenizer, tinyworld.train_set(), infer=tinyworld.INFER)
    head = LetterHead(model, train.letters)
    answers = tinyworld.train_set()["answer"].to_numpy(copy=True)
    la = Laplace(head, "classification", subset_of_weights="all", hessian_structure="diag")
    la.fit(_loader(train.sequences, answers, tokenizer.pad_token_id, 1), progress_bar=False)
    la.prior_precision = 3.0
    encoded = encode_eval_set(tokenizer, tinyworld.eval_set().iloc[:3], infer=tinyworld.INFER)
    variance = _function_variance(la, head, encoded, tokenizer.pad_token_id)
    assert variance.shape == (3, len(encoded.letters))
    params = [p for p in head.parameters() if p.requires_grad]
    for i, sequence in enumerate(encoded.sequences):
        ids, mask, pos = collate_left([sequence], tokenizer.pad_token_id)
        out = head(torch.stack([ids, mask, pos], dim=1))[0]
        for k in range(len(encoded.letters)):
            grads = torch.autograd.grad(out[k], params, retain_graph=True)
            j = torch.cat([g.flatten() for g in grads])
            expected = float((j**2 * la.posterior_variance).sum())
            assert variance[i, k] == pytest.approx(expected, rel=1e-4)


def test_best_epoch_is_the_trained_epoch_of_lowest_in_domain_nll() -> None:
    from lorauq.methods.report import at_best_epoch, best_epoch

    table = _table(members=3, epochs=4, questions=12, seed=3)
    losses = {}
    for epoch in range(1, 5):  # epoch 0, the prior, is never selected
        rows = table[table["epoch"] == epoch].sort_values(["member", "id"])
        logits = rows[LOGIT_COLUMNS[:4]].to_numpy().reshape(3, 12, 4)
        probs = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
        answers = rows["answer"].to_numpy()[:12]
        losses[epoch] = -np.log(probs.mean(axis=0)[np.arange(12), answers]).mean()
    expected = min(losses, key=losses.get)
    assert best_epoch(table, "in_domain", "renormalized") == expected
    assert set(at_best_epoch(table, "in_domain", "renormalized")["epoch"]) == {expected}


def test_summary_shows_mean_and_std_of_several_runs_and_short_reasons() -> None:
    from lorauq.methods.report import IN_DOMAIN, ONE_SAMPLE, summary

    table = pd.DataFrame(
        [
            {"method": "single", "eval_set": "unseen", "runs": 5, "accuracy": 0.25,
             "accuracy_std": 0.05, "auroc_mi": ONE_SAMPLE, "auroc_mi_std": ONE_SAMPLE},
            {"method": "laplace", "eval_set": "in_domain", "runs": 1, "accuracy": 0.96875,
             "accuracy_std": "one run", "auroc_mi": IN_DOMAIN, "auroc_mi_std": IN_DOMAIN},
        ]
    )  # fmt: skip
    got = summary(table, metrics=("accuracy", "auroc_mi"))
    assert got.to_dict("records") == [
        {"method": "single", "eval_set": "unseen", "runs": 5,
         "accuracy": "0.250 ± 0.050", "auroc_mi": "MI ≡ 0 (one sample)"},
        {"method": "laplace", "eval_set": "in_domain", "runs": 1,
         "accuracy": "0.969", "auroc_mi": "reference set"},
    ]  # fmt: skip

"""How far is lorauq.uncertainty from independent references? Prints reference -> max |Δ|.

Each row draws many random problems (Dirichlet probabilities from flat to near-saturated,
2-10 classes, random labels) and records the largest absolute difference between our value
and the reference's. Rows marked "expected to differ" document a known convention gap rather
than an error (torchmetrics puts confidence 1.0 in a phantom extra bin, issue #3510).

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.uncertainty_reference_deviation [--draws N]

(``-m`` from the repo root puts the root on sys.path, so no install is needed.)
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import torch
from scipy.special import logsumexp, softmax
from scipy.stats import entropy as scipy_entropy
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from torchmetrics.functional.classification import multiclass_calibration_error

from lorauq import uncertainty as U


def _problem(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, int]:
    k = int(rng.integers(2, 11))
    alpha = float(rng.choice([0.05, 0.3, 1.0, 5.0]))
    p = rng.dirichlet(np.full(k, alpha), size=n)
    y = np.where(rng.random(n) < p.max(1), p.argmax(1), rng.integers(0, k, n))
    return p, y, k


def _off_edges(conf: np.ndarray, margin: float = 1e-6) -> np.ndarray:
    keep = np.ones(conf.shape, dtype=bool)
    for n_bins in (10, 15):
        keep &= np.abs(conf[:, None] - np.linspace(0, 1, n_bins + 1)).min(axis=1) > margin
    return keep


def _tm_ece(p: np.ndarray, y: np.ndarray, k: int, n_bins: int) -> float:
    return multiclass_calibration_error(
        torch.from_numpy(p), torch.from_numpy(y), num_classes=k, n_bins=n_bins, norm="l1"
    ).item()


def _bruteforce_risk(conf: np.ndarray, correct: np.ndarray) -> np.ndarray:
    curves = []
    for perm in itertools.permutations(range(len(conf))):
        c = conf[list(perm)]
        if np.all(c[:-1] >= c[1:]):
            errs = np.cumsum([not correct[i] for i in perm])
            curves.append(errs / np.arange(1, len(conf) + 1))
    return np.mean(curves, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=300, help="random problems per row")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    rows: dict[str, list[float]] = {}

    def record(name: str, ours, ref) -> None:
        d = float(np.max(np.abs(np.asarray(ours, dtype=float) - np.asarray(ref, dtype=float))))
        rows.setdefault(name, []).append(d)

    t0 = time.perf_counter()
    for _ in range(args.draws):
        m = int(rng.integers(1, 11))
        k = int(rng.integers(2, 11))
        p_ens = rng.dirichlet(np.full(k, float(rng.choice([0.05, 0.3, 1.0, 5.0]))), (m, 200))
        pe_ref = scipy_entropy(p_ens.mean(0), axis=-1)
        ee_ref = scipy_entropy(p_ens, axis=-1).mean(0)
        record("scipy.stats.entropy: predictive_entropy", U.predictive_entropy(p_ens), pe_ref)
        record("scipy.stats.entropy: expected_entropy", U.expected_entropy(p_ens), ee_ref)
        record(
            "scipy.stats.entropy: mutual_information",
            U.mutual_information(p_ens),
            np.maximum(pe_ref - ee_ref, 0),
        )

        p, y, k = _problem(rng, 500)
        eps = np.finfo(np.float64).eps
        p_true = p[np.arange(len(y)), y]
        clip_off = (p_true >= eps) & (p_true <= 1 - eps)
        record(
            "sklearn log_loss: nll (rows where sklearn's eps clip is inactive)",
            U.nll(p[clip_off], y[clip_off]),
            log_loss(y[clip_off], p[clip_off], labels=np.arange(k)),
        )
        record(
            "sklearn log_loss: nll, all rows (expected to differ: eps vs tiny floor)",
            U.nll(p, y),
            log_loss(y, p, labels=np.arange(k)),
        )
        record(
            "sklearn brier_score_loss(scale_by_half=False): brier",
            U.brier(p, y),
            brier_score_loss(y, p, labels=np.arange(k), scale_by_half=False),
        )
        keep = _off_edges(p.max(1))
        for n_bins in (10, 15):
            record(
                f"torchmetrics multiclass_calibration_error l1, {n_bins} bins (off edges)",
                U.ece(p[keep], y[keep], n_bins),
                _tm_ece(p[keep], y[keep], k, n_bins),
            )
        sat = p.copy()
        sat[: len(sat) // 4] = np.eye(k)[sat[: len(sat) // 4].argmax(1)]  # conf exactly 1.0
        record(
            "torchmetrics ECE 10 bins, 25% conf == 1.0 (expected to differ, #3510)",
            U.ece(sat, y, 10),
            _tm_ece(sat, y, k, 10),
        )

        n = int(rng.integers(2, 1000))
        pos = rng.random(n) < rng.uniform(0.05, 0.95)
        pos[:2] = [True, False]
        s = rng.normal(size=n) + pos * rng.uniform(0, 2)
        record("sklearn roc_auc_score: auroc (continuous)", U.auroc(s, pos), roc_auc_score(pos, s))
        s = np.round(s, 1)
        record("sklearn roc_auc_score: auroc (heavy ties)", U.auroc(s, pos), roc_auc_score(pos, s))

        vocab = rng.normal(0, float(rng.choice([1.0, 5.0, 30.0])), (50, 1000))
        ids = rng.choice(1000, 10, replace=False)
        vocab[:, ids] += rng.choice([-20.0, 0.0, 20.0])
        n_ch = rng.integers(2, 11, 50)
        logits = vocab[:, ids].copy()
        logits[np.arange(10) >= n_ch[:, None]] = np.nan
        ref = softmax(vocab, axis=1)[:, ids]
        ref[np.arange(10) >= n_ch[:, None]] = 0.0
        ref = np.concatenate([ref, 1 - ref.sum(1, keepdims=True)], axis=1)
        lse = logsumexp(vocab, axis=1)
        record(
            "full-vocab softmax (float64): letter_probs with_other",
            U.letter_probs(logits, n_ch, "with_other", lse),
            ref,
        )
        record(
            "full-vocab softmax: with_other from float32-stored logits and lse",
            U.letter_probs(logits.astype(np.float32), n_ch, "with_other", lse.astype(np.float32)),
            ref,
        )

        n = int(rng.integers(1, 7))
        conf = rng.integers(0, 3, n) / 2.0
        correct = rng.random(n) < 0.6
        record(
            "brute-force loop over tie orders: risk_coverage",
            U.risk_coverage(conf, correct)[1],
            _bruteforce_risk(conf, correct),
        )

    print(
        f"{args.draws} random draws per row, seed {args.seed}, {time.perf_counter() - t0:.1f} s\n"
    )
    width = max(len(r) for r in rows)
    print(f"| {'reference: ours':<{width}} | max abs diff | draws with diff > 1e-9 |")
    print(f"|{'-' * (width + 2)}|-------------:|-----------------------:|")
    for name, diffs in rows.items():
        d = np.asarray(diffs)
        print(
            f"| {name:<{width}} | {d.max():12.3e} | {int((d > 1e-9).sum()):>10d} / {len(d):<10d} |"
        )


if __name__ == "__main__":
    main()

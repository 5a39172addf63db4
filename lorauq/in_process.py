"""The whole pipeline in one Python process, in ``dvc repro``'s order, without DVC.

For the end-to-end test and the tiny world's scripts (margins, the methods' ground truth):
they run many small
experiments (one per world seed) in temporary folders, where DVC's bookkeeping would only
cost time. ``dvc repro`` remains the way to run an experiment; no stage imports this module.
"""

from __future__ import annotations

from lorauq.config import Params
from lorauq.layout import Layout
from lorauq.stages import base, figures, finetune, infer, methods, methods_report, prepare

__all__ = ["run_experiment", "seed_range", "world_effects", "world_seed_overrides"]


def run_experiment(params: Params, layout: Layout, progress: bool = False) -> figures.Report:
    """Prepare, build the base, train and evaluate every (ensemble, unit), run the methods of
    ``methods.run`` and their report, draw the figures."""
    prepare.run(params, layout)
    base.run(params, layout, progress=progress)
    for ensemble in params.ensembles:
        for unit in params.units:
            finetune.run(params, ensemble, unit, layout, progress=progress)
    infer.run(params, None, layout=layout, progress=progress)
    for ensemble in params.ensembles:
        for unit in params.units:
            infer.run(params, ensemble, unit, layout, progress=progress)
    for name in params.methods.run:
        methods.run(params, name, layout, progress=progress)
    methods_report.run(params, layout)
    return figures.run(params, layout)


def world_effects(main: dict) -> dict[str, float]:
    """The tiny world's built-in effects from one ensemble's headline metrics (one read-out of
    ``metrics.json``): what ``docs/tiny-world.md`` tabulates and the e2e test bars."""
    prior, final = main["prior"], main["final"]
    return {
        "final_in_domain_accuracy": final["in_domain"]["accuracy"],
        "prior_known_accuracy": prior["known"]["accuracy"],
        "auroc_mi_unseen": main["ood_auroc"]["final"]["unseen"]["mutual_information"],
        "mi_unseen_over_in_domain": final["unseen"]["mutual_information"]
        / final["in_domain"]["mutual_information"],
        "ee_noisy_over_in_domain": final["noisy"]["expected_entropy"]
        / final["in_domain"]["expected_entropy"],
    }


def world_seed_overrides(seed: int) -> dict[str, object]:
    """The default tiny experiment on world seed ``seed`` (and a base pre-trained from it),
    its main ensemble alone, trained on every training question (no calibration split, so no
    methods): the experiment the world's margins are measured on."""
    return {
        "tiny.data.world.seed": seed,
        "tiny.data.calibration_fraction": 0.0,
        "tiny.methods.run": [],
        "tiny.base.seed": seed,
        "tiny.ensembles": {"lora_l2": {}},
        "tiny.analysis.reference": "halves",
    }


def seed_range(text: str) -> list[int]:
    """World seeds from a command line: ``"0-4"`` is 0…4, ``"3"`` is 3."""
    low, _, high = text.partition("-")
    return list(range(int(low), int(high or low) + 1))

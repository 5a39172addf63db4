"""The whole pipeline in one Python process, in ``dvc repro``'s order, without DVC.

For the end-to-end test and the tiny world's margins script: they run many small
experiments (one per world seed) in temporary folders, where DVC's bookkeeping would only
cost time. ``dvc repro`` remains the way to run an experiment; no stage imports this module.
"""

from __future__ import annotations

from lorauq.config import Params
from lorauq.layout import Layout
from lorauq.stages import base, figures, finetune, infer, prepare


def run_experiment(params: Params, layout: Layout, progress: bool = False) -> figures.Report:
    """Prepare, build the base, train and evaluate every (ensemble, unit), draw the figures."""
    prepare.run(params, layout)
    base.run(params, layout, progress=progress)
    for ensemble in params.ensembles:
        for unit in params.units:
            finetune.run(params, ensemble, unit, layout, progress=progress)
    infer.run(params, None, layout=layout, progress=progress)
    for ensemble in params.ensembles:
        for unit in params.units:
            infer.run(params, ensemble, unit, layout, progress=progress)
    return figures.run(params, layout)

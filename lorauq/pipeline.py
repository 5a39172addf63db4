"""The pipeline's stages as functions: what each numbered notebook calls.

Each stage reads only its declared inputs and writes only its declared outputs (the same
paths ``dvc.yaml`` lists), so DVC can rerun exactly what a changed parameter touches and a
member can be built alone on any machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lorauq import analysis, plots
from lorauq.config import Params, SourceSpec
from lorauq.data import load_questions, read_prepared, save_questions
from lorauq.errors import StoreError
from lorauq.infer import evaluate_member, evaluate_prior
from lorauq.model import base_reference, load_base_model, load_tokenizer, set_threads
from lorauq.store import atomic_path, read_logits, write_text_atomic
from lorauq.synthetic import WorldSpec, synthetic_questions


@dataclass(frozen=True)
class Layout:
    """Where every artefact lives (DESIGN §2); relative to the repository root by default."""

    root: Path = Path(".")

    @property
    def prepared(self) -> Path:
        return self.root / "data" / "prepared"

    @property
    def base(self) -> Path:
        return self.root / "data" / "base"

    @property
    def adapters(self) -> Path:
        return self.root / "data" / "adapters"

    @property
    def logits(self) -> Path:
        return self.root / "data" / "logits"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    def member_dir(self, member: int) -> Path:
        return self.adapters / f"member-{member}"

    def member_logits(self, member: int) -> Path:
        return self.logits / f"member-{member}.parquet"

    @property
    def prior_logits(self) -> Path:
        return self.logits / "prior.parquet"


# --- prepare -------------------------------------------------------------------------------


def _load_source(spec: SourceSpec, world: WorldSpec | None) -> pd.DataFrame:
    if spec.source == "synthetic":
        frame = synthetic_questions(spec.split, spec=world)
    else:
        frame = load_questions(
            spec.source, spec.split, path=spec.path, group=spec.group, subjects=spec.subjects
        )
    return frame.head(spec.limit).reset_index(drop=True) if spec.limit else frame


def prepare(params: Params, layout: Layout = Layout()) -> dict[str, Path]:
    """Normalised question tables: ``train.parquet`` and one ``eval/<name>.parquet`` per eval set."""
    world = WorldSpec.from_params(params.data.world)
    written = {
        "train": save_questions(
            _load_source(params.data.train, world), layout.prepared / "train.parquet"
        )
    }
    for name, spec in params.data.eval.items():
        written[name] = save_questions(
            _load_source(spec, world), layout.prepared / "eval" / f"{name}.parquet"
        )
    return written


def load_train(layout: Layout = Layout()) -> pd.DataFrame:
    return read_prepared(layout.prepared / "train.parquet")


def load_eval_sets(params: Params, layout: Layout = Layout()) -> dict[str, pd.DataFrame]:
    """The prepared eval tables, in the order of ``data.eval``."""
    return {
        name: read_prepared(layout.prepared / "eval" / f"{name}.parquet")
        for name in params.data.eval
    }


# --- base ----------------------------------------------------------------------------------


def build_base(params: Params, layout: Layout = Layout(), progress: bool = True) -> Path:
    """Tiny profile: build and pre-train the base. Otherwise: record which base is used."""
    if params.base.kind == "tiny":
        from lorauq.tinybase import build_tiny_base

        return build_tiny_base(layout.base, params.base, params.data, progress=progress)
    layout.base.mkdir(parents=True, exist_ok=True)
    manifest = {
        "model": params.base.model,
        "revision": params.base.revision,
        "gguf_file": params.base.gguf_file,
    }
    write_text_atomic(layout.base / "base.json", json.dumps(manifest, indent=2) + "\n")
    return layout.base


def load_base(params: Params, layout: Layout = Layout()):
    """(model, tokenizer) of the experiment's base, loaded once per process."""
    reference = base_reference(params.base, layout.base)
    return load_base_model(reference, params.base), load_tokenizer(reference, params.base)


# --- finetune ------------------------------------------------------------------------------


def finetune(
    params: Params, member: int, layout: Layout = Layout(), progress: bool = True
) -> list[dict]:
    """Train one member (resuming after its last complete epoch); returns its epoch logs."""
    from lorauq.train import train_member

    set_threads(params.train.threads)
    if member not in params.members:
        raise StoreError(f"member {member} is not in params members {params.members}")
    model, tokenizer = load_base(params, layout)
    return train_member(
        model,
        tokenizer,
        load_train(layout),
        member=member,
        member_dir=layout.member_dir(member),
        lora=params.lora,
        train=params.train,
        template=params.data.template,
        progress=progress,
    )


# --- infer ---------------------------------------------------------------------------------


def infer(
    params: Params, member: int | None, layout: Layout = Layout(), progress: bool = True
) -> Path:
    """Letter logits of one member's every epoch, or of the prior (``member=None``)."""
    set_threads(params.infer.threads)
    model, tokenizer = load_base(params, layout)
    eval_sets = load_eval_sets(params, layout)
    common = {"template": params.data.template, "infer": params.infer, "progress": progress}
    if member is None:
        return evaluate_prior(model, tokenizer, eval_sets, layout.prior_logits, **common)
    return evaluate_member(
        model,
        tokenizer,
        eval_sets,
        layout.member_dir(member),
        layout.member_logits(member),
        member=member,
        **common,
    )


# --- figures -------------------------------------------------------------------------------


def ensemble_logits(params: Params, layout: Layout = Layout()) -> pd.DataFrame:
    """The logits of the configured members (and the prior), checked to be all present."""
    files = [layout.prior_logits, *(layout.member_logits(m) for m in params.members)]
    return read_logits(files)


def write_metrics(params: Params, logits: pd.DataFrame, layout: Layout = Layout()) -> dict:
    """``reports/metrics.json``: prior and final headline numbers (+ OOD AUROC), for ``dvc metrics``.

    Per eval set: the :data:`lorauq.analysis.METRICS` (AURC included) and the answer letters'
    probability mass (``letter_mass``, ``letter_mass_p05``), see
    :func:`lorauq.analysis.headline_metrics`.
    """
    a = params.analysis
    metrics = analysis.headline_metrics(
        logits, readout=a.readout, n_bins=a.n_bins, in_domain=a.in_domain
    )
    metrics["config"] = {
        "readout": a.readout,
        "ece_bins": a.n_bins,
        "members": len(params.members),
        "units": "nats; ece and letter_mass as fractions",
    }
    write_text_atomic(
        layout.reports / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n"
    )
    return metrics


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def agreement(params: Params, logits: pd.DataFrame, layout: Layout = Layout()) -> pd.DataFrame:
    """Fig B's table: the ensemble against the reference ``analysis.reference`` names.

    ``halves`` splits the members into two ensembles (:func:`lorauq.analysis.split_members`);
    with a single member there is nothing to split and the table is empty (no Fig B). Any
    other value is a logits file or folder of another ensemble, relative to the root.
    """
    a = params.analysis
    if a.reference != "halves":
        reference = read_logits(layout.root / a.reference)
        return analysis.agreement_table(logits, reference, readout=a.readout)
    if logits["member"].nunique() < 2:
        return pd.DataFrame(columns=analysis.AGREEMENT_COLUMNS)
    return analysis.half_agreement_table(logits, readout=a.readout)


def write_tables(
    params: Params, logits: pd.DataFrame, layout: Layout = Layout()
) -> dict[str, pd.DataFrame]:
    """Tidy CSVs under ``reports/plots/`` (for ``dvc plots``) and the tables the figures use."""
    a = params.analysis
    last = int(logits["epoch"].max())
    tables = {
        "metrics": analysis.metrics_table(logits, readout=a.readout, n_bins=a.n_bins),
        "agreement": agreement(params, logits, layout),
        "letter_mass": analysis.letter_mass_table(logits),
        "questions": analysis.question_table(logits, readout=a.readout),
        "transitions": analysis.transitions_over_epochs(
            logits, reference_epoch=0, readout=a.readout
        ),
        "reliability": analysis.reliability_table(
            logits, epoch=last, n_bins=a.n_bins, readout=a.readout
        ),
        "risk_coverage": analysis.risk_coverage_table(logits, epoch=last, readout=a.readout),
        "subjects": analysis.subject_table(logits, epoch=last, readout=a.readout),
    }
    if a.in_domain in set(logits["eval_set"]):
        tables["ood"] = analysis.ood_table(logits, in_domain=a.in_domain, readout=a.readout)
        tables["roc"] = analysis.roc_points(logits, in_domain=a.in_domain, readout=a.readout)
    for name, frame in tables.items():
        _write_csv(frame, layout.reports / "plots" / f"{name}.csv")
    return tables


def draw_figures(
    params: Params, tables: dict[str, pd.DataFrame], layout: Layout = Layout()
) -> dict[str, list[Path]]:
    """Every figure, as PNG and PDF under ``reports/figures/``."""
    epochs = sorted(set(tables["questions"]["epoch"]))
    hist_epochs = [e for e in params.analysis.hist_epochs if e in epochs] or epochs[1:4] or epochs
    figures = {
        "fig_a_metrics_over_epochs": plots.fig_metrics_over_epochs(tables["metrics"]),
        "fig_c_entropy_vs_mi": plots.fig_entropy_mi_hist(tables["questions"], hist_epochs),
        "reliability": plots.fig_reliability(tables["reliability"]),
        "risk_coverage": plots.fig_risk_coverage(tables["risk_coverage"]),
        "ensemble_size": plots.fig_ensemble_size(tables["metrics"]),
        "learned_forgotten": plots.fig_transitions(tables["transitions"]),
        "subjects": plots.fig_subjects(tables["subjects"]),
        "letter_mass": plots.fig_letter_mass(tables["letter_mass"]),
    }
    if not tables["agreement"].empty:
        figures["fig_b_agreement"] = plots.fig_agreement(tables["agreement"])
    if "roc" in tables:
        figures["ood_roc"] = plots.fig_ood_roc(tables["roc"])
    return {
        name: plots.save_figure(fig, layout.reports / "figures" / name)
        for name, fig in figures.items()
    }


def find_root(start: str | Path | None = None) -> Path:
    """The repository root: the nearest folder upwards holding ``params.yaml``.

    Notebooks run from ``notebooks/`` in JupyterLab and from the root under papermill/DVC;
    both find the same root.
    """
    here = Path(start or Path.cwd()).resolve()  # "" or None: the working folder
    for folder in (here, *here.parents):
        if (folder / "params.yaml").is_file() and (folder / "dvc.yaml").is_file():
            return folder
    raise StoreError(
        f"{here}: no params.yaml + dvc.yaml here or above; run from inside the lorauq repository"
    )

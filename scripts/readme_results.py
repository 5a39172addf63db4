"""Put the default run's key figures and headline table into the README (``make readme``).

The figures stage writes ``reports/figures/`` as a DVC output, which git ignores, so a visitor
of the repository would see no result. This script copies the key PNGs (scaled down) into the
git-tracked ``docs/results/`` and rewrites the README's block between the ``results`` markers from
``reports/metrics.json``. ``docs/results/SOURCE.json`` records which run they came from (the
hashes dvc.lock holds for ``reports/figures`` and ``reports/metrics.json``), so
``tests/test_readme_results.py`` fails as soon as a new ``dvc repro`` leaves the README behind.

Run it after ``dvc repro`` (the figures stage) and commit README.md and docs/results/ with
dvc.lock: ``make readme``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lorauq.atomic import atomic_path, write_text_atomic  # noqa: E402
from lorauq.marked import replace_marked  # noqa: E402

START = "<!-- results:start (written by `make readme`; edit scripts/readme_results.py) -->"
END = "<!-- results:end -->"
RESULTS = Path("docs/results")
# The README shows figures about 900 px wide; the stage's 150-dpi PNGs are 2-3 times that, and
# every run committed here stays in git's history, so the copies are scaled down to this width
# and to a palette.
MAX_WIDTH = 1000
SOURCE = RESULTS / "SOURCE.json"
# The key figures, in README order; Fig C has one file per eval set.
FIGURES = (
    ("fig_a_metrics_over_epochs", "Fig A · accuracy, NLL and ECE over epochs"),
    ("ensemble_size", "How the metrics improve with the ensemble size"),
    ("fig_c_entropy_vs_mi_*", "Fig C · predictive entropy against mutual information"),
)
# The headline columns: metrics.json key, header, read at prior (epoch 0) and/or final epoch.
COLUMNS = (
    ("accuracy", "accuracy", ("prior", "final")),
    ("nll", "NLL", ("final",)),
    ("ece", "ECE", ("final",)),
    ("expected_entropy", "expected entropy", ("final",)),
    ("mutual_information", "mutual information", ("final",)),
)


def shrink(source: Path, target: Path) -> None:
    """``source`` scaled to at most :data:`MAX_WIDTH` pixels wide, written atomically to ``target``."""
    with Image.open(source) as opened:
        image = opened.convert("RGB")  # the figures are opaque: their face colour is white
    if image.width > MAX_WIDTH:
        height = round(image.height * MAX_WIDTH / image.width)
        image = image.resize((MAX_WIDTH, height), Image.Resampling.LANCZOS)
    # 256 colours hold a seaborn figure (a third of the bytes of full colour, no visible loss).
    small = image.quantize(256, method=Image.Quantize.MEDIANCUT)
    with atomic_path(target) as tmp:
        small.save(tmp, format="PNG", optimize=True)


def md5(path: Path) -> str:
    """The file's md5, the hash dvc.lock records for a file output."""
    return hashlib.md5(path.read_bytes()).hexdigest()


#: What the README shows, by the stage of dvc.lock that records it.
LOCKED = {
    "figures": ("reports/figures", "reports/metrics.json"),
    "methods": ("reports/methods.csv",),
}


def locked_outputs(root: Path) -> dict[str, str]:
    """dvc.lock's md5 of the outputs the README shows (:data:`LOCKED`)."""
    lock = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8"))
    found = {}
    for name, wanted in LOCKED.items():
        try:
            stage = lock["stages"][name]
        except (KeyError, TypeError):
            raise SystemExit(
                f"{root / 'dvc.lock'}: no stage {name!r}; run `dvc repro` first"
            ) from None
        recorded = {
            entry["path"]: entry["md5"]
            for entry in [*stage.get("outs", []), *stage.get("metrics", [])]
        }
        missing = [path for path in wanted if path not in recorded]
        if missing:
            raise SystemExit(f"{root / 'dvc.lock'}: stage {name!r} records no {', '.join(missing)}")
        found |= {path: recorded[path] for path in wanted}
    return found


def key_figures(root: Path) -> list[tuple[Path, str]]:
    """The PNGs to show, each with its caption; a missing one is an error naming its path."""
    folder = root / "reports" / "figures" / "png"
    found = []
    for pattern, caption in FIGURES:
        matches = sorted(folder.glob(f"{pattern}.png"))
        if not matches:
            raise SystemExit(
                f"{folder / (pattern + '.png')}: missing; run `dvc repro figures` "
                "(or `dvc pull`) before `make readme`"
            )
        for path in matches:
            label = path.stem.removeprefix("fig_c_entropy_vs_mi_")
            found.append((path, caption if path.stem == pattern else f"{caption}: `{label}`"))
    return found


def _value(number: float | None) -> str:
    return "–" if number is None else f"{number:.3f}"


def headline_table(metrics: dict) -> str:
    """Markdown table: one row per ensemble and eval set, the figures' read-out."""
    config = metrics["config"]
    readout = config["readout_of_figures"]
    header = ["ensemble", "eval set"]
    for _key, name, stages in COLUMNS:
        header += [f"{name} ({'epoch 0' if stage == 'prior' else 'final'})" for stage in stages]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for ensemble in config["ensembles"]:
        numbers = metrics[ensemble][readout]
        for eval_set in numbers["final"]:
            row = [f"`{ensemble}`", f"`{eval_set}`"]
            for key, _name, stages in COLUMNS:
                row += [_value(numbers[stage].get(eval_set, {}).get(key)) for stage in stages]
            lines.append("| " + " | ".join(row) + " |")
    caption = (
        f"M = {config['members']} members, read-out `{readout}`, {config['units']}; "
        "epoch 0 is the base model before fine-tuning (from `reports/metrics.json`)."
    )
    return "\n".join([*lines, "", caption])


def methods_table(root: Path) -> str:
    """Markdown table of ``reports/methods.csv``: per method, the in-domain accuracy, NLL and
    ECE and, per other eval set, the AUROC of telling it from the in-domain one by MI."""
    import pandas as pd

    from lorauq.methods.report import IN_DOMAIN, summary

    raw = pd.read_csv(root / "reports" / "methods.csv")
    in_domain = raw.loc[raw["auroc_mi"] == IN_DOMAIN, "eval_set"].iloc[0]
    table = summary(raw)
    methods = list(dict.fromkeys(table["method"]))
    others = [s for s in dict.fromkeys(table["eval_set"]) if s != in_domain]
    cell = table.set_index(["method", "eval_set"])
    header = ["method", "runs", *(f"{m} (`{in_domain}`)" for m in ("accuracy", "NLL", "ECE"))]
    header += [f"AUROC by MI (`{s}`)" for s in others]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in methods:
        inside = cell.loc[(method, in_domain)]
        row = [f"`{method}`", str(inside["runs"]), inside["accuracy"], inside["nll"], inside["ece"]]
        row += [cell.loc[(method, s), "auroc_mi"] for s in others]
        lines.append("| " + " | ".join(row) + " |")
    caption = (
        "Mean ± std over runs (one per member) where a method has several; "
        "`@best` rows stop at the lowest in-domain NLL epoch "
        "(from `reports/methods.csv`; how to read it: docs/methods.md)."
    )
    return "\n".join([*lines, "", caption])


def render_block(root: Path, source: dict) -> str:
    """The README's results block from metrics.json, methods.csv and the figures ``source``
    lists."""
    metrics = json.loads((root / "reports" / "metrics.json").read_text(encoding="utf-8"))
    parts = [START, headline_table(metrics), ""]
    parts += ["**Beside the rival methods**", "", methods_table(root), ""]
    for name, caption in source["figures"].items():
        parts += [f"**{caption}**", "", f"![{caption}]({(RESULTS / name).as_posix()})", ""]
    return "\n".join([*parts, END])


def replace_block(readme: str, block: str) -> str:
    """``readme`` with the text between the markers (markers included) replaced by ``block``."""
    return replace_marked(readme, START, END, block, "README.md")


def main(root: Path = ROOT) -> None:
    """Copy the figures, write SOURCE.json, rewrite the README block."""
    locked = locked_outputs(root)
    metrics = root / "reports" / "metrics.json"
    for path, stage in ((metrics, "figures"), (root / "reports" / "methods.csv", "methods")):
        if md5(path) != locked[path.relative_to(root).as_posix()]:
            raise SystemExit(f"{path}: differs from dvc.lock; run `dvc repro {stage}` first")
    figures = key_figures(root)
    folder = root / RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    keep = {path.name for path, _ in figures}
    for old in folder.glob("*.png"):
        if old.name not in keep:
            old.unlink()
    for path, _caption in figures:
        shrink(path, folder / path.name)
    source = {
        "dvc.lock": locked,
        "figures": {path.name: caption for path, caption in figures},
        "md5": {path.name: md5(folder / path.name) for path, _ in figures},
        "source_md5": {path.name: md5(path) for path, _ in figures},
    }
    write_text_atomic(root / SOURCE, json.dumps(source, indent=2) + "\n")
    readme = root / "README.md"
    text = replace_block(readme.read_text(encoding="utf-8"), render_block(root, source))
    write_text_atomic(readme, text)
    print(f"README.md: {len(figures)} figures from reports/figures/png, table from {metrics.name}")


if __name__ == "__main__":
    main()

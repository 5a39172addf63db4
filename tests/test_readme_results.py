"""The README's results: figures committed with the code, from the run dvc.lock records.

``make readme`` (scripts/readme_results.py) copies the key PNGs of ``reports/figures/png``
(scaled down) into ``docs/results/`` and writes the README's results block from ``reports/metrics.json``.
The first test runs it on a made-up run; the second holds the repository itself to it: after
a new ``dvc repro`` it fails until ``make readme`` has been rerun and committed.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _script():
    from workspace import load_script

    return load_script("readme_results")


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _fake_run(root: Path, script) -> None:
    """A repository whose figures stage wrote metrics.json and a few PNGs (any bytes)."""
    (root / "reports" / "figures" / "png").mkdir(parents=True)
    shutil.copy(ROOT / "reports" / "metrics.json", root / "reports" / "metrics.json")
    shutil.copy(ROOT / "reports" / "methods.csv", root / "reports" / "methods.csv")
    names = [
        "fig_a_metrics_over_epochs",
        "ensemble_size",
        "fig_c_entropy_vs_mi_known",
        "fig_c_entropy_vs_mi_unseen",
        "fig_b_agreement",  # drawn, but not a key figure
    ]
    for i, name in enumerate(names):  # Fig A wider than the README shows, the others not
        size = (2400, 1200) if name.startswith("fig_a") else (300 + i, 200)
        Image.new("RGB", size, (40 * i, 90, 160)).save(
            root / "reports" / "figures" / "png" / f"{name}.png"
        )
    lock = {
        "stages": {
            "figures": {
                "outs": [{"path": "reports/figures", "md5": "abc.dir"}],
                "metrics": [
                    {
                        "path": "reports/metrics.json",
                        "md5": _md5(root / "reports" / "metrics.json"),
                    }
                ],
            },
            "methods": {
                "outs": [
                    {"path": "reports/methods", "md5": "def.dir"},
                    {"path": "reports/methods.csv", "md5": _md5(root / "reports" / "methods.csv")},
                ]
            },
        }
    }
    (root / "dvc.lock").write_text(yaml.safe_dump(lock))
    (root / "README.md").write_text(f"# title\n\n{script.START}\nold\n{script.END}\n\n## more\n")


def test_make_readme_copies_the_key_figures_and_writes_the_table(tmp_path: Path) -> None:
    script = _script()
    _fake_run(tmp_path, script)
    (tmp_path / "docs" / "results").mkdir(parents=True)
    (tmp_path / "docs" / "results" / "old_figure.png").write_bytes(b"stale")
    script.main(tmp_path)

    results = tmp_path / "docs" / "results"
    assert sorted(p.name for p in results.glob("*.png")) == [
        "ensemble_size.png",
        "fig_a_metrics_over_epochs.png",
        "fig_c_entropy_vs_mi_known.png",
        "fig_c_entropy_vs_mi_unseen.png",
    ]
    with Image.open(results / "fig_a_metrics_over_epochs.png") as fig_a:
        assert fig_a.size == (1000, 500)
    with Image.open(results / "ensemble_size.png") as small:
        assert small.size == (301, 200)
        assert small.convert("RGB").getpixel((0, 0)) == (40, 90, 160)
    source = json.loads((results / "SOURCE.json").read_text())
    png = tmp_path / "reports" / "figures" / "png"
    assert source["source_md5"]["ensemble_size.png"] == _md5(png / "ensemble_size.png")
    assert source["md5"]["fig_a_metrics_over_epochs.png"] == _md5(
        results / "fig_a_metrics_over_epochs.png"
    )
    assert source["dvc.lock"]["reports/figures"] == "abc.dir"
    readme = (tmp_path / "README.md").read_text()
    assert readme.startswith("# title\n\n" + script.START) and readme.endswith(
        script.END + "\n\n## more\n"
    )
    assert "old" not in readme
    assert re.findall(r"!\[[^]]*\]\(([^)]+)\)", readme) == [
        "docs/results/fig_a_metrics_over_epochs.png",
        "docs/results/ensemble_size.png",
        "docs/results/fig_c_entropy_vs_mi_known.png",
        "docs/results/fig_c_entropy_vs_mi_unseen.png",
    ]
    metrics = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    final = metrics["lora_l2"][metrics["config"]["readout_of_figures"]]["final"]["known"]
    prior = metrics["lora_l2"][metrics["config"]["readout_of_figures"]]["prior"]["known"]
    row = f"| `lora_l2` | `known` | {prior['accuracy']:.3f} | {final['accuracy']:.3f} | {final['nll']:.3f} |"
    assert row in readme
    methods = pd.read_csv(tmp_path / "reports" / "methods.csv").set_index(["method", "eval_set"])
    ensemble = methods.loc[("lora_ensemble", "in_domain")]
    assert f"| `lora_ensemble` | 1 | {float(ensemble['accuracy']):.3f} |" in readme
    single = methods.loc[("single", "in_domain")]
    runs, acc, std = int(single["runs"]), float(single["accuracy"]), float(single["accuracy_std"])
    assert f"| `single` | {runs} | {acc:.3f} ± {std:.3f} |" in readme


def test_make_readme_refuses_a_run_dvc_lock_does_not_record(tmp_path: Path) -> None:
    script = _script()
    _fake_run(tmp_path, script)
    (tmp_path / "reports" / "metrics.json").write_text("{}")
    with pytest.raises(SystemExit, match=r"metrics.json: differs from dvc.lock"):
        script.main(tmp_path)
    _fake_run(tmp_path / "c", script)
    (tmp_path / "c" / "reports" / "methods.csv").write_text("method\n")
    with pytest.raises(
        SystemExit, match=r"methods.csv: differs from dvc.lock; run `dvc repro methods`"
    ):
        script.main(tmp_path / "c")
    _fake_run(tmp_path / "b", script)
    (tmp_path / "b" / "reports" / "figures" / "png" / "ensemble_size.png").unlink()
    with pytest.raises(SystemExit, match=r"ensemble_size.png: missing; run `dvc repro figures`"):
        script.main(tmp_path / "b")


def test_readme_shows_committed_figures_of_the_recorded_run() -> None:
    """What a visitor sees is the run dvc.lock records; rerun ``make readme`` after a repro."""
    script = _script()
    source_file = ROOT / script.SOURCE
    assert source_file.is_file(), f"{source_file} missing: run `dvc repro`, then `make readme`"
    source = json.loads(source_file.read_text())
    assert source["dvc.lock"] == script.locked_outputs(ROOT), "stale results: run `make readme`"
    assert _md5(ROOT / "reports" / "metrics.json") == source["dvc.lock"]["reports/metrics.json"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split(script.START)[1].split(script.END)[0]
    assert script.START + block + script.END == script.render_block(ROOT, source)
    table = "reports/methods.csv"  # the methods table is committed, not only cached
    assert subprocess.run(["git", "check-ignore", "-q", table], cwd=ROOT).returncode != 0
    assert _md5(ROOT / table) == source["dvc.lock"][table]
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", block)
    assert len(images) >= 3
    figures = ROOT / "reports" / "figures" / "png"
    for image in images:
        path = ROOT / image
        assert path.is_file(), image
        assert _md5(path) == source["md5"][path.name], image
        ignored = subprocess.run(["git", "check-ignore", "-q", image], cwd=ROOT).returncode == 0
        assert not ignored, f"{image} is ignored by git: the README would show nothing"
        if figures.is_dir():  # this checkout holds the run's outputs: copied from these bytes
            assert _md5(figures / path.name) == source["source_md5"][path.name], image

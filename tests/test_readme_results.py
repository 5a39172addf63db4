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


def _committed(root: Path, path: str) -> bytes:
    """``path`` as the checkout's HEAD commit holds it (the workspace's own copy where
    ``root`` is no git checkout, e.g. an unpacked archive)."""
    shown = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=root, capture_output=True)
    if shown.returncode == 0:
        return shown.stdout
    inside = subprocess.run(["git", "rev-parse", "--git-dir"], cwd=root, capture_output=True)
    assert inside.returncode != 0, f"HEAD:{path}: {shown.stderr.decode().strip()}"
    return (root / path).read_bytes()


def check_recorded_run(root: Path, scratch: Path) -> None:
    """The committed README shows the run the COMMITTED dvc.lock records.

    The workspace's dvc.lock, metrics.json and methods.csv are the user's own once they ran
    ``make repro`` (another machine's floats, another run), so they are not what is checked:
    the committed ones are, copied into ``scratch`` for the script to read."""
    script = _script()
    for path in ("dvc.lock", "reports/metrics.json", "reports/methods.csv", "README.md"):
        (scratch / path).parent.mkdir(parents=True, exist_ok=True)
        (scratch / path).write_bytes(_committed(root, path))
    source = json.loads(_committed(root, script.SOURCE.as_posix()))
    locked = script.locked_outputs(scratch)
    assert source["dvc.lock"] == locked, "stale results: run `make readme`"
    assert _md5(scratch / "reports" / "metrics.json") == locked["reports/metrics.json"]
    table = "reports/methods.csv"  # the methods table is committed, not only cached
    assert subprocess.run(["git", "check-ignore", "-q", table], cwd=root).returncode != 0
    assert _md5(scratch / table) == locked[table]
    readme = (scratch / "README.md").read_text(encoding="utf-8")
    block = readme.split(script.START)[1].split(script.END)[0]
    assert script.START + block + script.END == script.render_block(scratch, source)
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", block)
    assert len(images) >= 3
    figures = root / "reports" / "figures" / "png"
    # the workspace holds the recorded run's figures only where its dvc.lock is the committed one
    holds_run = (root / "dvc.lock").is_file() and script.locked_outputs(root) == locked
    for image in images:
        committed = _committed(root, image)
        assert hashlib.md5(committed).hexdigest() == source["md5"][Path(image).name], image
        ignored = subprocess.run(["git", "check-ignore", "-q", image], cwd=root).returncode == 0
        assert not ignored, f"{image} is ignored by git: the README would show nothing"
        if holds_run and figures.is_dir():  # copied from these bytes
            assert _md5(figures / Path(image).name) == source["source_md5"][Path(image).name]


def test_readme_shows_committed_figures_of_the_recorded_run(tmp_path: Path) -> None:
    """What a visitor sees is the run dvc.lock records; rerun ``make readme`` after a repro."""
    assert (ROOT / _script().SOURCE).is_file(), "run `dvc repro`, then `make readme`"
    check_recorded_run(ROOT, tmp_path)


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


def test_the_check_holds_after_the_users_own_run_and_fails_on_a_stale_commit(
    tmp_path: Path,
) -> None:
    """``make repro`` then ``make test`` on a fresh clone: the user's run rewrites dvc.lock,
    metrics.json, methods.csv and the figures (other floats, other timings); the committed
    README still matches the committed run. A README left behind by a committed run fails."""
    script = _script()
    repo = tmp_path / "repo"
    _fake_run(repo, script)
    script.main(repo)
    (repo / ".gitignore").write_text("/reports/figures\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "run")
    check_recorded_run(repo, tmp_path / "a")
    # the user's own run: every output and the workspace's dvc.lock change
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    metrics["lora_l2"][metrics["config"]["readout_of_figures"]]["final"]["known"]["nll"] += 1e-7
    (repo / "reports" / "metrics.json").write_text(json.dumps(metrics))
    (repo / "reports" / "methods.csv").write_text(
        (repo / "reports" / "methods.csv").read_text().replace("0.", "0.9", 1)
    )
    Image.new("RGB", (50, 50)).save(repo / "reports/figures/png/ensemble_size.png")
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    lock["stages"]["figures"]["outs"][0]["md5"] = "other.dir"
    lock["stages"]["figures"]["metrics"][0]["md5"] = _md5(repo / "reports" / "metrics.json")
    lock["stages"]["methods"]["outs"][1]["md5"] = _md5(repo / "reports" / "methods.csv")
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock))
    check_recorded_run(repo, tmp_path / "b")
    # that run committed without `make readme`: the README no longer shows it
    _git(repo, "commit", "-q", "-am", "a new run, README left behind")
    with pytest.raises(AssertionError, match="stale results"):
        check_recorded_run(repo, tmp_path / "c")

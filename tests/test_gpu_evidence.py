"""scripts/gpu_evidence.sh and .py: the GPU evidence, rehearsed on CPU so the first GPU call works.

The rehearsal runs the GPU command itself (the shell wrapper, its wheel install, the same
plan, timers and JSON writer) on a tiny geometry on CPU: every row kind is measured, the file
passes the schema the tables read, the time limit drops what does not fit and keeps the rest,
and a run killed from outside leaves a valid file with the rows it had. The wheel helper
that makes the command work on a machine without network is checked on a wheel built here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import gpu_check  # noqa: E402
import gpu_evidence  # noqa: E402
import gpu_results  # noqa: E402
import gpu_wheels  # noqa: E402

# The runs train tiny models in every dtype (~15 s each on one core): marked slow.

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHON": sys.executable}
ALL_IDS = [row.id for group in gpu_evidence.GROUPS for row in group.rows]


def _wheel(folder: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    """A minimal, valid wheel of ``files`` (its RECORD lists them)."""
    dist = f"{name}-{version}.dist-info"
    files = {
        **files,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in files) + f"{dist}/RECORD,,\n"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for member, data in files.items():
            wheel.writestr(member, data)
        wheel.writestr(f"{dist}/RECORD", record)
    return path


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_evidence.sh"), *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
        cwd=ROOT,
    )


def _only_file(folder: Path) -> dict:
    (path,) = folder.glob("*.json")
    return gpu_results.read_results(path)


@pytest.mark.slow
def test_cpu_rehearsal_measures_every_row_kind(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    probe = _wheel(wheels, "lorauq_probe", "1.0", {"lorauq_probe/__init__.py": b"X = 1\n"})
    out = tmp_path / "results"
    proc = _run("--wheels", str(wheels), "--cpu-tiny", "--out", str(out), "--time-limit", "600")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = _only_file(out)  # the schema the tables read
    assert report["finished"] is True and report["skipped"] == []
    assert [row["id"] for row in report["rows"]] == ALL_IDS
    kinds = {(r["base"], r["phase"], r["members"] > 1) for r in report["rows"]}
    assert kinds == {
        (base, phase, joint)
        for base in ("bfloat16", "float32")
        for phase in ("train", "evaluate")
        for joint in (False, True)
    } | {("4bit", "train", False), ("4bit", "evaluate", False)}
    peaks = report["peaks_tflops"]
    n = report["model"]["block_parameters"]
    for row in report["rows"]:
        # each row against its own dtype's peak: float32 (TF32 off) or bfloat16 (also 4-bit)
        assert row["peak_dtype"] == ("float32" if row["base"] == "float32" else "bfloat16")
        assert row["fraction_of_peak"] == pytest.approx(row["tflops"] / peaks[row["peak_dtype"]])
        per_token = 4 if row["phase"] == "train" else 2
        assert row["tflops"] * 1e12 == pytest.approx(per_token * n * row["tokens_per_s"])
        assert row["tokens_per_s"] > row["questions_per_s"] > 0
        if row["phase"] == "train":
            assert row["timed"]["steps"] in range(2, 4)
        else:
            assert row["batch_tokens"] == 1024 and 8 <= row["timed"]["questions_per_member"] <= 16
    env = report["environment"]
    assert env["card"] == "CPU" and env["tf32"] == {"matmul": False, "cudnn": False}
    assert env["carried_wheels"] == [probe.name]
    for key in ("torch", "transformers", "peft", "bitsandbytes", "git_commit", "code_sha256"):
        assert env[key], key
    assert env["code_sha256"] == gpu_evidence.code_sha256()
    assert report["elapsed_s"] <= report["time_limit_s"]
    assert "| float32-evaluate-5 |" in proc.stdout and "11 rows, 0 skipped" in proc.stdout


@pytest.mark.slow
def test_time_limit_drops_the_lowest_priority_groups_and_keeps_the_rest(tmp_path):
    # Estimates on the CPU are almost all fixed costs: with peaks this large the compute part
    # is nil, so the limit below fits the bfloat16 group and most of the float32 group.
    meta = gpu_check.build_random_model(
        gpu_evidence.REHEARSAL, torch.bfloat16, torch.device("meta")
    )
    parameters = sum(p.numel() for p in meta.parameters())
    plan = gpu_evidence.make_plan(
        gpu_evidence.GROUPS,
        {"bfloat16": 1e6, "float32": 1e6},
        parameters,
        gpu_check.block_parameters(meta),
        gpu_evidence.TINY_LIMITS,
    )
    first = gpu_evidence.plan_seconds({"bfloat16": plan["bfloat16"]})
    second = gpu_evidence.plan_seconds({"float32": plan["float32"]})
    limit = first + 0.9 * second
    out = tmp_path / "results"
    proc = _run("--cpu-tiny", "--out", str(out), "--time-limit", f"{limit:.0f}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = _only_file(out)
    assert report["finished"] is True
    assert [r["id"] for r in report["rows"]] == [r.id for r in gpu_evidence.GROUPS[0].rows]
    skipped = {s["id"]: s["reason"] for s in report["skipped"]}
    assert sorted(skipped) == sorted(ALL_IDS[len(report["rows"]) :])
    assert all(reason.startswith("time limit") for reason in skipped.values())
    assert report["elapsed_s"] <= limit


@pytest.mark.slow
def test_a_killed_run_keeps_the_rows_it_measured(tmp_path):
    out = tmp_path / "results"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "scripts" / "gpu_evidence.py"),
            "--cpu-tiny",
            "--out",
            str(out),
        ],
        env=ENV,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        rows = 0
        while rows < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            files = list(out.glob("*.json"))
            if files:
                rows = len(json.loads(files[0].read_text())["rows"])
        assert rows >= 2 and proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    report = _only_file(out)  # written atomically: never half a file
    assert report["finished"] is False
    assert len(report["rows"]) >= 2
    assert [r["id"] for r in report["rows"]] == ALL_IDS[: len(report["rows"])]


def test_budget_skips_a_step_that_would_overrun_and_learns_from_slow_steps():
    now = [100.0]
    budget = gpu_evidence.Budget(10.0, clock=lambda: now[0])
    assert budget.fits("row", 4.0)
    now[0] += 7.0
    assert budget.fits("row", 3.0) and not budget.fits("row", 3.5)
    budget.observe("row", 1.0, 2.0)  # a row took twice its estimate: later ones are scaled
    assert not budget.fits("row", 2.0) and budget.fits("setup", 2.0)
    assert budget.why_not("row", 2.0) == (
        "time limit: 7 s used of 10 s, this step is estimated at 4 s"
    )
    budget.observe("row", 4.0, 1.0)  # a fast row never makes later estimates smaller
    assert budget.slowness["row"] == 2.0


@pytest.mark.slow
def test_h100_plan_fits_the_budget_and_sizes_rows_from_the_measured_rates():
    meta = gpu_check.build_random_model(gpu_check.MISTRAL_7B, torch.bfloat16, torch.device("meta"))
    parameters, n = gpu_check.MISTRAL_7B_PARAMETERS, gpu_check.block_parameters(meta)
    plan = gpu_evidence.make_plan(
        gpu_evidence.GROUPS, gpu_evidence.PLAN_PEAKS_TFLOPS, parameters, n, gpu_evidence.GPU_LIMITS
    )
    assert [row.id for _, rows in plan.values() for row, _ in rows] == ALL_IDS
    # Under 8 minutes with room for start-up (imports, peaks: well under a minute).
    assert gpu_evidence.plan_seconds(plan) < 420
    sizing = dict(plan["bfloat16"][1])
    single = sizing[gpu_evidence.RowPlan("bfloat16", "train", 1, 8)]
    # bf16 batch 8 measured 60.6 questions/s (12.8 %); assumed 12 %: ≈ 7.5 steps/s, capped at 20.
    assert single.count == gpu_evidence.GPU_LIMITS.steps[1]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_evidence.py"), "--plan"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "float32-train-5x8" in proc.stdout and "total ≈" in proc.stdout


@pytest.mark.slow
def test_without_a_gpu_and_without_cpu_tiny_it_fails_clearly(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the real run would start")
    proc = _run("--out", str(tmp_path))
    assert proc.returncode != 0
    assert "--cpu-tiny" in proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_without_git_the_commit_comes_from_the_command_line(monkeypatch, tmp_path):
    monkeypatch.setattr(gpu_evidence, "_command", lambda *args: None)  # no git, no nvidia-smi
    (tmp_path / "a.whl").write_bytes(b"")
    env = gpu_evidence.environment(torch.device("cpu"), "c0ffee" * 6, tmp_path)
    assert (env["git_commit"], env["git_dirty"]) == ("c0ffee" * 6, None)
    assert env["carried_wheels"] == ["a.whl"] and env["float32_matmul_precision"] == "highest"


def test_results_file_is_named_after_the_card_and_never_overwritten(tmp_path):
    first = gpu_evidence.output_path(tmp_path, "NVIDIA H100 80GB HBM3", "2026-12-06")
    assert first.name == "nvidia-h100-80gb-hbm3-2026-12-06.json"
    first.write_text("{}")
    assert gpu_evidence.output_path(tmp_path, "NVIDIA H100 80GB HBM3", "2026-12-06").name == (
        "nvidia-h100-80gb-hbm3-2026-12-06-2.json"
    )


# --------------------------------------------------------------------------- the wheels


def test_wheels_are_the_pinned_versions_for_the_machine(tmp_path, monkeypatch):
    pinned = gpu_wheels.pins(ROOT / "requirements.txt")
    calls = []

    def download(argv, check):  # what the registry would be asked for
        calls.append(argv)
        folder = Path(argv[argv.index("-d") + 1])
        _wheel(folder, "bitsandbytes", pinned["bitsandbytes"], _native_libraries())

    monkeypatch.setattr(gpu_wheels.subprocess, "run", download)
    (wheel,) = gpu_wheels.main([str(tmp_path / "whl")])
    (argv,) = calls
    for package in ("transformers", "peft", "bitsandbytes"):
        assert f"{package}=={pinned[package]}" in argv
    assert argv[argv.index("--python-version") + 1] == "3.12"
    assert "--no-deps" in argv and "--only-binary=:all:" in argv
    assert {argv[i + 1] for i, a in enumerate(argv) if a == "--platform"} >= {
        "manylinux_2_28_x86_64",
        "manylinux2014_x86_64",
    }
    with zipfile.ZipFile(wheel) as slim:
        assert sorted(n for n in slim.namelist() if n.endswith(".so")) == [
            "bitsandbytes/libbitsandbytes_cpu.so",
            "bitsandbytes/libbitsandbytes_cuda130.so",
        ]


def _native_libraries() -> dict[str, bytes]:
    names = ("cpu", "cuda118", "cuda128", "cuda130", "rocm64", "xpu2026")
    return {
        "bitsandbytes/__init__.py": b"",
        **{f"bitsandbytes/libbitsandbytes_{n}.so": n.encode() * 1000 for n in names},
    }


def test_slimmed_bitsandbytes_is_a_wheel_pip_installs(tmp_path):
    wheel = _wheel(tmp_path, "bitsandbytes", "0.50.2", _native_libraries())
    before, after = gpu_wheels.slim_bitsandbytes(wheel, "13")
    assert after < before
    with zipfile.ZipFile(wheel) as slim:
        record = slim.read("bitsandbytes-0.50.2.dist-info/RECORD").decode()
        listed = sorted(line.split(",")[0] for line in record.splitlines())
        assert listed == sorted(slim.namelist())  # RECORD names exactly what the wheel holds
    target = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target",
         str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (target / "bitsandbytes").glob("*.so")) == [
        "libbitsandbytes_cpu.so",
        "libbitsandbytes_cuda130.so",
    ]
    (tmp_path / "other").mkdir()
    other = _wheel(tmp_path / "other", "bitsandbytes", "0.50.2", {"bitsandbytes/x.py": b""})
    with pytest.raises(SystemExit, match="no CUDA 13 library"):
        gpu_wheels.slim_bitsandbytes(other, "13")

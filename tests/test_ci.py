"""CI runs what it claims: ``.ci/run``'s steps and order, and the skip allowlist
(``scripts/check_skips.py``) on a real pytest JUnit report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from workspace import load_script

ROOT = Path(__file__).resolve().parents[1]
CI = ROOT / ".ci" / "run"

SAMPLE = """
import pytest

def test_passes():
    assert True

def test_browser():
    pytest.skip("no chromium binary (Debian: apt-get install chromium)")

@pytest.mark.skipif(True, reason="full real data copies: set LORAUQ_REALDATA to a folder")
def test_realdata():
    pass

def test_tokenizers():
    pytest.skip("set LORAUQ_REALTOKENIZERS to a folder of real tokenizers to run this")

def test_gpu_branch():
    pytest.skip("a GPU is present: the full check would run")

@pytest.mark.xfail(strict=True, reason="a page rewritten elsewhere")
def test_expected_to_fail():
    assert False
"""


def _report(tmp_path: Path, source: str) -> Path:
    """The JUnit XML of a real pytest run of ``source``, outside this repository's config."""
    (tmp_path / "test_sample.py").write_text(source, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    report = tmp_path / "junit.xml"
    subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", "pytest.ini"),
            *("test_sample.py", f"--junitxml={report}"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    return report


def test_only_skips_outside_the_allowlist_fail_the_run(tmp_path: Path, capsys) -> None:
    check = load_script("check_skips")
    report = _report(tmp_path, SAMPLE)
    found = check.skips(report)
    # four skips; the strict xfail is not one of them
    assert sorted(s.test.rsplit("::", 1)[1] for s in found) == [
        "test_browser",
        "test_gpu_branch",
        "test_realdata",
        "test_tokenizers",
    ]
    (bad,) = check.disallowed(found)
    assert bad.test.endswith("test_browser") and "no chromium binary" in bad.reason
    assert check.main([str(report)]) == 1
    out = capsys.readouterr().out
    assert "NOT ALLOWED: test_sample::test_browser: no chromium binary" in out
    assert "4 skipped, 1 not allowed" in out


def test_a_run_with_allowed_skips_only_passes(tmp_path: Path) -> None:
    check = load_script("check_skips")
    source = SAMPLE.replace('pytest.skip("no chromium binary', 'print("no chromium binary')
    assert check.main([str(_report(tmp_path, source))]) == 0


def test_an_unreadable_report_is_an_error_naming_it(tmp_path: Path) -> None:
    check = load_script("check_skips")
    (tmp_path / "cut.xml").write_text("<testsuites><testsuite>", encoding="utf-8")
    try:
        check.main([str(tmp_path / "cut.xml")])
    except SystemExit as exc:
        assert "cut.xml: not a readable JUnit XML report" in str(exc)
    else:
        raise AssertionError("a cut-off report was accepted")


def test_the_repository_s_skip_reasons_are_classified_as_intended() -> None:
    """The allowed reasons are the ones the tests give for no GPU and the optional data; the
    browser, compiler and package skips are not allowed."""
    check = load_script("check_skips")
    allowed = [
        "a GPU is present: the full check would run",
        "full real data copies: set LORAUQ_REALDATA to a folder holding them",
        "full mmlu copy: set LORAUQ_REALDATA to a folder holding mmlu/",
        "set LORAUQ_REALTOKENIZERS to a folder of real tokenizers to run this",
    ]
    refused = [
        "no chromium binary (Debian: apt-get install chromium)",
        "torch.compile on CPU needs a C compiler (cc/gcc/clang) on PATH",
        "gguf not installed: it writes the test's file",
        "params.yaml not written yet (another stage of the project adds it)",
    ]
    skips = [check.Skip(f"t::{n}", reason) for n, reason in enumerate(allowed + refused)]
    assert [s.reason for s in check.disallowed(skips)] == refused
    for reason in allowed + refused[:2]:  # the reasons are the tests' own words
        words = reason.split(":")[0] if "LORAUQ" not in reason else "LORAUQ_REAL"
        assert any(words in p.read_text(encoding="utf-8") for p in ROOT.glob("tests/test_*.py"))


def test_ci_script_parses_and_runs_the_readme_s_commands_in_order() -> None:
    assert subprocess.run(["bash", "-n", str(CI)], check=False).returncode == 0
    lines = [line.strip() for line in CI.read_text(encoding="utf-8").splitlines()]
    assert lines[0] == "#!/usr/bin/env bash" and "set -euo pipefail" in lines

    def first(prefix: str) -> int:
        found = [n for n, line in enumerate(lines) if line.startswith(prefix)]
        assert found, prefix
        return found[0]

    order = [
        first("$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium "),
        first("make repro"),
        first('make test PYTEST_ARGS="-rs --junitxml=$work/junit.xml"'),
        first('.venv/bin/python scripts/check_skips.py "$work/junit.xml"'),
        first('git clone -q "$root" "$work/plain"'),
        first("pip install -e ."),
        first("dvc repro"),
    ]
    assert order == sorted(order)
    assert "chromium-driver" in lines[order[0]]
    # the README's two commands are the Quick start's, in the same order
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = readme.split("## Quick start", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in quick.splitlines()] == [
        "make repro",
        "make test",
    ]

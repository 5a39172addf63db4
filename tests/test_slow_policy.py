"""The marker policy (``slow_policy``) on small test files of its own, run by pytester.

At collection: a test not marked ``slow`` that trains or runs a stage, however it gets there
(a direct call, a helper in another module, a fixture, a fixture requested by name, a
parameter, a ``dvc repro`` command line, a script that trains), fails the collection with
its id and the chain that reached the slow call; marked ``slow``, the same test collects. At
run time: an optimizer step or a pipeline command that reading could not see fails a test
not marked ``slow``, and only such a test.
"""

from __future__ import annotations

import re

import pytest
import slow_policy
import torch


@pytest.fixture(scope="module", autouse=True)
def optimizer_machinery_loaded() -> None:
    """Take one optimizer step here first: the first step in a process imports ~800 modules
    (``torch._dynamo`` …), a pytester run in this process drops the modules it imported, and
    torch refuses to import its operator libraries twice."""
    with slow_policy.allowed("one step of one weight, to load torch's optimizer code"):
        weight = torch.nn.Parameter(torch.ones(1))
        weight.sum().backward()
        torch.optim.SGD([weight], lr=0.1).step()


HELPER = """
from lorauq.train import train_member


def fit(model):
    return train_member(model, None, None, member=0, member_dir=None, lora=None, train=None)
"""

SOURCES = {
    "test_direct": """
from lorauq.train import train_member

def test_trains():
    train_member(None, None, None)
""",
    "test_helper": """
import helper

def test_through_a_helper():
    helper.fit(None)
""",
    "test_fixture": """
import pytest
import torch
import lorauq.joint

@pytest.fixture(scope="module")
def members():
    return lorauq.joint.train_members(None, None, None, {})

def test_uses_a_fixture_that_trains(members):
    assert members
""",
    "test_stage": """
def test_runs_a_stage(tmp_path):
    from lorauq.stages import figures as report_stage

    report_stage.run(None, tmp_path)
""",
    "test_command": """
import subprocess

def test_runs_dvc(tmp_path):
    subprocess.run(["dvc", "repro", "figures"], cwd=tmp_path, check=True)
""",
    "test_by_name": """
import pytest
import torch
from helper import fit

@pytest.fixture
def fitted():
    return fit(None)

def test_requests_it_by_name(request):
    request.getfixturevalue("fitted")

@pytest.fixture
def refitted(fitted):
    return fitted

def test_requests_what_needs_it_by_name(request):
    request.getfixturevalue("refitted")
""",
    "test_property": """
from dataclasses import dataclass
from helper import fit

@dataclass
class Ctx:
    request: object

    @property
    def member(self):
        return fit(None)

def use(ctx: Ctx):
    return ctx.member

def test_reads_a_property(request):
    use(Ctx(request))
""",
    "test_script": """
import subprocess
import sys

def test_launches_a_script_that_trains():
    subprocess.run([sys.executable, "scripts/gpu_check.py", "--cpu-tiny"], check=True)
""",
    "test_inner_import": """
def test_imports_a_helper_in_its_body():
    from fitting import fit_again

    fit_again()
""",
    "test_parameter": """
import pytest
import torch
from helper import fit

@pytest.mark.parametrize("step", [fit])
def test_calls_its_parameter(step):
    step(None)
""",
}
EXPECTED = {
    "test_direct.py::test_trains": "trains (lorauq.train.train_member)",
    "test_helper.py::test_through_a_helper": "trains (lorauq.train.train_member), via helper.fit",
    "test_fixture.py::test_uses_a_fixture_that_trains": (
        "trains (lorauq.joint.train_members), via fixture members → test_fixture.members"
    ),
    "test_stage.py::test_runs_a_stage": "runs a stage (lorauq.stages.figures.run)",
    "test_command.py::test_runs_dvc": "runs dvc (dvc repro figures)",
    "test_by_name.py::test_requests_it_by_name": (
        "trains (lorauq.train.train_member), via fixture fitted → test_by_name.fitted → helper.fit"
    ),
    "test_by_name.py::test_requests_what_needs_it_by_name": (
        "trains (lorauq.train.train_member), via fixture refitted → fixture fitted → "
        "test_by_name.fitted → helper.fit"
    ),
    "test_property.py::test_reads_a_property": (
        "trains (lorauq.train.train_member), via test_property.use → test_property.Ctx.member → "
        "helper.fit"
    ),
    "test_script.py::test_launches_a_script_that_trains": "trains (lorauq.*), via gpu_check.py",
    "test_inner_import.py::test_imports_a_helper_in_its_body": (
        "trains (lorauq.joint.train_members), via fitting.fit_again"
    ),
    "test_parameter.py::test_calls_its_parameter[fit]": (
        "trains (lorauq.train.train_member), via parameter step → helper.fit"
    ),
}


#: A helper no test module imports at its top: reading finds it by its file.
FITTING = """
import lorauq.joint


def fit_again():
    return lorauq.joint.train_members(None, None, None, {})
"""


def _write(pytester: pytest.Pytester, slow: bool) -> None:
    mark = "import pytest\npytestmark = pytest.mark.slow\n" if slow else ""
    sources = {name: mark + source for name, source in SOURCES.items()}
    pytester.makepyfile(helper=HELPER, fitting=FITTING, **sources)


def test_unmarked_tests_that_train_or_run_a_stage_fail_collection(pytester) -> None:
    _write(pytester, slow=False)
    pytester.makepyfile(test_quick="def test_adds():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest_inprocess("-p", "slow_policy", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = "\n".join(result.errlines)
    assert "must be marked @pytest.mark.slow" in errors
    for nodeid, why in EXPECTED.items():  # "*" in a reason: any text
        assert re.search(re.escape(f"{nodeid}: {why}").replace(r"\*", ".*"), errors), nodeid
    assert "test_quick" not in errors


def test_the_same_tests_marked_slow_collect(pytester) -> None:
    _write(pytester, slow=True)
    result = pytester.runpytest_inprocess("-p", "slow_policy", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK, result.errlines
    result.stdout.fnmatch_lines([f"*{len(EXPECTED)} tests collected*"])


def test_a_shared_build_may_train_for_any_tier(pytester) -> None:
    pytester.makepyfile(
        test_shared="""
import pytest
import torch
import torch
from slow_policy import shared_build
from lorauq.tiny.base import build_tiny_base

@pytest.fixture(scope="session")
@shared_build("built once")
def base(tmp_path_factory):
    if tmp_path_factory is None:  # never: a call of an entry point, for the collection check
        build_tiny_base(None, None, None)
    weight = torch.nn.Parameter(torch.ones(1))
    weight.sum().backward()
    torch.optim.SGD([weight], lr=0.1).step()
    return weight

def test_reads_it(base):
    assert base.item() == pytest.approx(0.9)  # the step ran: 1 - 0.1 * 1
"""
    )
    result = pytester.runpytest_inprocess("-p", "slow_policy", "-q")
    result.assert_outcomes(passed=1)


RUNTIME = """
import os
import subprocess
import pytest
import torch
import torch

def step():  # no lorauq entry point: reading sees nothing slow
    weight = torch.nn.Parameter(torch.ones(1))
    weight.sum().backward()
    torch.optim.SGD([weight], lr=0.1).step()

def test_steps_unmarked():
    step()

@pytest.mark.slow
def test_steps_marked():
    step()

def test_launches_unmarked(tmp_path):
    subprocess.run(os.environ["COMMAND"].split(), cwd=tmp_path)

def test_quick():
    assert torch.ones(1).item() == 1.0
"""


def test_what_reading_misses_fails_the_unmarked_test_at_run_time(pytester, monkeypatch) -> None:
    monkeypatch.setenv("COMMAND", "dvc repro figures")  # a command line only the run sees
    pytester.makepyfile(test_runtime=RUNTIME)
    result = pytester.runpytest_inprocess("-p", "slow_policy", "-q", "-rf")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*test_steps_unmarked is not marked slow but trains (SGD.step)*",
            "*test_launches_unmarked is not marked slow but runs dvc (dvc repro figures)*",
        ]
    )


@pytest.mark.parametrize(
    ("argv", "slow"),
    [
        (["python", "-m", "papermill", "notebooks/04_figures.ipynb", "out.ipynb"], True),
        (["python", "-m", "papermill", "--help-notebook", "notebooks/04_figures.ipynb"], False),
        (["/venv/bin/dvc", "exp", "run"], True),
        (["dvc", "status"], False),
        (["python", "-m", "lorauq", "prepare"], True),
        (["python", "-m", "lorauq.stages.methods", "laplace"], True),
        (["python", "-m", "lorauq.compose"], False),
    ],
)
def test_command_lines_that_run_the_pipeline(argv: list[str], slow: bool) -> None:
    assert (slow_policy.command_reason(argv) is not None) is slow

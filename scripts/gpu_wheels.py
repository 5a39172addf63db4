"""Wheels for a GPU machine without network: the pinned packages its Python lacks, small.

A cloud or cluster GPU node often has a CUDA torch but no route to the package registry, and
what can be copied to it may be capped. This downloads, where the registry is reachable, the
wheels of the packages the GPU evidence needs beyond torch, at the versions
``requirements.txt`` pins, for the node's Python and platform:

    python scripts/gpu_wheels.py .whl                  # transformers, peft, bitsandbytes
    bash scripts/gpu_evidence.sh --wheels .whl ...     # on the node: installs them first

bitsandbytes ships one native library per CUDA (and ROCm, XPU) version, 43 MB in all; with
``--cuda 13`` (the default) only the CUDA 13 libraries (and the CPU one) are kept, which
brings it to a few MB. The slimmed wheel is an ordinary wheel: its ``RECORD`` lists exactly
the files it holds. bitsandbytes picks its library by the CUDA version torch was built with,
so ``--cuda`` must be that version's major (``python -c "import torch; print(torch.version.cuda)"``
on the node).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("transformers", "peft", "bitsandbytes")
#: manylinux tags pip must be told one by one when it downloads for another machine.
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
_NATIVE = re.compile(r"^bitsandbytes/libbitsandbytes_(\w+)\.(so|dll|dylib)$")


def pins(requirements: Path) -> dict[str, str]:
    """``name -> version`` of every ``name==version`` line (comments and options ignored)."""
    found = {}
    for line in requirements.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s#;]+)", line)
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


def download_command(folder: Path, requirements: list[str], python_version: str) -> list[str]:
    """The ``pip download`` that fetches ``requirements`` as binary wheels for CPython
    ``python_version`` on x86-64 Linux, without their dependencies."""
    platforms = [arg for tag in PLATFORMS for arg in ("--platform", tag)]
    return [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--python-version", python_version, "--implementation", "cp", *platforms,
        "-d", str(folder), *requirements,
    ]  # fmt: skip


def slim_bitsandbytes(wheel: Path, cuda_major: str) -> tuple[int, int]:
    """Rewrite ``wheel`` keeping only the native libraries for CUDA ``cuda_major`` and the CPU
    (its other files untouched, ``RECORD`` without the dropped ones). Returns the sizes in
    bytes before and after."""

    def keep(name: str) -> bool:
        match = _NATIVE.match(name)
        return (
            match is None
            or match.group(1) == "cpu"
            or match.group(1).startswith(f"cuda{cuda_major}")
        )

    before = wheel.stat().st_size
    slim = wheel.with_name(wheel.name + ".slim")
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as out:
        names = source.namelist()
        if not any(keep(n) and _NATIVE.match(n) and "cuda" in n for n in names):
            slim.unlink()
            raise SystemExit(f"{wheel}: has no CUDA {cuda_major} library; keep the whole wheel")
        for info in source.infolist():
            if not keep(info.filename):
                continue
            data = source.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode("utf-8").splitlines(keepends=True)
                data = "".join(line for line in lines if keep(line.split(",", 1)[0])).encode()
            out.writestr(info, data)
    slim.replace(wheel)
    return before, wheel.stat().st_size


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="where the wheels go (created)")
    parser.add_argument("--packages", nargs="+", default=list(PACKAGES))
    parser.add_argument("--python-version", default="3.12", help="the node's Python (3.12)")
    parser.add_argument(
        "--cuda", default="13", help="CUDA major of the node's torch; 'all' keeps every library"
    )
    parser.add_argument("--requirements", type=Path, default=ROOT / "requirements.txt")
    args = parser.parse_args(argv)
    pinned = pins(args.requirements)
    missing = [p for p in args.packages if p.lower() not in pinned]
    if missing:
        raise SystemExit(f"{args.requirements}: no '==' pin for {missing}")
    args.folder.mkdir(parents=True, exist_ok=True)
    wanted = [f"{p}=={pinned[p.lower()]}" for p in args.packages]
    subprocess.run(download_command(args.folder, wanted, args.python_version), check=True)
    wheels = sorted(args.folder.glob("*.whl"))
    for wheel in wheels:
        if wheel.name.startswith("bitsandbytes-") and args.cuda != "all":
            before, after = slim_bitsandbytes(wheel, args.cuda)
            print(
                f"{wheel.name}: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB (CUDA {args.cuda} only)"
            )
    total = sum(w.stat().st_size for w in wheels)
    print(f"{args.folder}: {len(wheels)} wheels, {total / 2**20:.1f} MiB")
    return wheels


if __name__ == "__main__":
    main()

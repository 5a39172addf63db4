"""Write the method stage of ``dvc.yaml`` from the registry: ``python -m lorauq.methods.pipeline``.

``method@<name>`` runs ``python -m lorauq.stages.methods <name>`` once per method of the
active profile's ``methods.run`` (the top-level ``methods`` list). DVC builds those stages
from one template, so what differs between methods is named by ``${item}``: the method's
own module ``lorauq/methods/${item}.py``, its own params section
``${profile}.methods.${item}`` and its outputs. Editing one method's module, or its
settings, reruns that method alone; the other deps are what the methods share: the modules
every method's code reaches besides its own (the runner, the fine-tuning and inference code
that some of them call), the main ensemble's adapters and logits (``${main}``: retraining
another ensemble reruns no method), and the profile sections the methods read.

A method's module may not import another method's: the stage of the importer would not
rerun when the imported one changes. ``tests/test_method_registry.py`` fails while the
block in dvc.yaml differs from what this module writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lorauq.atomic import write_text_atomic
from lorauq.errors import ConfigError
from lorauq.imports import ROOT, module_closure
from lorauq.marked import replace_marked
from lorauq.methods.registry import ARTEFACTS, METHODS, Method

__all__ = ["BEGIN", "END", "RUNNER", "main", "method_stage", "render", "updated", "write"]

BEGIN = "  # method@<name>: written by `python -m lorauq.methods.pipeline` from the registry\n"
END = "  # end of the method stage written from the registry\n"
RUNNER = "lorauq.stages.methods"


def _relative(paths: set[Path], root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in paths)


def method_stage(methods: dict[str, Method] = METHODS, root: Path = ROOT) -> dict[str, list]:
    """The ``deps``, ``params`` and ``outs`` of the ``method`` foreach stage."""
    own = {root / "lorauq" / "methods" / f"{name}.py" for name in methods}
    shared = module_closure([RUNNER], root)
    for name, record in methods.items():
        closure = module_closure([record.module], root)
        if (root / "lorauq" / "methods" / f"{name}.py") not in closure:
            raise ConfigError(f"method {name!r}: lorauq/methods/{name}.py is missing")
        others = sorted(p.name for p in closure & own if p.stem != name)
        if others:
            raise ConfigError(
                f"lorauq/methods/{name}.py reaches another method's module {others}: move "
                "what they share into a module of its own"
            )
        shared |= closure - own
    needs = [key for key in ARTEFACTS if any(key in m.needs for m in methods.values())]
    sections = list(dict.fromkeys(s for m in methods.values() for s in m.profile_params))
    return {
        "deps": [
            *_relative(shared, root),
            "lorauq/methods/${item}.py",
            *(ARTEFACTS[key] for key in needs),
        ],
        "params": [
            "profile",
            "${profile}.members",
            "${profile}.methods.${item}",
            *(f"${{profile}}.{section}" for section in sections),
        ],
        "outs": ["data/methods/${item}", "reports/costs/method-${item}.json"],
    }


def render(methods: dict[str, Method] = METHODS, root: Path = ROOT) -> str:
    """The method stage as dvc.yaml text, between :data:`BEGIN` and :data:`END`."""
    stage = method_stage(methods, root)
    lines = [
        BEGIN.rstrip("\n"),
        "  method:",
        "    foreach: ${methods}",
        "    do:",
        f"      cmd: python -m {RUNNER} ${{item}}",
    ]
    for key in ("deps", "params", "outs"):
        lines += [f"      {key}:", *(f"      - {entry}" for entry in stage[key])]
    return "\n".join(lines) + "\n" + END


def updated(text: str, block: str) -> str:
    """``text`` (dvc.yaml) with its method stage replaced by ``block``."""
    return replace_marked(text, BEGIN, END, block, "dvc.yaml, the method stage")


def write(root: Path = ROOT, methods: dict[str, Method] = METHODS) -> Path:
    """Rewrite the method stage of ``root/dvc.yaml``."""
    path = root / "dvc.yaml"
    text = updated(path.read_text(encoding="utf-8"), render(methods, root))
    write_text_atomic(path, text)
    return path


def main() -> int:
    print(f"{write()}: the method stage of {len(METHODS)} methods ({', '.join(METHODS)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Safe loading and atomic writes, checked on the package source and on real files.

Source checks (ast, not grep, so comments and strings do not count): every ``torch.load``
passes ``weights_only=True``; no pickle; every file lorauq writes is written inside an
``atomic_path``/``atomic_dir`` block; no secret is read from the environment or passed on.
Behaviour checks: ``trust_remote_code`` is off unless ``base.trust_remote_code`` is set, and
then it warns; the base and the adapters are saved as safetensors.
"""

from __future__ import annotations

import ast
import dataclasses
import warnings
from pathlib import Path

import pytest
import tinyworld as tw
import torch

from lorauq.model import load_base_model, load_tokenizer

PACKAGE = Path(__file__).resolve().parents[1] / "lorauq"
SOURCES = sorted(PACKAGE.rglob("*.py"))

#: Calls that create or change a file: Path.write_text, DataFrame.to_parquet, fig.savefig, …
WRITERS = {
    "write_text",
    "write_bytes",
    "to_parquet",
    "to_csv",
    "to_json",
    "to_pickle",
    "savefig",
    "save_pretrained",
    "save",
    "save_file",
    "write_table",
    "dump",
    "touch",
}
#: shutil's file-creating functions (``copy`` alone would match ``DataFrame.copy``).
SHUTIL_WRITERS = {
    "shutil.copy",
    "shutil.copy2",
    "shutil.copyfile",
    "shutil.copytree",
    "shutil.move",
}
ATOMIC = {"atomic_path", "atomic_dir"}
#: The only environment variables lorauq reads or sets (the hub's offline switches, the progress
#: mode); a token or key must never be among them.
#: ... and the git identity ``dvc exp run`` commits with (lorauq.preflight checks it is set;
#: names, not secrets).
ENV_READ = {"HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "LORAUQ_PROGRESS"} | {
    f"GIT_{who}_{what}" for who in ("AUTHOR", "COMMITTER") for what in ("NAME", "EMAIL")
}
ENV_GETTERS = {"os.environ.get", "os.getenv"}
#: The one call that takes a token: the hub's own login (the Colab notebook hands it the Colab
#: secret HF_TOKEN, and the hub stores it where `hf auth login` would); lorauq keeps none.
TOKEN_TAKERS = {"huggingface_hub.login"}


def parsed() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(encoding="utf-8"))) for path in SOURCES]


def call_name(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def where(path: Path, node: ast.AST) -> str:
    return f"{path.name}:{node.lineno}"


def test_package_sources_found():
    assert len(SOURCES) >= 15
    names = {str(p.relative_to(PACKAGE)) for p in SOURCES}
    assert names >= {"atomic.py", "store.py", "train.py", "plots.py", "stages/figures.py"}


def test_every_torch_load_is_weights_only():
    loads = []
    for path, tree in parsed():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                loads.append(where(path, node))
                ok = any(
                    kw.arg == "weights_only"
                    and isinstance(kw.value, ast.Constant)
                    and kw.value.value is True
                    for kw in node.keywords
                )
                assert ok, f"{where(path, node)}: torch.load without weights_only=True"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not {"pickle", "dill", "cloudpickle"} & set(names), where(path, node)
                assert "load" not in names or node.module != "torch", where(path, node)
    assert loads, "expected at least train.py's torch.load"


def _inside_atomic_block(parents: list[ast.AST]) -> bool:
    for parent in parents:
        if isinstance(parent, ast.With):
            for item in parent.items:
                expr = item.context_expr
                if isinstance(expr, ast.Call) and call_name(expr) in ATOMIC:
                    return True
    return False


def _walk_with_parents(node: ast.AST, parents: list[ast.AST]):
    yield node, parents
    for child in ast.iter_child_nodes(node):
        yield from _walk_with_parents(child, [*parents, node])


def _opens_for_writing(node: ast.Call) -> bool:
    if call_name(node) != "open":
        return False
    modes = [a for a in node.args[1:2]] + [k.value for k in node.keywords if k.arg == "mode"]
    return any(isinstance(m, ast.Constant) and set(str(m.value)) & set("wax+") for m in modes)


def test_every_file_write_goes_through_an_atomic_helper():
    writes, bare = [], []
    for path, tree in parsed():
        for node, parents in _walk_with_parents(tree, []):
            if not isinstance(node, ast.Call):
                continue
            if (
                call_name(node) in WRITERS
                or ast.unparse(node.func) in SHUTIL_WRITERS
                or _opens_for_writing(node)
            ):
                writes.append(where(path, node))
                if not _inside_atomic_block(parents):
                    bare.append(f"{where(path, node)}: {ast.unparse(node)[:80]}")
    assert len(writes) >= 8  # store, data, pipeline, plots, checkpoints, tiny.base all write
    assert bare == [], "writes outside atomic_path/atomic_dir:\n" + "\n".join(bare)


def test_no_secret_read_or_passed():
    for path, tree in parsed():
        for node in ast.walk(tree):
            key = None
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ENV_GETTERS:
                key = node.args[0] if node.args else node
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
                key = node.slice
            if key is not None:
                assert isinstance(key, ast.Constant) and key.value in ENV_READ, where(path, node)
            if isinstance(node, ast.Call) and ast.unparse(node.func) not in TOKEN_TAKERS:
                passed = {kw.arg for kw in node.keywords}
                assert not passed & {"token", "use_auth_token"}, where(path, node)


# --------------------------------------------------------------------------- behaviour


def test_trust_remote_code_off_by_default(tiny_base, monkeypatch):
    """What transformers is asked: trust_remote_code=False, and no warning."""
    import transformers

    seen = []
    for auto in (transformers.AutoModelForCausalLM, transformers.AutoTokenizer):
        real = auto.from_pretrained.__func__

        def spy(cls, *args, _real=real, **kwargs):
            seen.append(kwargs.get("trust_remote_code"))
            return _real(cls, *args, **kwargs)

        monkeypatch.setattr(auto, "from_pretrained", classmethod(spy))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*trust_remote_code.*")
        load_base_model(str(tiny_base), tw.BASE)
        load_tokenizer(str(tiny_base), tw.BASE)
    assert seen == [False, False]


@pytest.mark.parametrize("loader", [load_base_model, load_tokenizer])
def test_trust_remote_code_on_warns(tiny_base, loader):
    trusting = dataclasses.replace(tw.BASE, trust_remote_code=True)
    with pytest.warns(UserWarning, match=r"base: base\.trust_remote_code is on; code from"):
        loader(str(tiny_base), trusting)


@pytest.mark.slow  # tiny_member trains
def test_base_and_adapters_are_safetensors(tiny_base, tiny_member):
    base_files = {p.name for p in tiny_base.iterdir()}
    assert "model.safetensors" in base_files
    epoch = tiny_member / "epoch-1"
    epoch_files = {p.name for p in epoch.iterdir()}
    assert "adapter_model.safetensors" in epoch_files
    for folder, files in ((tiny_base, base_files), (epoch, epoch_files)):
        pickled = [f for f in files if f.endswith((".bin", ".pkl", ".pickle", ".pth"))]
        assert pickled == [], folder
    # the one .pt file is optimizer state + RNG: plain tensors that weights_only=True accepts
    assert {f for f in epoch_files if f.endswith(".pt")} == {"training_state.pt"}
    torch.load(epoch / "training_state.pt", weights_only=True)


@pytest.mark.slow  # tiny_member trains
def test_written_models_and_adapters_are_readable_by_the_group(tiny_base, tiny_member):
    """A shared DVC cache or group folder needs what the umask gives an ordinary write, also
    for files that libraries write through private temporaries (safetensors makes them 0600)."""
    import os
    import stat

    mask = os.umask(0o022)
    os.umask(mask)
    epoch = tiny_member / "epoch-1"
    for path in (
        tiny_base / "model.safetensors",
        epoch / "adapter_model.safetensors",
        epoch / "training_state.pt",
        epoch / "adapter_config.json",
    ):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path
    for folder in (tiny_base, epoch):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~mask, folder

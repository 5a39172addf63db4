"""What the README and ``docs/`` name, and whether it exists: the checks behind ``test_docs.py``.

A page that names a ``make`` target, a script and its flags, a ``params.yaml`` key, a
``-S key=value`` override, a module, a DVC stage or a file path makes a promise; when the code
moves on and the page does not, a reader meets an error the page never mentions. These
functions read a Markdown page the way a reader does (fenced blocks, inline code, prose links)
and return one *finding* per name that does not exist, as ``"page:line: what is wrong"``.

What counts as a name, and what is prose, is kept narrow so that a finding is a real drift:

- **Placeholders** stand for any value: ``<anything>``, shell variables (``$m``, ``${X}``,
  ``$(...)``), ``…``, and the capitalised words of :data:`PLACEHOLDER_WORDS` where they stand
  alone between separators (``data/adapters/E/members-S/``, ``method@NAME``).
- **Paths** are checked when their first part is a top-level entry of the repository
  (``docs/``, ``scripts/``, ``data/`` …, or a root file such as ``params.yaml``); the authors'
  own code (``lib/models/…``) or a hub id (``cais/mmlu``) is not ours to check. A path exists
  when the working tree has it, or when it lies under (or above) an output ``dvc.yaml``
  declares; ``test_docs.py``'s slow test then finds each output path in a finished run.
- **Params keys** (``tiny.train.epochs``, or profile-relative ``train.joint``) must exist in
  ``params.yaml`` or in :class:`lorauq.config.Params`; a profile-prefixed ``key: value`` is a
  claim about ``params.yaml`` and must hold there.
- **Names in lorauq** (``lorauq.joint.train_members``, or ``uncertainty.nll`` where the first
  part is a lorauq module) must import.
- **Error excerpts** in the table of ``docs/bad-inputs.md`` quote deliberately wrong inputs
  (``tiny.train.epoch``); ``tests/test_bad_inputs.py`` checks that table against its test.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import importlib
import importlib.util
import re
import shlex
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]

#: Capitalised words that stand for a value where they stand alone (``members-S``, ``--json PATH``).
PLACEHOLDER_WORDS = ("E", "S", "NAME", "PATH", "N", "M", "K")

#: Top-level entries whose paths are not the repository's own content: DVC's internal state.
UNCHECKED_ROOTS = (".dvc", ".git", ".gitignore", ".dvcignore")

#: The marker before a fenced block whose snippet needs a finished ``dvc repro``.
NEEDS_RUN = "needs dvc repro"

#: Programs whose arguments name things of this repository.
_PROGRAMS = (
    *("make", "python", "python3", "bash", "sh", "dvc", "papermill", "pip", "conda"),
    *("jupytext", "sbatch"),
)

#: Shell words that open or close a compound command; the command proper follows them.
_SHELL_KEYWORDS = ("do", "then", "else", "for", "while", "if", "done", "fi", "time", "nice")

_FILE_EXTENSIONS = "json|py|md|csv|parquet|yaml|yml|txt|pt|ipynb|safetensors|pdf|png|lock|log|out|toml|cff|gguf|sbatch"


@dataclass(frozen=True)
class Block:
    """A fenced code block: its page, first line (1-based), language tag, text and marker."""

    page: str
    line: int
    lang: str
    text: str
    marker: str  # the text of an ``<!-- snippet: … -->`` comment just before it, or ""


@dataclass(frozen=True)
class Span:
    """An inline code span, its page and line, and whether it stands in a table row."""

    page: str
    line: int
    text: str
    in_table: bool


def pages() -> list[str]:
    """The pages a reader is sent to: README.md and every ``docs/*.md``."""
    return ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("docs/*.md"))]


# --- reading a page ---------------------------------------------------------------------------

_FENCE = re.compile(r"^(\s*)(`{3,})\s*([\w+-]*)\s*$")
_MARKER = re.compile(r"<!--\s*snippet:\s*(.*?)\s*-->")


def blocks(page: str, text: str) -> list[Block]:
    """The fenced blocks of a page (indented ones in lists included), indentation removed."""
    found: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, lang = opening.groups()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not re.match(rf"^\s*{fence}\s*$", lines[j]):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        before = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        marker = _MARKER.search(before)
        found.append(
            Block(page, i + 1, lang.lower(), "\n".join(body), marker.group(1) if marker else "")
        )
        i = j + 1
    return found


def prose_lines(text: str) -> list[str]:
    """The page with every fenced block blanked out, so line numbers still hold."""
    out = text.splitlines()
    inside: str | None = None
    for n, line in enumerate(out):
        opening = _FENCE.match(line)
        if inside is None and opening:
            inside = opening.group(2)
            out[n] = ""
        elif inside is not None:
            if re.match(rf"^\s*{inside}\s*$", line):
                inside = None
            out[n] = ""
    return out


def spans(page: str, text: str) -> list[Span]:
    """Every inline code span outside the fenced blocks."""
    found = []
    for n, line in enumerate(prose_lines(text), start=1):
        table = line.lstrip().startswith("|")
        for match in re.finditer(r"(`+)(.+?)\1", line):
            found.append(Span(page, n, match.group(2).strip(), table))
    return found


def commands(block: Block) -> list[tuple[int, str]]:
    """The shell lines of a ``bash``/``sh``/``console`` block: continuations joined, with lines."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for n, raw in enumerate(block.text.splitlines(), start=block.line + 1):
        line = raw
        if block.lang == "console":
            if not line.startswith("$ "):
                continue
            line = line[2:]
        if not pending:
            start = n
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    if pending:
        out.append((start, pending))
    return out


def simple_commands(line: str) -> list[list[str]]:
    """A shell line split into simple commands, leading keywords and ``X=y`` assignments gone."""
    # `<name>` is a placeholder, not a redirection: kept whole through the split.
    line = re.sub(r"<([^<>\s]*)>", "\x00\\1\x01", line)
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote: not a command a reader can run either
        return [["<unparsable>", line]]
    result: list[list[str]] = []
    current: list[str] = []
    for token in tokens:
        if token and set(token) <= set("();&|<>"):
            result.append(current)
            current = []
        else:
            current.append(token)
    result.append(current)
    cleaned = []
    for words in ([w.replace("\x00", "<").replace("\x01", ">") for w in c] for c in result):
        while words and (
            words[0] in _SHELL_KEYWORDS or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0])
        ):
            words = words[1:]
        if words:
            cleaned.append(words)
    return cleaned


# --- what the repository has -------------------------------------------------------------------


@functools.cache
def repo_files() -> tuple[str, ...]:
    """Tracked and untracked-but-not-ignored files, and every folder above them."""
    from workspace import source_files

    names = set(source_files())
    folders = {str(Path(name).parent) for name in names}
    while True:
        more = {str(Path(f).parent) for f in folders} - folders
        if not more:
            break
        folders |= more
    return tuple(sorted(names | (folders - {"."})))


@functools.cache
def repo_roots() -> frozenset[str]:
    """The top-level entries a path must start with to be checked."""
    return frozenset(n.split("/")[0] for n in repo_files()) - set(UNCHECKED_ROOTS)


@functools.cache
def dvc_yaml() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))


@functools.cache
def params_yaml() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))


def profiles() -> list[str]:
    return [k for k, v in params_yaml().items() if isinstance(v, dict)]


@functools.cache
def dvc_outputs() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Every stage's outputs (metrics and plots included), templated parts as ``${…}``."""
    result = []
    for name, stage in dvc_yaml()["stages"].items():
        stage = stage.get("do", stage)
        paths = []
        for key in ("outs", "metrics", "plots"):
            for entry in stage.get(key, []):
                paths.append(next(iter(entry)) if isinstance(entry, dict) else entry)
        result.append((name, tuple(paths)))
    return tuple(result)


@functools.cache
def make_targets() -> frozenset[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set()
    for line in text.splitlines():
        rule = re.match(r"^([\w./$()-][\w./$() -]*?)\s*:(?!=)", line)
        if rule and not line.startswith(("\t", "export")):
            targets.update(rule.group(1).split())
        if line.startswith(".PHONY:"):
            targets.update(line.split(":", 1)[1].split())
    return frozenset(targets)


@functools.cache
def ensemble_names() -> frozenset[str]:
    return frozenset(e for p in profiles() for e in params_yaml()[p].get("ensembles", {}))


@functools.cache
def method_names() -> frozenset[str]:
    from lorauq.methods.registry import METHODS

    return frozenset(METHODS)


@functools.cache
def lorauq_modules() -> frozenset[str]:
    """Names of lorauq's modules and subpackages, as a page may name them without ``lorauq.``."""
    names = set()
    for path in (ROOT / "lorauq").rglob("*.py"):
        names.add(path.stem if path.stem != "__init__" else path.parent.name)
    return frozenset(names - {"__main__", "lorauq"})


@functools.cache
def test_functions() -> frozenset[str]:
    """The test functions of ``tests/``, which a page names as evidence for a claim."""
    return frozenset(
        name
        for path in (ROOT / "tests").glob("test_*.py")
        for name in re.findall(r"^def (test_\w+)", path.read_text(encoding="utf-8"), flags=re.M)
    )


@functools.cache
def notebook_parameters(notebook: str) -> frozenset[str]:
    """The names of a notebook's ``parameters`` cell (read from its paired ``.py``)."""
    script = (ROOT / notebook).with_suffix(".py")
    text = script.read_text(encoding="utf-8")
    cell = text.split('tags=["parameters"]', 1)[1].split("# %%", 1)[0]
    return frozenset(re.findall(r"^(\w+)\s*(?::[^=]+)?=", cell, flags=re.M))


# --- placeholders and paths --------------------------------------------------------------------


def has_placeholder(text: str) -> bool:
    return bool(re.search(r"<[^>]*>|\$|…", text))


def to_glob(text: str) -> str:
    """A page's path with its placeholders as ``*``."""
    text = re.sub(r"<[^>]*>|\$\{[^}]*\}|\$\([^)]*\)|\$\w+|…", "*", text)
    words = "|".join(PLACEHOLDER_WORDS)
    return re.sub(rf"(?<![\w])(?:{words})(?![\w])", "*", text)


def expand_braces(text: str) -> list[str]:
    match = re.search(r"\{([^{}]*,[^{}]*)\}", text)
    if not match:
        return [text]
    return [
        expanded
        for choice in match.group(1).split(",")
        for expanded in expand_braces(text[: match.start()] + choice + text[match.end() :])
    ]


def _segment_pattern(segment: str) -> re.Pattern[str]:
    parts = re.split(r"(\$\{[^}]*\}|\*)", segment)
    return re.compile(
        "".join("[^/]+" if p.startswith("${") or p == "*" else re.escape(p) for p in parts)
    )


def _segments_meet(doc: str, declared: str) -> bool:
    """Whether a page's path part (``*`` placeholders) and a declared one (``${…}``) can agree."""
    return bool(
        _segment_pattern(declared).fullmatch(doc.replace("*", "X"))
        or fnmatch.fnmatchcase(re.sub(r"\$\{[^}]*\}", "X", declared), doc)
    )


def _under_or_above(path_glob: str, out: str) -> bool:
    """Whether a path (``*`` for a placeholder) lies under a ``dvc.yaml`` output, or above it.

    A hidden last part beside an output (``data/logits/<e>/.members-<unit>.parts``) is the
    temporary state lorauq keeps next to an output while it writes it, and counts as above it.
    """
    doc = path_glob.strip("/").split("/")
    declared = out.strip("/").split("/")
    if doc[-1].startswith(".") and len(doc) <= len(declared):
        doc = doc[:-1]
    pairs = zip(doc, declared, strict=False)
    return all(_segments_meet(d, s) for d, s in pairs)


def path_exists(path: str) -> bool:
    """Whether the working tree has the path, or a ``dvc.yaml`` output lies at, under or above it."""
    for variant in expand_braces(to_glob(path)):
        pattern = variant.rstrip("/")
        if any(fnmatch.fnmatchcase(name, pattern) for name in repo_files()):
            continue
        if any(_under_or_above(pattern, out) for _, outs in dvc_outputs() for out in outs):
            continue
        return False
    return True


def is_output_path(path: str) -> bool:
    """Whether the path is (under) an output of ``dvc.yaml`` and not in the working tree."""
    pattern = to_glob(path).rstrip("/")
    tracked = any(
        fnmatch.fnmatchcase(name, p) for p in expand_braces(pattern) for name in repo_files()
    )
    return not tracked and pattern.split("/")[0] in ("data", "reports")


#: A path: word characters, dots, globs, ``{a,b}``, and ``<placeholders>`` (spaces allowed).
_PATH = re.compile(
    r"(?<![\w/.<>$*-])((?:<[^<>\n]*>|[\w.{}…*$-]|,(?=\w))+/(?:<[^<>\n]*>|[\w./{}…*$,-])*)"
)


def named_paths(text: str) -> list[str]:
    """The repository paths a piece of text names: ``docs/x.md``, ``data/logits/<e>/…``."""
    found = []
    for match in _PATH.finditer(text):
        path = match.group(1).rstrip(".,;:")
        root = path.split("/")[0]
        if root in repo_roots():
            found.append(path)
    # A bare file name of the kinds that live at the top (requirements-x.txt, compose.yaml):
    # the name of some file of the repository, or it is reported as the missing root file.
    basenames = {name.rsplit("/", 1)[-1] for name in repo_files()}
    for match in re.finditer(r"(?<![\w/.-])([\w-]+\.(?:txt|yaml|yml|toml|lock|cff))\b", text):
        if match.group(1) not in basenames or (ROOT / match.group(1)).exists():
            found.append(match.group(1))
    return found


# --- params keys and lorauq names --------------------------------------------------------------


def _schema(cls: Any) -> dict[str, Any]:
    """The key tree a dataclass accepts: ``{name: subtree}``, ``"*"`` for a mapping's keys."""
    hints = typing.get_type_hints(cls)
    tree: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        tree[f.name] = _type_tree(hints[f.name])
    return tree


def _type_tree(tp: Any) -> Any:
    if dataclasses.is_dataclass(tp):
        return _schema(tp)
    origin = typing.get_origin(tp)
    if origin is dict:
        return {"*": _type_tree(typing.get_args(tp)[1])}
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        trees = [_type_tree(a) for a in typing.get_args(tp) if a is not type(None)]
        return next((t for t in trees if t is not None), None)
    if tp is Any:
        return {"*": None}
    return None  # a leaf


@functools.cache
def profile_schema() -> dict[str, Any]:
    from lorauq.config import Params
    from lorauq.tiny.world import WorldSpec

    tree = _schema(Params)
    tree["data"]["world"] = _schema(WorldSpec)
    tree["ensembles"] = {"*": {"lora": tree["lora"], "train": tree["train"]}}
    for derived in ("profile", "units"):
        tree.pop(derived, None)
    return tree


def _walk(tree: Any, parts: list[str]) -> bool:
    for part in parts:
        if not isinstance(tree, dict):
            return False
        if has_placeholder(part) or part in PLACEHOLDER_WORDS:
            tree = next(iter(tree.values()), None) if tree else None
            continue
        if part in tree:
            tree = tree[part]
        elif "*" in tree:
            tree = tree["*"]
        else:
            return False
    return True


def key_exists(key: str) -> bool:
    """Whether a dotted key exists: ``tiny.train.epochs``, or ``train.joint`` in a profile."""
    parts = key.split(".")
    if parts[0] in profiles():
        node: Any = params_yaml()
        for part in parts:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif has_placeholder(part):
                node = next(iter(node.values()), None) if isinstance(node, dict) else None
            else:
                return _walk(profile_schema(), parts[1:])
        return True
    if parts[0] in ("profile", "ensembles", "members", "methods") and len(parts) == 1:
        return True
    return _walk(profile_schema(), parts)


def lorauq_name_exists(dotted: str) -> bool:
    """Whether ``lorauq.a.b.c`` imports: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            found = importlib.util.find_spec(module_name)
        except (ImportError, ValueError):
            found = None
        if found is None:
            continue
        obj: Any = importlib.import_module(module_name)
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


# --- the checks --------------------------------------------------------------------------------

_DOTTED = re.compile(r"(?<![\w.$/-])([a-z_][\w]*(?:\.(?:[\w]+|<[^>]+>))+)(?![\w/(])")
_CLAIM = re.compile(r"^([a-z_][\w]*(?:\.[\w]+)+):\s+(.+)$")


def check_dotted(where: str, text: str) -> list[str]:
    """Params keys and lorauq names in a span of code (``tiny.train.epochs``, ``lorauq.joint``)."""
    findings = []
    for match in _DOTTED.finditer(text):
        name = match.group(1)
        if re.search(rf"\.(?:{_FILE_EXTENSIONS})$", name):
            continue
        first = name.split(".")[0]
        if first == "lorauq":
            if not lorauq_name_exists(name):
                findings.append(f"{where}: `{name}` does not import")
        elif first in profiles():
            if not key_exists(name):
                findings.append(f"{where}: params key `{name}` is not in params.yaml")
        elif (
            first in set(profile_schema()) | lorauq_modules()
            and not key_exists(name)
            and not lorauq_name_exists(f"lorauq.{name}")
        ):
            findings.append(f"{where}: `{name}` is neither a params key nor a lorauq name")
    claim = _CLAIM.match(text)
    if claim and claim.group(1).split(".")[0] in profiles() and key_exists(claim.group(1)):
        node: Any = params_yaml()
        for part in claim.group(1).split("."):
            node = node[part]
        try:
            stated = yaml.safe_load(claim.group(2))
        except yaml.YAMLError:
            stated = claim.group(2)
        if stated != node:
            findings.append(f"{where}: `{text}` but params.yaml has {claim.group(1)}: {node!r}")
    return findings


def check_paths(where: str, text: str) -> list[str]:
    return [
        f"{where}: path `{path}` is neither in the repository nor a dvc.yaml output"
        for path in named_paths(text)
        if not path_exists(path)
    ]


def check_stage_names(where: str, text: str) -> list[str]:
    """``finetune@lora_l2-0-4``, ``method@laplace``: the stage and its item exist."""
    stages = dvc_yaml()["stages"]
    findings = []
    for match in re.finditer(r"(?<![\w-])([a-z_]+)@([\w<>${}()\-.]+)", text):
        stage, item = match.groups()
        if stage not in stages:
            continue
        definition = stages[stage]
        if has_placeholder(item) or item in PLACEHOLDER_WORDS:
            continue
        if "foreach" in definition:
            if item not in method_names():
                findings.append(f"{where}: `{stage}@{item}`: no method `{item}`")
            continue
        unit = re.fullmatch(r"(\w+?)-(.+)", item)
        if not unit:
            findings.append(f"{where}: `{stage}@{item}` is not `{stage}@<ensemble>-<members>`")
            continue
        ensemble, members = unit.groups()
        if ensemble not in ensemble_names() and not has_placeholder(ensemble):
            findings.append(f"{where}: `{stage}@{item}`: no ensemble `{ensemble}` in any profile")
        if not (has_placeholder(members) or re.fullmatch(r"\d+(-\d+)?|[a-z]|\*", members)):
            findings.append(f"{where}: `{stage}@{item}`: `{members}` is not a member stage")
    return findings


def _script_of(word: str) -> Path | None:
    """The repository file a command runs: a path, or a bare script name under scripts/."""
    if (ROOT / word).is_file():
        return ROOT / word
    if word.endswith(".py") and "/" not in word:
        for folder in ("scripts", "benchmarks"):
            if (ROOT / folder / word).is_file():
                return ROOT / folder / word
    return None


def _module_file(module: str) -> Path | None:
    path = ROOT / Path(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__main__.py"):
        if candidate.is_file():
            return candidate
    return None


def _check_flags(where: str, source: Path, words: list[str]) -> list[str]:
    """Each ``--option`` appears, quoted, in the script; a shell script may pass options on to
    its namesake ``.py`` (``gpu_evidence.sh`` to ``gpu_evidence.py``)."""
    text = source.read_text(encoding="utf-8")
    if source.suffix == ".sh" and source.with_suffix(".py").is_file():
        text += source.with_suffix(".py").read_text(encoding="utf-8")
    return [
        f"{where}: `{source.relative_to(ROOT)}` has no option `{flag}`"
        for flag in (w.split("=")[0] for w in words if w.startswith("--"))
        if f'"{flag}"' not in text and f"'{flag}'" not in text
    ]


def _check_subcommand(where: str, module: str, source: Path, first: list[str]) -> list[str]:
    """``python -m lorauq prepare``: a module with subcommands has the one named."""
    text = source.read_text(encoding="utf-8")
    if "add_subparsers" not in text or not first or first[0].startswith(("-", "<", "$")):
        return []
    if f'add_parser("{first[0]}"' in text:
        return []
    return [f"{where}: `python -m {module} {first[0]}`: no such subcommand"]


def check_command(where: str, words: list[str], overrides: list[list[str]]) -> list[str]:
    """One simple command: what it runs and names exists. ``-S`` sets go to ``overrides``."""
    findings: list[str] = []
    program = words[0].rsplit("/", 1)[-1]
    args = words[1:]
    if words[0] == "<unparsable>":
        return [f"{where}: cannot parse `{words[1]}`"]
    script = _script_of(words[0])
    if script is not None and script.suffix == ".py":
        return _check_flags(where, script, args)
    if program not in _PROGRAMS:
        return findings
    if program == "make":
        findings += [
            f"{where}: `make {t}`: no such target in the Makefile"
            for t in args
            if not t.startswith("-") and "=" not in t and t not in make_targets()
        ]
    elif program in ("bash", "sh") and args and (script := _script_of(args[0])) is not None:
        findings += _check_flags(where, script, args[1:])
    elif program in ("python", "python3"):
        if args[:1] == ["-m"] and len(args) > 1:
            module = args[1]
            if module.split(".")[0] in repo_roots():
                source = _module_file(module)
                if source is None:
                    findings.append(f"{where}: `python -m {module}`: no such module")
                else:
                    findings += _check_flags(where, source, args[2:])
                    findings += _check_subcommand(where, module, source, args[2:3])
            elif importlib.util.find_spec(module.split(".")[0]) is None:
                findings.append(f"{where}: `python -m {module}`: not installed by the set-up")
        elif args and (script := _script_of(args[0])) is not None:
            findings += _check_flags(where, script, args[1:])
        elif args and args[0].endswith(".py"):
            findings.append(f"{where}: `{args[0]}`: no such script")
    elif program == "dvc":
        findings += _check_dvc(where, args, overrides)
    elif program == "papermill":
        findings += _check_papermill(where, args)
    return findings


def _check_dvc(where: str, args: list[str], overrides: list[list[str]]) -> list[str]:
    while args and args[0].startswith("-"):  # global options: dvc --wait-for-lock repro …
        args = args[1:]
    if not args:
        return []
    sub = args[0]
    rest = args[1:]
    if sub == "exp" and rest[:1] == ["run"]:
        sub, rest = "exp run", rest[1:]
    if sub not in ("repro", "commit", "exp run", "status"):
        return []
    takes_value = {"-S", "--set-param", "-n", "--name", "-j", "--jobs", "-m", "--message"}
    targets, sets = [], []
    i = 0
    while i < len(rest):
        word = rest[i]
        if word in takes_value:
            if word in ("-S", "--set-param") and i + 1 < len(rest):
                sets.append(rest[i + 1])
            i += 2
            continue
        if not word.startswith("-"):
            targets.append(word)
        i += 1
    if sets:
        overrides.append(sets)
    findings = []
    stages = dvc_yaml()["stages"]
    for target in targets:
        name = target.split("@")[0]
        if name not in stages:
            findings.append(f"{where}: `dvc {sub} {target}`: no stage `{name}` in dvc.yaml")
        else:
            findings += check_stage_names(where, target)
    return findings


def _check_papermill(where: str, args: list[str]) -> list[str]:
    findings = []
    positional = []
    args = [*args, ""]  # a value-taking option at the end reads ""
    i = 0
    while i < len(args) - 1:
        word = args[i]
        if word == "--help-notebook":
            positional.append(args[i + 1])
            i += 2
        elif word in ("-p", "-r", "--parameters", "--parameters_raw"):
            positional_name = args[i + 1]
            notebook = positional[0] if positional else ""
            if notebook and positional_name not in notebook_parameters(notebook):
                findings.append(f"{where}: {notebook} has no parameter `{positional_name}`")
            i += 3
        elif word in ("-y", "--parameters_yaml"):
            notebook = positional[0] if positional else ""
            for name in yaml.safe_load(args[i + 1]) or {}:
                if notebook and name not in notebook_parameters(notebook):
                    findings.append(f"{where}: {notebook} has no parameter `{name}`")
            for key in re.findall(r"([a-z_]+(?:\.[a-z_]+)+)\s*:", args[i + 1]):
                if not key_exists(key):
                    findings.append(f"{where}: override `{key}` is not a params key")
            i += 2
        elif word in ("-k", "--kernel", "--log-level", "--cwd"):
            i += 2
        elif word.startswith("-"):
            i += 1
        else:
            positional.append(word)
            i += 1
    if positional and positional[0] and not (ROOT / positional[0]).is_file():
        findings.append(f"{where}: papermill input `{positional[0]}` does not exist")
    return findings


def check_shell_line(where: str, line: str, overrides: list[list[str]]) -> list[str]:
    findings = []
    for words in simple_commands(line):
        findings += check_command(where, words, overrides)
    findings += check_paths(where, line)
    findings += check_stage_names(where, line)
    for token in re.findall(r"(?<![\w.])(?:[a-z_]+\.)+[a-z_]+(?==)", line):
        if token.split(".")[0] in profiles() and not key_exists(token):
            findings.append(f"{where}: params key `{token}` is not in params.yaml")
    return findings


def _looks_like_command(text: str) -> bool:
    words = simple_commands(text)
    if not words or not words[0]:
        return False
    first = words[0][0]
    return first.rsplit("/", 1)[-1] in _PROGRAMS or _script_of(first) is not None


def _pipeline_findings(block: Block) -> list[str]:
    """A pipeline diagram names every stage of ``dvc.yaml`` and what each one runs."""
    stages = dvc_yaml()["stages"]
    drawn: dict[str, str] = {}
    for line in block.text.splitlines():
        match = re.search(r"─> (\S+)\s+(.*)$", line)
        if match:
            drawn[match.group(1).split("@")[0]] = match.group(2)
    where = f"{block.page}:{block.line}"
    findings = []
    if set(drawn) != set(stages):
        findings.append(
            f"{where}: the pipeline diagram shows stages {sorted(drawn)}, dvc.yaml has "
            f"{sorted(stages)}"
        )
    for name, rest in drawn.items():
        if name not in stages:
            continue
        cmd = stages[name].get("do", stages[name])["cmd"]
        runs = re.findall(r"notebooks/\S+\.ipynb|python -m [\w.]+(?: prepare)?", rest)
        findings += [
            f"{where}: stage `{name}` is drawn running `{r}`; dvc.yaml runs `{cmd}`"
            for r in runs
            if r not in " ".join(cmd.split())
        ]
    return findings


@functools.cache
def page_findings(page: str, text: str | None = None) -> tuple[list[str], list[list[str]]]:
    """Every name a page gives that does not exist, and the ``-S`` sets it shows."""
    if text is None:
        text = (ROOT / page).read_text(encoding="utf-8")
    findings: list[str] = []
    overrides: list[list[str]] = []
    for block in blocks(page, text):
        if block.lang in ("bash", "sh", "shell", "console"):
            for line_no, line in commands(block):
                findings += check_shell_line(f"{page}:{line_no}", line, overrides)
        elif block.lang == "" and "─>" in block.text and "params.yaml" in block.text:
            findings += _pipeline_findings(block)
    for span in spans(page, text):
        if span.in_table and page == "docs/bad-inputs.md":
            continue
        where = f"{page}:{span.line}"
        if _looks_like_command(span.text) or re.search(r"(?:^|\s)-S\s", span.text):
            findings += check_shell_line(where, span.text, overrides)
            if span.text.startswith("-S"):
                overrides.append(shlex.split(span.text)[1::2])
        else:
            findings += check_paths(where, span.text)
            findings += check_stage_names(where, span.text)
        findings += check_dotted(where, span.text)
        findings += [
            f"{where}: no test function `{name}` in tests/"
            for name in re.findall(r"(?<![\w/.])(test_\w+)(?![\w.])", span.text)
            if name not in test_functions()
        ]
    for n, line in enumerate(prose_lines(text), start=1):
        bare = re.sub(r"(`+).+?\1", "", line)
        where = f"{page}:{n}"
        findings += [
            f"{where}: `{name}` does not import"
            for name in re.findall(r"\blorauq(?:\.\w+)+", bare)
            if not lorauq_name_exists(name.rstrip("."))
        ]
        findings += check_paths(where, re.sub(r"\]\([^)]*\)|https?://\S+", "", bare))
    return list(dict.fromkeys(findings)), overrides


# --- links --------------------------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {
        slug(line.lstrip("#"))
        for line in prose_lines(path.read_text(encoding="utf-8"))
        if line.startswith("#")
    }


def link_findings(page: str) -> list[str]:
    """Every relative link and image of a page reaches a file, and its ``#anchor`` a heading."""
    findings = []
    lines = prose_lines((ROOT / page).read_text(encoding="utf-8"))
    for n, line in enumerate(lines, start=1):
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            if re.match(r"[a-z]+:", target):
                continue
            file_part, _, anchor = target.partition("#")
            path = (ROOT / page).parent / file_part if file_part else ROOT / page
            if not path.exists():
                findings.append(f"{page}:{n}: link `{target}` leads nowhere")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                findings.append(f"{page}:{n}: link `{target}`: no heading `#{anchor}`")
    return findings


def python_blocks() -> Iterator[Block]:
    for page in pages():
        for block in blocks(page, (ROOT / page).read_text(encoding="utf-8")):
            if block.lang == "python":
                yield block


def output_paths() -> list[tuple[str, str]]:
    """``(where, path)`` for every path the pages name under ``data/`` or ``reports/`` outputs."""
    found = []
    for page in pages():
        text = (ROOT / page).read_text(encoding="utf-8")
        for n, line in enumerate(text.splitlines(), start=1):
            for path in named_paths(line):
                if is_output_path(path):
                    found.append((f"{page}:{n}", path))
    return found


def override_error(sets: list[str], folder: Path) -> str | None:
    """What ``dvc exp run -S …`` with these sets would say, composed in a copy; None: it loads.

    A set that changes one profile only is tried with that profile active, so that its keys
    are checked where they apply (``-S paper.base.dtype=bfloat16`` on the paper profile).
    """
    from lorauq.compose import compose_params
    from lorauq.config import load_params
    from lorauq.errors import LorauqError

    sets = [s for s in sets if not has_placeholder(s)]
    if not sets:
        return None
    if not any(s.startswith("profile=") for s in sets):
        touched = {s.lstrip("~+").split(".")[0] for s in sets}
        if len(touched) == 1 and (profile := touched.pop()) in profiles():
            sets = [f"profile={profile}", *sets]
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("params.yaml", "compose.yaml"):
        (folder / name).write_bytes((ROOT / name).read_bytes())
    try:
        compose_params(folder, sets)
        load_params(folder / "params.yaml")
    except LorauqError as exc:
        return str(exc)
    return None

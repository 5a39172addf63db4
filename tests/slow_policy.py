"""The marker policy: a test that trains or runs a stage is marked ``slow``, or the run fails.

``make test-fast`` (``pytest -m "not slow"``) is the edit loop. It stays fast only if nothing
slow slips into it unmarked, so the rule is checked, twice, instead of trusted:

- **At collection** every test not marked ``slow`` is read as code (its AST, so comments and
  strings in prose do not count): its body, the fixtures it uses, the callables among its
  parameters and, transitively, every function of this repository outside ``lorauq/`` that
  they call (test helpers, scripts, benchmarks), every property or method they reach through
  an annotated parameter, every fixture they request by name, and every repository script
  they launch. A call of an entry point that trains or runs a stage (:func:`entry_reason`)
  or a command line that runs the pipeline (:func:`command_reason`) fails the collection
  with the test's id and the chain of calls that reached it.
- **While a test not marked ``slow`` runs** (its set-up and fixtures included), an optimizer
  step anywhere in the process, or a subprocess whose command line runs the pipeline or
  launches a script that trains, fails it. This catches what reading cannot: a callable
  taken from a registry or a table, a command line built at run time.

The one exception is a fixture built once per session for every tier (the tiny base, a
second of pre-training): it says so with :func:`shared_build`.

Loaded by ``tests/conftest.py``; a pytester session loads it with ``-p slow_policy``.
(``PYTEST_DONT_REWRITE``: it holds no assert, and conftest imports it before pytest loads it.)
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib.util
import inspect
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lorauq"
#: The repository's scripts: a test that launches one (named by file, or by a path from the
#: root) is read as if it ran the whole file. A test file launched by a nested pytest is not
#: among them: that pytest applies this policy itself.
SCRIPT_DIRS = (ROOT / "scripts", ROOT / "benchmarks")

#: lorauq functions that train, by name (a name survives a module's move): fine-tuning one
#: member or several together, one optimisation step of either, pre-training the tiny base.
TRAINING = frozenset(
    {"train_member", "train_members", "train_step", "joint_step", "build_tiny_base", "pretrain"}
)
#: lorauq functions that run the whole pipeline in-process.
PIPELINE = frozenset({"run_experiment"})
#: A stage's entry points: ``run``/``main`` of a module in ``lorauq.stages``, and the CLI.
STAGE_ENTRIES = frozenset({"run", "main"})
NOTEBOOK_RUNNERS = frozenset({"papermill.execute_notebook", "papermill.execute.execute_notebook"})


def entry_reason(qualified: str) -> str | None:
    """Why calling ``qualified`` (``module.function``) is slow, or None."""
    parts = qualified.split(".")
    name, owners = parts[-1], parts[1:-1]
    if parts[0] == "lorauq":
        if name in TRAINING:
            return f"trains ({qualified})"
        if name in PIPELINE:
            return f"runs the pipeline ({qualified})"
        if name in STAGE_ENTRIES and ("stages" in owners or owners == ["__main__"]):
            return f"runs a stage ({qualified})"
    if qualified in NOTEBOOK_RUNNERS:
        return f"runs a notebook ({qualified})"
    return None


def command_reason(argv: list[str]) -> str | None:
    """Why a command line (its words, or the string constants of a call) is slow, or None."""
    words = {Path(word).name if "/" in word else word for word in argv}
    if "dvc" in words and words & {"repro", "exp"}:
        return f"runs dvc ({' '.join(argv)})"
    notebook = "-m" in words or any(word.endswith(".ipynb") for word in words)
    if "papermill" in words and notebook and "--help-notebook" not in words:
        return f"runs a notebook ({' '.join(argv)})"
    if "-m" in words and ("lorauq" in words or any(w.startswith("lorauq.stages") for w in words)):
        return f"runs a stage ({' '.join(argv)})"
    return None


@dataclasses.dataclass(frozen=True)
class Finding:
    """Why a test is slow, and the chain of calls (or fixtures) that led there."""

    reason: str
    via: tuple[str, ...] = ()

    def through(self, step: str) -> Finding:
        return Finding(self.reason, (step, *self.via))

    def __str__(self) -> str:
        return self.reason + (f", via {' → '.join(self.via)}" if self.via else "")


# --------------------------------------------------------------------------- reading code


def _first_line(node: ast.AST) -> int:
    """The line a function's code object starts on: its first decorator's, else its own."""
    decorators = getattr(node, "decorator_list", [])
    return min([node.lineno, *(d.lineno for d in decorators)])


@functools.cache
def _parsed(path: Path) -> dict[tuple[int, str], ast.AST]:
    """Every function and lambda of a file, by (first line, code name)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    index: dict[tuple[int, str], ast.AST] = {(0, "<module>"): tree}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            index[(_first_line(node), node.name)] = node
        elif isinstance(node, ast.Lambda):
            index.setdefault((node.lineno, "<lambda>"), node)
    return index


def _imports(node: ast.AST) -> dict[str, str]:
    """Names bound by the import statements anywhere in ``node``: name -> dotted target."""
    bound: dict[str, str] = {}
    for sub in ast.walk(node):
        if isinstance(sub, ast.Import):
            for alias in sub.names:
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    bound[top] = top
        elif isinstance(sub, ast.ImportFrom) and sub.module and not sub.level:
            for alias in sub.names:
                bound[alias.asname or alias.name] = f"{sub.module}.{alias.name}"
    return bound


def _run_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """The nodes that run when the function (or script) does: not its decorators, annotations
    or defaults, which ran when it was defined (``parametrize``'s arguments among them)."""
    if isinstance(node, ast.Lambda):
        yield from ast.walk(node.body)
    elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        for statement in node.body:
            yield from ast.walk(statement)
    else:
        yield from ast.walk(node)


def _dotted(node: ast.AST) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; None for anything not rooted in a plain name."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


def _strings(call: ast.Call) -> list[str]:
    """The string constants in a call's positional arguments, nested ones included (a script's
    name inside ``str(ROOT / "scripts" / "x.py")``), in source order."""
    found = []
    for argument in call.args:
        for node in ast.walk(argument):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.append((node.lineno, node.col_offset, node.value))
    return [value for *_, value in sorted(found)]


def _function(obj: Any) -> Callable | None:
    """The plain function behind ``obj`` (decorated, bound, static or class method)."""
    if isinstance(obj, staticmethod | classmethod):
        obj = obj.__func__
    try:
        obj = inspect.unwrap(obj)
    except ValueError:  # a cycle of __wrapped__
        return None
    if inspect.ismethod(obj):
        obj = obj.__func__
    return obj if inspect.isfunction(obj) else None


class Scanner:
    """Reads tests and what they reach; remembers each function's verdict."""

    def __init__(self, roots: tuple[Path, ...], fixture: Callable[[str], Finding | None]):
        self.roots = tuple(root.resolve() for root in roots)
        self.fixture = fixture  # a fixture requested by name -> its verdict
        self.skip = tuple(
            Path(p).resolve() for p in {sys.prefix, sys.base_prefix, sys.exec_prefix, PACKAGE}
        )
        self.verdicts: dict[Any, Finding | None] = {}

    def local(self, path: Path) -> bool:
        """Code of this repository (or the pytester folder) outside lorauq and the venv."""
        return self._local(str(path))

    @functools.cache  # noqa: B019 (one scanner per session, kept to its end)
    def _local(self, filename: str) -> bool:
        path = Path(filename)
        if not path.is_absolute() or not path.is_file():  # "<frozen …>", "<string>"
            return False
        path = path.resolve()
        return any(path.is_relative_to(r) for r in self.roots) and not any(
            path.is_relative_to(s) for s in self.skip
        )

    def callable(self, obj: Any) -> Finding | None:
        """The verdict on calling ``obj``: an entry point, or local code that reaches one."""
        function = _function(obj)
        if function is None:
            return None
        name = f"{function.__module__}.{function.__qualname__}"
        reason = entry_reason(name)
        if reason:
            return Finding(reason)
        if not self.local(Path(function.__code__.co_filename)):
            return None
        found = self.function(function)
        return found.through(name) if found else None

    def function(self, function: Callable) -> Finding | None:
        code = function.__code__
        if code in self.verdicts:
            return self.verdicts[code]
        self.verdicts[code] = None  # a recursive call is not a finding
        node = _parsed(Path(code.co_filename)).get((code.co_firstlineno, code.co_name))
        found = None if node is None else self.code(node, function.__globals__)
        self.verdicts[code] = found
        return found

    def script(self, name: str) -> Finding | None:
        """The verdict on launching a repository script named ``name`` (``x.py`` or a path)."""
        for folder in (ROOT, *SCRIPT_DIRS):
            path = (folder / name).resolve()
            if path.suffix == ".py" and path.is_file() and path.parent in SCRIPT_DIRS:
                if path not in self.verdicts:
                    self.verdicts[path] = None
                    found = self.code(_parsed(path)[(0, "<module>")], None)
                    self.verdicts[path] = found.through(path.name) if found else None
                return self.verdicts[path]
        return None

    def code(self, node: ast.AST, names: dict | None, file: ast.AST | None = None):
        """Read ``node`` (a function or a whole script): ``names`` are its globals if its module
        is loaded, else the imports of its ``file`` stand in for them."""
        imported = {**_imports(file), **_imports(node)} if file is not None else _imports(node)
        annotated = self._annotated(node, names)
        for sub in _run_nodes(node):
            found = None
            if isinstance(sub, ast.Call):
                found = self._call(sub, imported, names)
            elif (
                isinstance(sub, ast.Attribute)
                and isinstance(sub.value, ast.Name)
                and sub.value.id in annotated
            ):
                found = self._member(annotated[sub.value.id], sub.attr)
            if found:
                return found
        return None

    def _call(self, call: ast.Call, imported: dict[str, str], names: dict | None):
        chain = _dotted(call.func)
        words = _strings(call)
        if chain and chain[-1] == "getfixturevalue" and words:
            found = self.fixture(words[0])
            return found.through(f"fixture {words[0]}") if found else None
        if chain:
            found = self._resolved(chain, imported, names)
            if found:
                return found
        reason = command_reason(words)
        if reason:
            return Finding(reason)
        for word in words:
            if word.endswith(".py"):
                found = self.script(word)
                if found:
                    return found
        return None

    def _resolved(self, chain: list[str], imported: dict[str, str], names: dict | None):
        """The verdict on calling ``a.b.c``: through the imports, else the loaded globals."""
        root, *rest = chain
        if root in imported:
            dotted = ".".join([imported[root], *rest])
            reason = entry_reason(dotted)
            if reason:
                return Finding(reason)
            obj = _loaded(dotted)
            if obj is None:
                return self._unloaded(dotted)
        elif names is not None and root in names:
            obj = names[root]
            for attr in rest:
                obj = _attribute(obj, attr)
        else:
            return None
        return None if obj is None else self.callable(obj)

    def _unloaded(self, dotted: str) -> Finding | None:
        """The verdict on ``helper.function`` of a repository module not imported yet (a test's
        own import inside its body): read from its file, as a script is."""
        module, _, name = dotted.partition(".")
        spec = importlib.util.find_spec(module) if name and "." not in name else None
        path = Path(spec.origin) if spec and spec.origin else None
        if path is None or not self.local(path):
            return None
        tree = _parsed(path)[(0, "<module>")]
        defined = (n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef))
        node = next((n for n in defined if n.name == name), None)
        found = self.code(node, None, tree) if node is not None else None
        return found.through(dotted) if found else None

    def _annotated(self, node: ast.AST, names: dict | None) -> dict[str, type]:
        """A function's parameters annotated with a class of this repository."""
        if names is None or not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return {}
        found = {}
        every = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
        for arg in every:
            chain = _dotted(arg.annotation) if arg.annotation is not None else None
            cls = names.get(chain[0]) if chain and len(chain) == 1 else None
            if inspect.isclass(cls) and self.local(Path(inspect.getsourcefile(cls) or "")):
                found[arg.arg] = cls
        return found

    def _member(self, cls: type, attr: str) -> Finding | None:
        """The verdict on ``param.attr`` for a parameter of class ``cls``: a property or method."""
        member = inspect.getattr_static(cls, attr, None)
        target = member.fget if isinstance(member, property) else member
        return self.callable(target) if target is not None else None


def _attribute(obj: Any, name: str) -> Any:
    """``obj.name`` for a module or a class, without running code: no lazy import of a
    library's submodule, no property; None for anything else."""
    if inspect.ismodule(obj):
        found = obj.__dict__.get(name)
        return sys.modules.get(f"{obj.__name__}.{name}") if found is None else found
    if inspect.isclass(obj):
        return inspect.getattr_static(obj, name, None)
    return None


def _loaded(dotted: str) -> Any:
    """The object named ``pkg.module.attr`` if its module is imported, else None (reading a
    test imports nothing: what a test module imports is loaded by its collection)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        obj = sys.modules.get(".".join(parts[:cut]))
        if obj is not None:
            for attr in parts[cut:]:
                obj = _attribute(obj, attr)
            return obj
    return None


# --------------------------------------------------------------------------- at collection


def _fixture_function(fixturedef: Any) -> Any:
    """The function a fixture runs (unwrapped, should pytest hand over its fixture wrapper)."""
    func = fixturedef.func
    return getattr(func, "_get_wrapped_function", lambda: func)()


class ItemCheck:
    """The collection check of one session: which unmarked test reaches a slow call."""

    def __init__(self, session: pytest.Session):
        self.session = session
        self.item: pytest.Function | None = None
        self.scanner = Scanner((Path(str(session.config.rootpath)), ROOT), self._fixture_by_name)

    def fixture(self, fixturedef: Any) -> Finding | None:
        func = _fixture_function(fixturedef)
        if getattr(func, "shared_build", None):
            return None
        return self.scanner.callable(func)

    def _fixture_by_name(self, name: str) -> Finding | None:
        """A fixture requested at run time, and the fixtures it requests in turn."""
        todo, seen = [name], {name}
        while todo:
            current = todo.pop()
            for fixturedef in self.session._fixturemanager.getfixturedefs(current, self.item) or ():
                found = self.fixture(fixturedef)
                if found:
                    return found if current == name else found.through(f"fixture {current}")
                todo += [arg for arg in fixturedef.argnames if arg not in seen]
                seen.update(fixturedef.argnames)
        return None

    def __call__(self, item: pytest.Function) -> Finding | None:
        self.item = item
        function = _function(item.obj)
        found = self.scanner.function(function) if function else None
        if found:
            return found
        for name, defs in item._fixtureinfo.name2fixturedefs.items():
            for fixturedef in defs:  # an override and the fixture it may request by its name
                found = self.fixture(fixturedef)
                if found:
                    return found.through(f"fixture {name}")
        callspec = getattr(item, "callspec", None)
        for name, value in callspec.params.items() if callspec else ():
            for target in _callables(value):
                found = self.scanner.callable(target)
                if found:
                    return found.through(f"parameter {name}")
        return None


def _callables(value: Any) -> Iterator[Any]:
    """A parameter's callables: itself, or the callable fields of a dataclass instance."""
    if inspect.isfunction(value):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            member = getattr(value, field.name)
            if inspect.isfunction(member):
                yield member


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, items: list[pytest.Item]) -> None:
    """Fail the collection, naming each test, if an unmarked test trains or runs a stage."""
    check = ItemCheck(session)
    problems = []
    for item in items:
        if isinstance(item, pytest.Function) and not item.get_closest_marker("slow"):
            found = check(item)
            if found:
                problems.append(f"{item.nodeid}: {found}")
    if problems:
        raise pytest.UsageError(
            "tests that train or run a stage must be marked @pytest.mark.slow "
            "(tests/slow_policy.py):\n  " + "\n  ".join(problems)
        )


# --------------------------------------------------------------------------- while running

_RUNNING: list[pytest.Item] = []  # the test now running (a stack: pytester nests sessions)
_ALLOWED: list[str] = []  # shared builds under way
_SESSIONS: list[pytest.Config] = []  # the sessions that loaded the policy (pytester nests them)
_HAND_BACK: list[Callable[[], None]] = []  # removes the optimizer hook, restores Popen
_SCRIPTS = Scanner((ROOT,), lambda name: None)  # launched scripts' verdicts, kept


@contextmanager
def allowed(reason: str) -> Iterator[None]:
    """Let the code inside train whatever test is running (a shared, once-per-session build)."""
    _ALLOWED.append(reason)
    try:
        yield
    finally:
        _ALLOWED.pop()


def shared_build(reason: str):
    """Declare a fixture built once per session for every tier: it may train, its users need
    not be ``slow``. ``reason`` says why that is cheap enough."""

    def declare(function):
        @functools.wraps(function)
        def build(*args, **kwargs):
            with allowed(reason):
                return function(*args, **kwargs)

        build.shared_build = reason
        return build

    return declare


def _forbid(what: str) -> None:
    if not _RUNNING or _ALLOWED:
        return
    item = _RUNNING[-1]
    if not item.get_closest_marker("slow"):
        pytest.fail(
            f"{item.nodeid} is not marked slow but {what}: mark it @pytest.mark.slow "
            "(tests/slow_policy.py)",
            pytrace=False,
        )


def _optimizer_step(optimizer: Any, args: Any, kwargs: Any) -> None:
    _forbid(f"trains ({type(optimizer).__name__}.step)")


def _argv(args: Any, shell: bool) -> list[str]:
    if isinstance(args, str | bytes | os.PathLike):
        text = os.fsdecode(args)
        return shlex.split(text) if shell else [text]
    return [os.fsdecode(word) for word in args]


def _launch_reason(argv: list[str]) -> str | None:
    reason = command_reason(argv)
    if reason:
        return reason
    for word in argv:
        found = _SCRIPTS.script(word) if word.endswith(".py") else None
        if found:
            return f"launches {Path(word).name}, which {found}"
    return None


def _guarded_popen(original: Callable) -> Callable:
    @functools.wraps(original)
    def __init__(self, args, *rest, **kwargs):
        if _RUNNING and not _ALLOWED:
            reason = _launch_reason(_argv(args, bool(kwargs.get("shell"))))
            if reason:
                _forbid(reason)
        original(self, args, *rest, **kwargs)

    return __init__


def pytest_configure(config: pytest.Config) -> None:
    """Install the run-time guard once: a hook on every optimizer step, a check on Popen."""
    if not _SESSIONS:
        from torch.optim.optimizer import register_optimizer_step_pre_hook

        handle = register_optimizer_step_pre_hook(_optimizer_step)
        original = subprocess.Popen.__init__
        subprocess.Popen.__init__ = _guarded_popen(original)
        _HAND_BACK.extend([handle.remove, lambda: setattr(subprocess.Popen, "__init__", original)])
    _SESSIONS.append(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    """The last session out removes the guard."""
    _SESSIONS.remove(config)
    while not _SESSIONS and _HAND_BACK:
        _HAND_BACK.pop()()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    _RUNNING.append(item)
    try:
        return (yield)
    finally:
        _RUNNING.pop()

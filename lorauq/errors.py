"""Every failure a user can cause is one of these, so notebooks and scripts can catch
``LorauqError`` and show a message that names the key, row or path at fault instead of a
traceback from deep inside a library."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Iterable

__all__ = [
    "ConfigError",
    "DataError",
    "LorauqError",
    "ModelError",
    "StoreError",
    "did_you_mean",
    "exit_code",
    "missing_hub_revision",
]


class LorauqError(Exception):
    """Base class of every user-facing lorauq failure."""


class ConfigError(LorauqError, ValueError):
    """A parameter is unknown, missing or of the wrong type; the message names its dotted key."""


class DataError(LorauqError, ValueError):
    """An input row or file breaks the Question contract; the message names the file and row."""


class ModelError(LorauqError):
    """A base model, tokenizer or adapter cannot be used as asked; the message names the path."""


class StoreError(LorauqError):
    """A stored artefact (logits table, checkpoint) is missing, incomplete or of the wrong schema."""


def did_you_mean(name: object, valid: Iterable[str], cutoff: float = 0.6) -> str:
    """`` (did you mean 'x'?)`` naming the valid name closest to ``name``, or ``""``.

    Every "unknown key / source / subject" message ends with this, so a typo is fixed in one
    go instead of by reading a list of valid names. ``cutoff=0`` always suggests something
    (for short closed vocabularies such as split names, where any hint beats none).
    """
    matches = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1, cutoff=cutoff)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def missing_hub_revision(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it was raised from, is the hub's "no such revision".

    huggingface_hub raises ``RevisionNotFoundError``; ``datasets`` re-raises it as
    ``DatasetNotFoundError("Revision '…' doesn't exist …")`` and transformers as a bare
    ``OSError("… is not a valid git identifier …")``, both chained to the original, so the
    chain is what tells a wrong pin from an offline hub.
    """
    try:
        from huggingface_hub.errors import RevisionNotFoundError
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return False
    seen: BaseException | None = exc
    for _ in range(16):  # a chain is short; the bound only guards against a cycle
        if seen is None:
            return False
        if isinstance(seen, RevisionNotFoundError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def exit_code(step: Callable[[], object]) -> int:
    """Run a command-line stage: 0, or 2 with the error's message (not a traceback) on stderr
    when it raises a :class:`LorauqError`; whatever ``step`` returns is printed."""
    try:
        print(step())
    except LorauqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0

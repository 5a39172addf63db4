"""Every failure a user can cause is one of these, so notebooks and scripts can catch
``LorauqError`` and show a message that names the key, row or path at fault instead of a
traceback from deep inside a library."""

from __future__ import annotations


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

"""Errors meant for a user, not a developer: printed as one line, exit status 2, no traceback."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """Bad input from the user. The message says what was wrong, where, and what to do."""

    exit_code = 2


def at(path: str | Path, line: int | None = None) -> str:
    """`file:line` prefix for a message, in the form editors and terminals make clickable."""
    return f"{path}:{line}" if line is not None else str(path)

"""Errors meant for a user, not a developer: printed as one line, exit status 2, no traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path


class UserError(Exception):
    """Bad input from the user. The message says what was wrong, where, and what to do."""

    exit_code = 2


def at(path: str | Path, line: int | None = None) -> str:
    """`file:line` prefix for a message, in the form editors and terminals make clickable."""
    return f"{path}:{line}" if line is not None else str(path)


def os_error_line(error: OSError) -> str:
    """A failed read or write as one line: the path, the cause and what to do. Every file pram writes in place is
    written beside and renamed (pram/files.py), so the file that was there is as it was."""
    import errno

    where = error.filename or "a file"
    if error.filename2:
        where = f"{where} -> {error.filename2}"
    advice = {
        errno.ENOSPC: "the disk is full: free some space and run the same command again, with --resume to go "
                      "on from the last checkpoint",
        errno.EDQUOT: "the disk quota is spent: free some space and run the same command again",
        errno.EROFS: "the file system is read-only: write somewhere else (--out)",
        errno.EACCES: "permission denied: write somewhere you may (--out), or fix the folder's permissions",
        errno.EPERM: "not permitted: write somewhere you may (--out)",
        errno.ENOENT: "no such file or folder: create the folder first, or give another path",
        errno.ENOTDIR: "a part of the path is a file, not a folder: give another path",
    }.get(error.errno, "give another path, or fix the cause and run the same command again")
    return f"{where}: {error.strerror or error}; {advice}"


def run_command(prog: str, body: Callable[[], int], interrupted: Callable[[], tuple[str, int]]) -> int:
    """A command line's body, its errors at the edge: a UserError or an OSError (a full or read-only disk, a folder
    that is not there) is one line on stderr and exit status 2, never a traceback; Ctrl+C prints the line and
    returns the status that `interrupted()` gives (what to run to go on)."""
    try:
        return body()
    except UserError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        print(f"{prog}: error: {os_error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        message, status = interrupted()
        print(f"{prog}: {message}", file=sys.stderr)
        return status

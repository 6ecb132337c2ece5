"""Files written in place: a reader (or a crash) sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa


@contextlib.contextmanager
def os_errors_of_safetensors(path: Path):
    """safetensors reports a failed write (a full disk, a read-only folder) as its own SafetensorError, with the
    OS's error number in the text: raised here as the OSError it is, naming `path`."""
    import re

    from safetensors import SafetensorError

    try:
        yield
    except SafetensorError as e:
        found = re.search(r"os error (\d+)", str(e))
        if not found:
            raise
        number = int(found.group(1))
        raise OSError(number, os.strerror(number), str(path)) from None


def umask_mode(bits: int) -> int:
    """`bits` (0o666 for a file, 0o777 for a folder) less the process's umask: the mode a plain open() or mkdir()
    would give. tempfile makes its files 0600 and folders 0700; what is published gets this instead."""
    umask = os.umask(0)
    os.umask(umask)
    return bits & ~umask


@contextlib.contextmanager
def atomic_output(path: Path, mode: str = "wb"):
    """A file to write `path` through, piece by piece: a temporary file beside it, renamed to `path` when the
    block ends, removed if it raises. A reader sees the old file or the whole new one, never half of one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
        os.chmod(tmp, umask_mode(0o666))  # mkstemp makes it private; the file is meant to be read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomically(path: Path, content: str | bytes) -> Path:
    """Write a temporary file beside `path`, then rename it: a reader sees the old file or the new one."""
    with atomic_output(path) as f:
        f.write(content.encode("utf-8") if isinstance(content, str) else content)
    return Path(path)


def write_parquet(path: Path, table: pa.Table) -> Path:
    """A Parquet file written atomically (through a temporary file beside it)."""
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return write_atomically(path, sink.getvalue().to_pybytes())


def write_json(path: Path, value) -> Path:
    """JSON, indented for a reader, written atomically."""
    return write_atomically(path, json.dumps(value, indent=1) + "\n")


def publish_folder(tmp: Path, out_dir: Path, replace: bool) -> None:
    """Move a finished folder (written beside `out_dir`) into place, readable like any other folder; one that
    got there first (a concurrent build) wins unless `replace`."""
    tmp.chmod(umask_mode(0o777))  # mkdtemp made it private; a cache folder is readable like any other
    for file in tmp.iterdir():
        file.chmod(umask_mode(0o666))
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    if out_dir.exists():
        if not replace:
            shutil.rmtree(tmp, ignore_errors=True)
            return
        os.replace(out_dir, old)
    try:
        os.replace(tmp, out_dir)
    except OSError:  # another process published between our check and our rename: keep theirs
        if not out_dir.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)

"""What a search checks before it writes anything or starts a trial: the results folder can be written, the
storage answers, the Ray cluster answers; and no other search is using the same results folder.

Each failed check is one UserError line naming the flag, what failed and how to check it, within a bounded time
(`--connect-timeout`), and leaves no file behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

from pram.errors import UserError, at
from tune.settings import Settings

LOCK = ".search.lock"


def writable_folder(path: Path, flag: str) -> None:
    """path, or the nearest folder above it that exists, can be written (nothing is created to find out)."""
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{flag} {path}: {existing} is a file, not a folder: choose another {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {existing} cannot be written (permission denied): choose another {flag}")


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a Ray address (HOST:PORT or ray://HOST:PORT); None for `auto` and other forms."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    return (parsed.hostname, parsed.port) if parsed.hostname and parsed.port else None


def ray_address(address: str, timeout: float) -> None:
    """The cluster at --address (HOST:PORT or ray://HOST:PORT) answers a TCP connection. `auto` is left to
    ray.init, which finds the cluster through files of its own; if it fails, the search's new folder is removed."""
    if address == "auto":
        return
    found = _host_port(address)
    if found is None:
        raise UserError(f"--address {address}: not HOST:PORT, ray://HOST:PORT or auto")
    try:
        with socket.create_connection(found, timeout=timeout):
            pass
    except OSError as e:
        raise UserError(f"--address {address}: no Ray cluster answers there ({e.strerror or e}, within "
                        f"{timeout:g} s): is it running (`ray status` on its head), is the port open to this "
                        "machine? --connect-timeout raises the wait") from None


def storage(uri: str, timeout: float) -> None:
    """--storage answers: a local folder can be written; a remote URI (s3://, gs://) can be listed."""
    if "://" not in uri or uri.startswith("file://"):
        writable_folder(Path(uri.removeprefix("file://")), "--storage")
        return
    import pyarrow.fs

    failed: list[BaseException] = []

    def probe():
        try:
            filesystem, path = pyarrow.fs.FileSystem.from_uri(uri)
            filesystem.get_file_info(path)
        except Exception as e:  # handed to the caller below
            failed.append(e)

    # A daemon thread: a storage that hangs does not keep the process alive past the limit.
    thread = threading.Thread(target=probe, name="storage-check", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise UserError(f"--storage {uri}: no answer within {timeout:g} s: check the network and the bucket "
                        "name (--connect-timeout raises the wait)")
    if failed:
        reason = str(failed[0]).splitlines()[0][:200] if str(failed[0]) else type(failed[0]).__name__
        raise UserError(f"--storage {uri}: cannot be reached ({reason}): check the bucket name and your "
                        "credentials (for S3: `aws sts get-caller-identity`, AWS_PROFILE or the node's role)")


def check_before_writing(s: Settings) -> None:
    """Every check a search can make before it writes a file or starts Ray."""
    writable_folder(Path(s.out), "--out")
    storage(s.storage, s.connect_timeout)
    if s.address:
        ray_address(s.address, s.connect_timeout)


@contextlib.contextmanager
def only_search(out: Path):
    """Hold the results folder's lock for the length of the search: a second search on the same folder (and
    so the same optuna.db) is refused in one line. The lock goes with the process, even after a SIGKILL."""
    lock = open(out / LOCK, "a+")  # noqa: SIM115 (held open for the length of the block)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise UserError(f"{at(out)}: another search is running on this folder (pid {holder}): wait for it, "
                            "or choose another --out") from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        yield
    finally:
        lock.close()

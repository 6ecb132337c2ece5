"""Starting and stopping Ray so that everything it writes stays in the run's folder, and nothing it started
outlives the search.

A local Ray gets `_temp_dir=<run>/ray/tmp` (sessions, logs, sockets, trial working folders) and an auth token
file there too (Ray 2.60 otherwise writes ~/.ray/auth_token). Unix socket paths may not exceed 107 bytes;
when the run's folder is too deep for that, Ray is pointed at a short symbolic link to it in the system's
temporary folder (the link is removed at the end; the files stay in the run's folder).

Ray's processes are not all the driver's to stop: `ray.shutdown()` leaves its dashboard and runtime-env agents
alive, and a driver killed with SIGKILL leaves them too (with parent 1). So a local search records the pid
and start time of every process it started (its descendants, every few seconds) in `<run>/ray/processes.json`,
stops those still alive when it ends, and a `--resume` stops whatever the killed session left before it starts
a new one: found through that record, never by name, and never on a cluster it did not start (`--address`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import sys
import tempfile
import threading
from pathlib import Path

from pram.errors import UserError
from pram.files import write_json

MAX_SOCKET_PATH = 107
SESSION_SUFFIX = 62  # what Ray appends: /session_<date>_<time>_<us>_<pid>/sockets/plasma_store


def temp_dir_for(folder: Path) -> tuple[Path, Path | None]:
    """(the folder to give Ray, the link made for it or None)."""
    folder.mkdir(parents=True, exist_ok=True)
    if len(str(folder)) + SESSION_SUFFIX <= MAX_SOCKET_PATH:
        return folder, None
    digest = hashlib.sha1(str(folder).encode()).hexdigest()[:10]
    link = Path(tempfile.gettempdir()) / f"pram-ray-{digest}"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(folder, target_is_directory=True)
    return link, link


def local_auth_token(run_dir: Path) -> None:
    """Token authentication stays on, with its token in the run's folder instead of ~/.ray.

    Call it before Ray is imported: Ray reads the mode once, on import.
    """
    if "RAY_AUTH_MODE" in os.environ or "RAY_AUTH_TOKEN" in os.environ or "RAY_AUTH_TOKEN_PATH" in os.environ:
        return  # the user's choice
    if "ray" in sys.modules:
        raise RuntimeError("local_auth_token must run before ray is imported")
    folder = run_dir / "ray"
    folder.mkdir(parents=True, exist_ok=True)
    token = folder / "auth_token"
    if not token.exists():
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(token)


PROCESSES = "processes.json"


def record_processes(ray_dir: Path) -> dict[int, float]:
    """Add every living descendant of this process to ray_dir/processes.json ({pid: start time}); return all."""
    import psutil

    path = ray_dir / PROCESSES
    known = {int(k): v for k, v in json.loads(path.read_text()).items()} if path.is_file() else {}
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            known[child.pid] = child.create_time()
    write_json(path, known)
    return known


def stop_recorded(ray_dir: Path, grace: float = 3.0) -> list[int]:
    """Stop the recorded processes still alive (the same pid and start time: a reused pid is left alone);
    return their pids. The record is removed."""
    import psutil

    path = ray_dir / PROCESSES
    if not path.is_file():
        return []
    alive = []
    for pid, started in json.loads(path.read_text()).items():
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(int(pid))
            if abs(process.create_time() - started) < 1e-3 and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, still = psutil.wait_procs(alive, timeout=grace)
    for process in still:
        with contextlib.suppress(psutil.Error):
            process.kill()
    path.unlink(missing_ok=True)
    return [p.pid for p in alive]


@contextlib.contextmanager
def _recording(ray_dir: Path, every: float = 2.0):
    """Record this process's descendants now and every `every` seconds until the block ends."""
    done = threading.Event()

    def loop():
        while not done.wait(every):
            with contextlib.suppress(OSError, ValueError):
                record_processes(ray_dir)

    record_processes(ray_dir)
    thread = threading.Thread(target=loop, name="record-ray-processes", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        record_processes(ray_dir)


@contextlib.contextmanager
def keep_sigterm():
    """`ray.init` replaces the driver's SIGTERM handler with its own `sys.exit(15)`, which tears Ray down from
    under a running Tune and aborts in its C++ core (exit 134): the search's handler (tune/search.py: SIGTERM
    ends the search as Ctrl+C does) is put back once Ray has started."""
    import signal

    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def ray_running(run_dir: Path, address: str | None, num_cpus: int | None = None):
    """Ray for the length of a search: a new local instance, or the cluster at `address` (auto, ray://...)."""
    import ray

    ray_dir = run_dir / "ray"

    link = None
    quiet = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                 configure_logging=True)
    try:
        if address:
            # Workers elsewhere need the code: ship pram/ and tune/ with the job.
            root = Path(__file__).resolve().parents[1]
            runtime_env = {"py_modules": [str(root / "pram"), str(root / "tune")]} if \
                address.startswith("ray://") else None
            try:
                with keep_sigterm():
                    ray.init(address=address, runtime_env=runtime_env, log_to_driver=False,
                             logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError) as e:
                # A missing token looks the same as no cluster from here (Ray retries, then "failed").
                raise UserError(f"--address {address}: cannot connect to Ray ({e}); is it running "
                                "(`ray start --head`), and does this machine have its token "
                                "(~/.ray/auth_token or $RAY_AUTH_TOKEN_PATH)? Or leave --address out for a "
                                "local Ray") from None
            yield ray
        else:
            left = stop_recorded(ray_dir)  # what a killed session of this search left running
            if left:
                print(f"search: stopped {len(left)} process(es) the interrupted session left running "
                      f"(pids {', '.join(map(str, left))}, recorded in {ray_dir / PROCESSES})", file=sys.stderr)
            temp, link = temp_dir_for(ray_dir / "tmp")
            # "local": a new Ray of our own even if `ray start` or RAY_ADDRESS points elsewhere
            with keep_sigterm():
                ray.init(address="local", num_cpus=num_cpus, _temp_dir=str(temp), **quiet)
            with _recording(ray_dir):
                yield ray
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if not address:
            stop_recorded(ray_dir)
        if link is not None:
            link.unlink(missing_ok=True)
        sys.stdout.flush()

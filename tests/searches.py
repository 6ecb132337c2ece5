"""Running `tune/search.py` as a user does, for the tests: smoke-preset searches on real sentences with a tiny
random model, each with its own Ray (a few seconds to start) and everything under the test's folder."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def search_command(out: Path, data_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "tune/search.py", "--dataset", "conll", "--mode", "multi", "--smoke-test",
            "--targets", "de", "--data-dir", str(data_dir), "--out", str(out), *extra]


def search_env(cache: Path, **extra: str) -> dict:
    return {**os.environ, "PRAM_CACHE_DIR": str(cache), "COLUMNS": "120", **extra}


def run_search(out: Path, data_dir: Path, cache: Path, *extra: str, env: dict | None = None,
               timeout: int = 400) -> subprocess.CompletedProcess:
    return subprocess.run(search_command(out, data_dir, *extra), cwd=ROOT,
                          env=search_env(cache, **(env or {})), capture_output=True, text=True,
                          timeout=timeout, check=False)


def tune_results(storage: Path, stage: str) -> dict[str, list[dict]]:
    """Every result Tune recorded per trial of one stage (search-de, final-de) under a storage folder, from its
    result.json; complete lines only, so that it can be read while Tune writes it."""
    return {trial.parent.name: [json.loads(line) for line in trial.read_text().splitlines(keepends=True)
                                if line.endswith("\n")]
            for trial in sorted((storage / stage).glob("*/result.json"))}


def draws(ranges, n: int, seed: int = 0, sampler: str = "tpe") -> list[dict]:
    """The first n settings a seeded study suggests from the define-by-run space (no Ray, no training); each
    trial is told a made-up value, so that TPE then proposes from what it has seen."""
    import optuna

    from tune.space import make_sampler, space_function

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=make_sampler(seed, n, sampler))
    space = space_function(ranges)
    found = []
    for i in range(n):
        trial = study.ask()
        space(trial)
        found.append(trial.params)
        study.tell(trial, float(i % 7))
    return found


def session_processes(session: int) -> list[int]:
    """Live processes of the session a test started (a search and the Ray it started, or the cluster helper,
    its nodes and their workers), zombies left out."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.getsid(int(entry.name)) == session and \
                    " Z " not in (entry / "stat").read_text():
                found.append(int(entry.name))
        except (ProcessLookupError, PermissionError, FileNotFoundError):
            pass
    return found


@contextlib.contextmanager
def killed_search(command: list[str], env: dict, ready: Callable[[], bool], timeout: float = 300,
                  settle: float = 0.0, sig: int = signal.SIGKILL) -> Iterator[subprocess.Popen]:
    """A search driver started in its own session and sent `sig` once `ready()` holds (polled every 0.1 s for at
    most `timeout` s) and `settle` s more have passed; yields it ended, its stderr in `.stderr_text`. Whatever of
    its session is still alive when the block ends (Ray's processes outlive a killed driver; the block's own
    --resume may leave some too) is killed then."""
    # stderr to a file, not a pipe: Ray's processes inherit it and outlive a killed driver, so a pipe would not
    # reach its end when the driver does
    with tempfile.TemporaryFile("w+") as stderr:
        driver = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
                                  start_new_session=True)
        try:
            deadline = time.time() + timeout
            while time.time() < deadline and driver.poll() is None and not ready():
                time.sleep(0.1)
            time.sleep(settle)
            assert driver.poll() is None, "the search ended before it could be stopped"
            driver.send_signal(sig)
            driver.wait(timeout=120)
            stderr.seek(0)
            driver.stderr_text = stderr.read()
            yield driver
        finally:
            for pid in session_processes(driver.pid):
                os.kill(pid, signal.SIGKILL)


def reported(progress: str | Path, rounds: int = 1) -> Callable[[], bool]:
    """killed_search's `ready`: a trial whose progress.csv (a glob) holds at least `rounds` reports."""
    return lambda: any(len(Path(p).read_text().splitlines()) > rounds for p in glob.glob(str(progress)))


def file_hashes(folder: Path, links: bool = False) -> dict[str, str]:
    """Every file under a folder -> its SHA-256: what "left unchanged" is checked against. Links to files are
    followed with `links`, else left out (a Ray session's folder links to its files)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and (links or not p.is_symlink())}

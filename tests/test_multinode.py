"""A rehearsal of the cluster path, in CI: the search's smoke test run with --address against a Ray cluster of
three nodes on this machine, shaped like clusters/aws.yaml (tests/local_cluster.py: a head that takes no
trial, a CPU worker, and a worker with one GPU of model A10G), as a user runs it on a real cluster.

What it proves: trials that ask for half a GPU of that model run on the GPU worker only, two at once on its
one GPU; the results come back to the driver's folder and Tune's files go to the shared storage; Ray writes
nothing outside the test's folders; a driver without the cluster's token is refused in one line; the cluster
goes away. What it cannot: CUDA (the GPU is declared, torch sees none and trains on the CPU), S3, SSH, the
autoscaler.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pyarrow.parquet as pq
import pytest
from searches import session_processes, tune_results

pytestmark = pytest.mark.slow  # a three-node Ray cluster and a smoke search on it

ROOT = Path(__file__).resolve().parents[1]
RESULT_FILES = ("trials.parquet", "history.parquet", "best.json", "final.parquet", "summary.md", "optuna.db")
# Where Ray writes when nobody says otherwise: the driver's results, its auth token, its temp dir.
RAY_DEFAULTS = (Path.home() / "ray_results", Path.home() / ".ray", Path(tempfile.gettempdir()) / "ray")


def stop(helper: subprocess.Popen) -> list[int]:
    """Ends the cluster the way a person does (Ctrl+D); returns what was still running 15 s later, killed."""
    helper.stdin.close()
    deadline = time.time() + 15
    while time.time() < deadline and session_processes(helper.pid):
        time.sleep(0.2)
    leftovers = session_processes(helper.pid)
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    helper.wait()
    return leftovers


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cluster")
    with open(folder / "cluster.err", "w") as err:
        helper = subprocess.Popen([sys.executable, "tests/local_cluster.py", str(folder)], cwd=ROOT,
                                  text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                  start_new_session=True)
    try:
        ready, _, _ = select.select([helper.stdout], [], [], 120)
        line = helper.stdout.readline() if ready else ""
        assert line, f"the cluster did not start: {(folder / 'cluster.err').read_text()[-2000:]}"
        yield {**json.loads(line), "folder": folder, "helper": helper}
    finally:
        leftovers = stop(helper)
    assert not leftovers, f"processes of the cluster outlived its shutdown: {leftovers}"


def snapshot(paths) -> dict:
    """Each folder's entries and modification time (None if absent): what a new Ray session would change."""
    return {str(p): (sorted(e.name for e in p.iterdir()), p.stat().st_mtime_ns) if p.is_dir() else None
            for p in paths}


def search_command(address: str, out: Path, storage: Path, data_dir: Path) -> list[str]:
    """The smoke search as a user starts it on a cluster: --address, half a GPU of a named model per trial,
    storage every node reaches (a file:// URI here, s3:// there). 2 trials, the fewest that can share a GPU,
    and 1 final seed. 240 steps, not the smoke preset's 60: a trial of 2 seconds is too short to see, with
    Tune's whole-second timestamps, that two ran at once. A checkpoint at every evaluation (--checkpoint-every
    0): these trials end long before the default's 300 s, and the reclaimed worker's trial is to go on from
    one."""
    return [sys.executable, "tune/search.py", "--dataset", "conll", "--mode", "multi", "--smoke-test",
            "--targets", "de", "--num-samples", "2", "--final-seeds", "1", "--max-steps", "240",
            "--eval-every", "80", "--checkpoint-every", "0", "--address", address,
            "--gpus-per-trial", "0.5", "--accelerator-type", "A10G", "--storage", storage.as_uri(),
            "--data-dir", str(data_dir), "--out", str(out)]


@pytest.fixture(scope="module")
def search(cluster, tmp_path_factory, data_dir):
    driver = tmp_path_factory.mktemp("driver")
    out, storage = driver / "results" / "conll-multi-smoke", driver / "bucket"
    env = {**os.environ, "PRAM_CACHE_DIR": str(driver / "cache"), "COLUMNS": "120", **cluster["env"]}
    before = snapshot(RAY_DEFAULTS)
    started = time.time()
    run = subprocess.run(search_command(cluster["address"], out, storage, data_dir), cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    return SimpleNamespace(out=out, storage=storage, seconds=time.time() - started, before=before,
                           after=snapshot(RAY_DEFAULTS))


def span(results: list[dict]) -> tuple[float, float]:
    """When a trial ran, from Tune's whole-second timestamps: (start, end) to within a second."""
    return results[0]["timestamp"] - results[0]["time_total_s"], results[-1]["timestamp"]


def test_trials_asked_for_half_an_a10g_and_ran_on_the_gpu_worker_only(search, cluster):
    trials = pq.read_table(search.out / "trials.parquet").to_pylist()
    assert len(trials) == 2
    for t in trials:
        assert t["node_id"] == cluster["nodes"]["gpu_worker"], "a trial ran off the GPU worker"
        assert t["gpu_ids"] == "0"  # Ray gave it the worker's one GPU (a share of it)
        assert t["gpu_s"] == pytest.approx(0.5 * t["wall_s"]) and t["wall_s"] > 0
        assert t["node_ip"]
    finals = tune_results(search.storage, "final-de")
    assert finals and {r["node_id"] for results in finals.values() for r in results} == {
        cluster["nodes"]["gpu_worker"]}


def test_two_trials_shared_the_one_gpu(search):
    trials = tune_results(search.storage, "search-de")
    assert len(trials) == 2
    (start_a, end_a), (start_b, end_b) = (span(results) for results in trials.values())
    # A second of margin for the whole-second timestamps: the two ran at once, each holding 0.5 of one GPU.
    assert min(end_a, end_b) - max(start_a, start_b) >= 1, "the trials ran one after the other"
    assert {r["gpu_ids"] for results in trials.values() for r in results} == {"0"}


def test_results_came_back_to_the_drivers_folder(search):
    for name in RESULT_FILES:
        assert (search.out / name).is_file(), f"{name} is missing from the driver's results folder"
    trials = pq.read_table(search.out / "trials.parquet").to_pylist()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="conll-multi-de", storage=f"sqlite:///{search.out / 'optuna.db'}")
    assert {t.number: t.value for t in study.trials} == {t["optuna_trial"]: pytest.approx(t["objective"])
                                                         for t in trials}
    best = json.loads((search.out / "best.json").read_text())
    assert best["de"]["value"] == max(t["objective"] for t in trials if t["status"] == "TERMINATED")
    final = pq.read_table(search.out / "final.parquet").to_pylist()
    assert "de" in {r["lang"] for r in final} and {(r["target"], r["seeds"]) for r in final} == {("de", 1)}
    assert "| de | en,es,nl |" in (search.out / "summary.md").read_text()
    # Tune's own files went to the shared storage: TensorBoard files of every trial, and the final runs'
    # checkpoints (the search trials' are deleted there once the final stage has retrained the best settings).
    assert not (search.out / "ray" / "experiments").exists()
    for stage in ("search-de", "final-de"):
        trial_dirs = [p for p in (search.storage / stage).iterdir() if p.is_dir()]
        assert trial_dirs
        for trial_dir in trial_dirs:
            assert list(trial_dir.glob("events.out.tfevents.*"))
            assert bool(list(trial_dir.glob("checkpoint_*/best-target-dev"))) == (stage == "final-de")


def test_ray_wrote_nothing_outside_the_test_folders(search, cluster):
    assert search.after == search.before, f"Ray wrote to one of {[str(p) for p in RAY_DEFAULTS]}"
    assert not (search.out / "ray" / "tmp").exists()  # the driver joined the cluster's session instead
    (session,) = (cluster["folder"] / "ray").glob("session_2*")
    assert list((session / "logs").glob("python-core-driver-*.log")), "the driver's Ray logs are elsewhere"


def test_a_driver_without_the_clusters_token_is_refused_in_one_line(cluster, tmp_path, data_dir):
    wrong = tmp_path / "auth_token"
    wrong.write_text("0" * 64)
    env = {**os.environ, "PRAM_CACHE_DIR": str(tmp_path / "cache"), "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN_PATH": str(wrong)}
    run = subprocess.run(search_command(cluster["address"], tmp_path / "out", tmp_path / "bucket", data_dir),
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]  # after Ray's own retry warnings
    assert last.startswith(f"search: error: --address {cluster['address']}: cannot connect")
    assert "token" in last


def test_a_spot_worker_reclaimed_under_a_trial_costs_nothing_but_time(cluster, search, tmp_path, data_dir):
    """The same search again; once a trial has reported (and checkpointed) on the GPU worker, that worker is
    killed and a new one joins, as when AWS reclaims a spot instance and the autoscaler replaces it. The trial
    goes on from its checkpoint on the new node, the search finishes, Optuna and Tune agree, and the continued
    trial reports the very dev F1 the uninterrupted search's same trial did at every step. (Runs last: the
    cluster's GPU worker is another node afterwards.)"""
    out, storage = tmp_path / "results" / "conll-multi-smoke", tmp_path / "bucket"
    # The driver's copy of a trial's progress.csv goes up to the storage with Tune's snapshot of the experiment,
    # on its own clock (10 s or more by default, longer than these trials): every second here, so that the first
    # report is seen while the trial still runs (tests/test_search.py's killed search does the same).
    env = {**os.environ, "PRAM_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "120", **cluster["env"],
           "TUNE_GLOBAL_CHECKPOINT_S": "1"}
    driver = subprocess.Popen(search_command(cluster["address"], out, storage, data_dir), cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    helper = cluster["helper"]
    try:
        deadline = time.time() + 240
        while time.time() < deadline and driver.poll() is None:
            if any(len(p.read_text().splitlines()) >= 2 for p in storage.glob("search-de/*/progress.csv")):
                break  # a trial has reported its first evaluation, with a checkpoint
            time.sleep(0.2)
        assert driver.poll() is None, "the search ended before its worker could be reclaimed"
        reported = {int(p.parent.name.split("-")[1]): len(p.read_text().splitlines()) - 1  # rounds reported
                    for p in storage.glob("search-de/trial-*/progress.csv")}
        helper.stdin.write("reclaim gpu_worker\n")
        helper.stdin.flush()
        ready, _, _ = select.select([helper.stdout], [], [], 120)
        replaced = json.loads(helper.stdout.readline()) if ready else {}
        _, err = driver.communicate(timeout=400)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, err[-3000:]
    assert replaced["gpu_worker"] != cluster["nodes"]["gpu_worker"]
    trials = {t["optuna_trial"]: t for t in pq.read_table(out / "trials.parquet").to_pylist()}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="conll-multi-de", storage=f"sqlite:///{out / 'optuna.db'}")
    assert {t.number: t.value for t in study.trials} == {n: pytest.approx(t["objective"]) for n, t in trials.items()}
    assert {t.state.name for t in study.trials} <= {"COMPLETE", "PRUNED"}
    continued = [n for n, t in trials.items() if t["restarts"] >= 1]
    assert continued, "no trial was running on the reclaimed worker"
    assert all(trials[n]["node_id"] == replaced["gpu_worker"] for n in continued)

    def f1_by_step(folder: Path, number: int) -> dict[int, float]:
        return {h["step"]: h["target_dev_f1"] for h in pq.read_table(folder / "history.parquet").to_pylist()
                if h["optuna_trial"] == number}

    for n in continued:
        ours, uninterrupted = f1_by_step(out, n), f1_by_step(search.out, n)
        common = sorted(set(ours) & set(uninterrupted))
        assert max(ours) > 80 * reported.get(n, 0)  # it went on past where it was when its node went (--eval-every 80)
        assert [ours[s] for s in common] == [pytest.approx(uninterrupted[s]) for s in common]

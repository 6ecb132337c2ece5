"""The scale benchmark's smallest configuration, in CI: the real search driver (Optuna TPE on its journal file,
`--optuna-storage journal`, ASHA, the live view, the Parquet tables) runs 100 sleeping trials, 8 at a time, on a
local Ray cluster of a head and one worker node (benchmarks/search_scale.py). Every Tune trial has its Optuna
trial, none is left RUNNING, the Parquet table holds every trial, and ASHA stopped some of them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # a Ray cluster and 100 trials (about a minute)

ROOT = Path(__file__).resolve().parents[1]


def test_smallest_scale_row_runs_every_trial_through_the_driver(tmp_path):
    out = tmp_path / "search"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "search_scale.py"), "--one",
                           f"100:8:journal:tpe:{out}", "--sleep", "0.2"],
                          check=False, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    row = json.loads(done.stdout.strip().splitlines()[-1])
    assert (row["trials"], row["concurrent"], row["nodes"]) == (100, 8, 1)
    assert row["tune_trials"] == row["optuna_trials"] == 100
    assert row["running_left"] == 0
    assert (out / "optuna.journal").is_file() and not (out / "optuna.db").exists()
    trials = pq.read_table(out / "trials.parquet").to_pylist()
    assert len(trials) == 100
    assert {t["optuna_trial"] for t in trials} == set(range(100))
    # ASHA stopped some trials early (each reports 3 evaluations; the grace period is 1 of them)
    assert any(t["status"] == "PRUNED" for t in trials) and any(t["status"] == "TERMINATED" for t in trials)
    assert row["driver_cpu_s"] > 0 and row["suggest_first_ms"] > 0
    print(f"100 trials, 8 at a time: {row['wall_s']:.0f} s of search, driver {row['driver_cpu_s'] / 100:.3f} "
          f"CPU s/trial")

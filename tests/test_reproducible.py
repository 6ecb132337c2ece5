"""The reproducible mode (--deterministic): a seeded smoke search, and a second one with the same seed killed
mid-search (its Tune snapshot cut short, as a kill inside Tune's copy of it leaves it) and resumed, give the same
trials, settings, early stops and final table; only when and where trials ran differ. (A third search, uninterrupted,
was dropped to keep CI under 20 minutes: the resumed search is already a second search with the same seed, so a
mode that stopped being reproducible fails this test too.)"""

from __future__ import annotations

import subprocess

import pyarrow.parquet as pq
import pytest
from searches import ROOT, killed_search, reported, run_search, search_command, search_env

from pram.results import RUN_COLUMNS

pytestmark = pytest.mark.slow  # two smoke searches, one trial at a time
EXTRA = ("--deterministic", "--num-samples", "4", "--final-seeds", "1", "--no-baseline")


def what_it_did(out) -> tuple[list[dict], list[dict], list[dict]]:
    """trials.parquet and history.parquet without RUN_COLUMNS, and final.parquet without its checkpoint folders
    (named after Tune's trial ids)."""
    def rows(name: str, drop: set[str]) -> list[dict]:
        found = [{k: v for k, v in r.items() if k not in drop} for r in pq.read_table(out / name).to_pylist()]
        return sorted(found, key=lambda r: (r.get("optuna_trial"), r.get("round"), r.get("variant"), r.get("lang"),
                                            r.get("selection")))
    return (rows("trials.parquet", set(RUN_COLUMNS)), rows("history.parquet", set(RUN_COLUMNS)),
            rows("final.parquet", {"checkpoints"}))


@pytest.fixture(scope="module")
def first(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("first")
    run = run_search(root / "out", data_dir, root / "cache", *EXTRA)
    assert run.returncode == 0, run.stderr[-3000:]
    return root / "out"


def test_a_search_killed_and_resumed_in_the_reproducible_mode_matches_one_never_killed(first, tmp_path, data_dir):
    out, cache = tmp_path / "out", tmp_path / "cache"
    # mid-search: trial 1 has reported once, and still has several seconds to go
    with killed_search(search_command(out, data_dir, *EXTRA), search_env(cache), settle=1.0,
                       ready=reported(out / "ray/experiments/search-de/trial-001-*/progress.csv")):
        # What a kill inside Tune's in-place copy of its snapshot to the storage leaves: an empty file. The
        # resume puts it back from the driver's staging copy.
        [snapshot] = (out / "ray" / "experiments" / "search-de").glob("experiment_state-*.json")
        snapshot.write_bytes(b"")
        resumed = subprocess.run(search_command(out, data_dir, "--resume"), cwd=ROOT, env=search_env(cache),
                                 capture_output=True, text=True, check=False, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"search-de: Tune's snapshot ({snapshot.name}) was cut short by the kill" in resumed.stderr
    trials, history, final = what_it_did(first)
    assert len(trials) == 4 and history and final
    assert {t["status"] for t in trials} <= {"TERMINATED", "PRUNED"}
    assert what_it_did(out) == (trials, history, final)

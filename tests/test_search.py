"""The search front door (`tune/search.py`): its space, its command line, and real smoke-preset searches.

The searches run `python tune/search.py` as a user does, on real sentences with a tiny random model; each
starts its own Ray (a few seconds) with everything under the test's folder. The plain smoke search is run once
for the whole session (the `smoke_search` fixture of conftest.py; tests/test_report.py reads it too).
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, fields, replace
from pathlib import Path
from types import SimpleNamespace

import optuna
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from searches import (
    draws,
    file_hashes,
    killed_search,
    reported,
    search_command,
    search_env,
    session_processes,
    tune_results,
)

from pram.config import PRESETS
from tune.space import PAPER_RANGES, Choice, Interval, parse_range, search_ranges, space_function

ROOT = Path(__file__).resolve().parents[1]

SMOKE_ROUNDS = PRESETS["smoke"]["max_steps"] // PRESETS["smoke"]["eval_every"]
FIRST_EVAL = PRESETS["smoke"]["eval_every"]


@pytest.mark.parametrize("dataset", ["conll", "wikiann"])
def test_sampled_values_stay_within_the_papers_ranges(dataset):
    low = {"conll": 0.5, "wikiann": 1.0}[dataset]
    high = {"conll": 1.5, "wikiann": 3.0}[dataset]
    configs = draws(search_ranges(dataset), seed=3, n=30)
    for c in configs:
        assert set(c) == {"tau", "lam", "alpha", "beta", "gamma"}
        assert 0.15 <= c["tau"] <= 0.25 and 0.8 <= c["lam"] <= 0.99
        assert low <= c["alpha"] <= high and low <= c["beta"] <= high
        assert c["gamma"] in (1.0, 1.5, 2.0)
    assert len({c["gamma"] for c in configs}) == 3  # every choice is tried in 30 draws
    assert max(c["alpha"] for c in configs) > (low + high) / 2 > min(c["alpha"] for c in configs)


def test_a_seed_gives_the_same_first_configurations():
    ranges = search_ranges("conll")
    first = draws(ranges, seed=7, n=8)  # past TPE's random start (2 of 8), so TPE's own proposals too
    assert draws(ranges, seed=7, n=8) == first
    assert draws(ranges, seed=8, n=8) != first


def test_ranges_from_the_command_line_replace_or_add_one_setting():
    ranges = search_ranges("conll", ["tau=0.1:0.3", "gamma=1.0,none", "beta_start=0.5", "beta-ramp=0.1:0.2"])
    assert ranges["tau"] == Interval(0.1, 0.3)
    assert ranges["gamma"] == Choice((1.0, None))
    assert ranges["beta_start"] == Choice((0.5,))
    assert ranges["beta_ramp"] == Interval(0.1, 0.2)
    assert ranges["lam"] == PAPER_RANGES["conll"]["lam"]
    configs = draws(ranges, seed=0, n=10)
    for c in configs:
        assert 0.1 <= c["tau"] <= 0.3 and c["gamma"] in (1.0, None) and c["beta_start"] == 0.5


def test_the_representation_settings_are_searched_as_choices_of_names():
    ranges = search_ranges("conll", ["proto_space=hidden,centered,projection", "proto-layers=last,mean4",
                                     "tau=0.02:0.3"])
    assert ranges["proto_space"] == Choice(("hidden", "centered", "projection"))
    configs = draws(ranges, seed=0, n=30)
    assert {c["proto_space"] for c in configs} == {"hidden", "centered", "projection"}
    assert {c["proto_layers"] for c in configs} == {"last", "mean4"}
    assert min(c["tau"] for c in configs) < 0.1  # the wider temperature range is reachable


@pytest.mark.parametrize("text, message", [
    ("tau", "NAME=LOW:HIGH"),
    ("proto_space=hidden,flat", "proto_space must be one of"),
    ("max_steps=100:200", "a setting the search does not vary"),
    ("tau=0.3:0.1", "low 0.3 is not below high 0.1"),
    ("lam=0.5:1.2", "lam must be in [0, 1)"),
    ("gamma=1.0,x", "'x' is not a number"),
    ("tau=nan:1", "is not a finite number"),
    ("tau=0.1:0.2:0.3:4", "is not LOW:HIGH, LOW:HIGH:log"),
])
def test_a_bad_range_is_refused_with_one_line(text, message):
    from pram.errors import UserError

    with pytest.raises(UserError, match=re.escape(message)):
        parse_range(text)


def test_asha_counts_evaluations_and_waits_for_the_target_term():
    from pram.config import preset
    from tune.run import schedule

    laptop = preset("laptop", max_steps=150, eval_every=50, beta_start=0.3)
    assert schedule(laptop, search_ranges("conll")) == (3, 1)  # step 50 already trains with the target term
    late = preset("laptop", max_steps=400, eval_every=100, beta_start=0.5)
    assert schedule(late, search_ranges("conll")) == (4, 3)  # on from step 200: first seen at step 300
    searched = search_ranges("conll", ["beta_start=0.1:0.8"])
    assert schedule(late, searched) == (4, 4)  # the latest start (step 320) counts


@pytest.mark.parametrize("statuses", [
    "TTTRP", "TTTRR", "PTTRP", "TTRRA", "TATRA", "TATRP", "TTTTT", "RRPAP", "TPTPR", ""])
def test_the_schedulers_choose_the_trial_to_start_as_tunes_fifo_does(statuses):
    """Our FIFO and ASHA choose from Tune's live trials, not from every trial; the choice is Tune's FIFO's."""
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import FIFOScheduler

    from tune.study import Fifo, RoundsASHA

    names = {"T": Trial.TERMINATED, "R": Trial.RUNNING, "P": Trial.PENDING, "A": Trial.PAUSED}
    trials = [Trial("__fake", stub=True, trial_id=f"t{i}") for i in range(len(statuses))]
    for trial, status in zip(trials, statuses):
        trial.status = names[status]
    # Tune's controller as a scheduler sees it: every trial in order, and the set of those not TERMINATED
    controller = SimpleNamespace(get_trials=lambda: trials,
                                 get_live_trials=lambda: {t for t in trials if t.status != Trial.TERMINATED})
    expected = FIFOScheduler().choose_trial_to_run(controller)
    if "P" in statuses:
        assert expected is trials[statuses.index("P")]
    for ours in (Fifo(), RoundsASHA(max_rounds=3, grace_period=1, prune_collapsed=False)):
        assert ours.choose_trial_to_run(controller) is expected


def test_spent_checkpoints_are_emptied_but_not_while_a_snapshot_names_them(tmp_path):
    """A search empties a trial's checkpoint once it is neither the trial's latest nor named by one of Tune's last
    two snapshots (a resumed search restores each trial from what its snapshot names, with that round count).
    Tune can still be told to restore from an emptied one: then the trial starts again from step 0."""
    from ray import tune

    from tune.stages import KeepLatestCheckpoints
    from tune.trainable import _restore

    keep = KeepLatestCheckpoints()
    trial = SimpleNamespace(trial_id="t1")
    checkpoints = []

    def save(step: int) -> Path:
        folder = tmp_path / "storage" / f"checkpoint_{step:06d}"
        (folder / "last").mkdir(parents=True)
        (folder / "last" / "model.safetensors").write_bytes(b"weights")
        checkpoint = tune.Checkpoint.from_directory(str(folder))
        checkpoint.set_metadata({"step": step, "cpu_s": 1.0, "starts": 1})
        checkpoints.append(checkpoint)
        keep.on_checkpoint(iteration=0, trials=[], trial=trial, checkpoint=checkpoint)
        return folder

    def whole(folder: Path) -> bool:
        return (folder / "last" / "model.safetensors").is_file()

    first = save(50)
    keep.get_state()  # snapshot 1 names step 50
    second, third = save(100), save(150)
    assert whole(first) and whole(third)
    assert second.is_dir() and not list(second.iterdir())  # emptied, not deleted
    keep.get_state()  # snapshot 2 names step 150; snapshot 1 is still one of the last two
    assert whole(first)
    keep.get_state()  # snapshot 3 names step 150 too
    assert not list(first.iterdir()) and whole(third)
    assert _restore(tmp_path / "a", checkpoints[2])["step"] == 150
    assert (tmp_path / "a" / "checkpoints" / "last" / "model.safetensors").is_file()
    assert _restore(tmp_path / "b", checkpoints[0]) == {"cpu_s": 0.0, "step": 0, "starts": 2}
    # what Tune pickles with its snapshot holds no checkpoints: a resumed search starts a new list
    assert pickle.loads(pickle.dumps(keep))._held == {}


def test_free_disk_deletes_the_checkpoints_of_trial_folders_no_result_names(tmp_path):
    """A trial that a killed session started and checkpointed after Tune's last snapshot is unknown to the
    resumed session, which runs it again in a new folder: the old folder's checkpoints go with the stage's."""
    from ray import tune
    from ray.tune import Result

    from tune.stages import free_disk

    stage = tmp_path / "search-de"
    results = []
    for name, optuna_trial in (("trial-000-a", 0), ("trial-001-b", 1), ("trial-001-orphan", None)):
        checkpoint = stage / name / "checkpoint_000000"
        (checkpoint / "last").mkdir(parents=True)
        (checkpoint / "last" / "model.safetensors").write_bytes(b"weights")
        (stage / name / "result.json").write_text("{}\n")
        if optuna_trial is not None:
            results.append(Result(metrics={"config": {"optuna_trial": optuna_trial}}, error=None,
                                  checkpoint=tune.Checkpoint.from_directory(str(checkpoint)),
                                  path=str(stage / name)))
    # a search whose storage is elsewhere (a copy) deletes none of them: they are not its own
    free_disk(results, str(tmp_path / "copy"), keep_trials=(0,))
    assert (stage / "trial-001-b" / "checkpoint_000000").exists()
    assert (stage / "trial-001-orphan" / "checkpoint_000000").exists()
    free_disk(results, str(tmp_path), keep_trials=(0,))
    assert (stage / "trial-000-a" / "checkpoint_000000" / "last" / "model.safetensors").is_file()  # the best
    assert not (stage / "trial-001-b" / "checkpoint_000000").exists()
    assert not (stage / "trial-001-orphan" / "checkpoint_000000").exists()
    assert (stage / "trial-001-orphan" / "result.json").is_file()  # only checkpoints go


def test_a_killed_search_leaves_no_optuna_trial_running():
    from optuna.trial import TrialState

    from tune.study import settle

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for _ in range(4):
        trial = study.ask()
        trial.suggest_float("tau", 0.15, 0.25)
        trial.report(10.0, 1)
    study.tell(0, 30.0)  # told before the kill
    results = [({"optuna_trial": 0}, {"target_dev_f1": 30.0, "training_iteration": 3}, False),
               ({"optuna_trial": 1}, {"target_dev_f1": 20.0, "training_iteration": 2, "pruned": True}, False),
               ({"optuna_trial": 2}, {"target_dev_f1": 40.0, "training_iteration": 3}, False)]
    states = settle(study, results, "target_dev_f1")  # trial 3 has no Tune trial: asked, never started
    assert states == {0: TrialState.COMPLETE, 1: TrialState.PRUNED, 2: TrialState.COMPLETE,
                      3: TrialState.FAIL}
    assert [t.value for t in study.trials] == [30.0, 20.0, 40.0, None]
    assert study.trials[1].intermediate_values == {1: 10.0, 2: 20.0}  # the value at the stop is recorded


@pytest.mark.parametrize("extra, message", [
    # 127.0.0.2: loopback that refuses (Ray rewrites 127.0.0.1 to the machine's own address)
    (["--address", "127.0.0.2:1"], "--address 127.0.0.2:1: no Ray cluster answers there (Connection refused"),
    (["--storage", "s3://bucket/x?endpoint_override=127.0.0.2:1&scheme=http&region=us-east-1"],
     "cannot be reached (When getting information for key 'x' in bucket 'bucket'"),
])
def test_a_search_that_cannot_reach_its_cluster_or_storage_writes_nothing(tmp_path, data_dir, extra, message):
    before = sorted(tmp_path.rglob("*"))
    started = time.monotonic()
    run = subprocess.run([sys.executable, "tune/search.py", "--dataset", "conll", "--mode", "multi", "--smoke-test",
                          "--data-dir", str(data_dir), "--out", str(tmp_path / "new" / "run"), *extra],
                         cwd=ROOT, capture_output=True, text=True, check=False, timeout=60)
    assert run.returncode == 2 and time.monotonic() - started < 30
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in run.stderr, run.stderr
    assert sorted(tmp_path.rglob("*")) == before  # not even the folder above --out


def test_each_preset_has_its_scheduler_and_the_flag_overrides_it(tmp_path, data_dir):
    """The laptop preset trains every trial to the end (its early rungs do not predict the last: the
    objective-noise benchmark); the smoke and paper presets keep ASHA; --scheduler wins over the preset."""
    from tune.search import build_parser, settings_from_args

    def scheduler(*extra: str) -> str:
        args = ["--dataset", "conll", "--mode", "single", "--targets", "de", "--data-dir", str(data_dir),
                "--out", str(tmp_path / "run"), *extra]
        return settings_from_args(build_parser().parse_args(args)).scheduler

    assert scheduler() == "fifo" and scheduler("--preset", "laptop") == "fifo"
    assert scheduler("--smoke-test") == "asha" and scheduler("--preset", "paper") == "asha"
    assert scheduler("--scheduler", "asha") == "asha"
    assert scheduler("--preset", "paper", "--scheduler", "fifo") == "fifo"


def test_a_second_search_on_a_busy_results_folder_is_refused(tmp_path, data_dir):
    from dataclasses import asdict

    from tune.preflight import only_search
    from tune.search import build_parser, settings_from_args

    out = tmp_path / "run"
    args = ["--dataset", "conll", "--mode", "multi", "--smoke-test", "--data-dir", str(data_dir), "--out", str(out)]
    out.mkdir()
    (out / "run.json").write_text(json.dumps(asdict(settings_from_args(build_parser().parse_args(args)))))
    with only_search(out):  # as a running search holds it
        run = subprocess.run([sys.executable, "tune/search.py", *args, "--resume"], cwd=ROOT, capture_output=True,
                             text=True, check=False, timeout=60)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert f"another search is running on this folder (pid {os.getpid()})" in run.stderr
    assert sorted(p.name for p in out.iterdir()) == [".search.lock", "run.json"]


@pytest.mark.parametrize("extra, message", [
    (["--targets", "de,xx"], "'xx' is not a target of conll in multi-source mode; choose from en,de,es,nl"),
    (["--range", "tau=0.3:0.1"], "--range tau=0.3:0.1: low 0.3 is not below high 0.1"),
    (["--resume"], "nothing to resume"),
    (["--deterministic", "--scheduler", "hyperband"], "HyperBand pauses a trial until the others of its bracket"),
])
def test_bad_input_is_one_line_on_stderr_and_exit_2(tmp_path, data_dir, extra, message):
    run = subprocess.run([sys.executable, "tune/search.py", "--dataset", "conll", "--mode", "multi",
                          "--data-dir", str(data_dir), "--out", str(tmp_path / "run"), *extra],
                         cwd=ROOT, capture_output=True, text=True, check=False, timeout=60)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert message in run.stderr
    assert not (tmp_path / "run" / "ray").exists()  # refused before Ray started


def test_help_explains_every_flag():
    run = subprocess.run([sys.executable, "tune/search.py", "--help"], cwd=ROOT, capture_output=True,
                         text=True, check=False, timeout=60)
    assert run.returncode == 0
    for flag in ("--dataset", "--mode", "--targets", "--preset", "--num-samples", "--max-concurrent",
                 "--cpus-per-trial", "--gpus-per-trial", "--address", "--storage", "--objective", "--seed",
                 "--final-seeds", "--resume", "--smoke-test", "--data-dir", "--out", "--range", "--sampler",
                 "--scheduler", "--keep-checkpoints"):
        assert flag in run.stdout


def study_trials(out: Path, name: str = "conll-multi-de") -> list[optuna.trial.FrozenTrial]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'optuna.db'}").trials


def interrupted_in_snapshot(stage: Path) -> list[int]:
    """Optuna numbers of the trials Tune's latest snapshot of a stage holds unfinished after a report."""
    latest = max(stage.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    found = []
    for trial_json, meta_json in json.loads(latest.read_text())["trial_data"]:
        trial, last = json.loads(trial_json), json.loads(meta_json).get("last_result")
        if trial.get("status") != "TERMINATED" and isinstance(last, dict) and last.get("step"):
            found.append(trial["config"]["optuna_trial"])
    return found


def columns(path: Path) -> dict[str, pa.DataType]:
    return {f.name: f.type for f in pq.read_schema(path)}


@pytest.fixture(scope="module")
def searched(smoke_search) -> Path:
    """The shared smoke search's results folder, once it has exited 0."""
    assert smoke_search.run.returncode == 0, smoke_search.run.stderr[-3000:]
    return smoke_search.out


@pytest.mark.slow
def test_the_smoke_search_exits_0_and_names_its_dashboards(smoke_search):
    out, run = smoke_search.out, smoke_search.run
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"optuna-dashboard sqlite:///{out / 'optuna.db'} --host 127.0.0.1" in run.stderr
    assert "tensorboard --logdir" in run.stderr
    # its last line says how long the driver took, which the fixture timed from outside
    [wall] = re.findall(r"wall time of the search: (\d+):(\d\d):(\d\d) \(h:mm:ss", run.stderr)
    hours, minutes, seconds = map(int, wall)
    assert 0.8 * smoke_search.seconds - 1 <= 3600 * hours + 60 * minutes + seconds <= smoke_search.seconds
    # Without a terminal, each finished trial's line carries its stage's progress: n of 4 done, and the last
    # of each stage (the search, then the 2 seeds and their 2 baselines) nothing left
    progress = re.findall(r"^(?:trial \d|(?:no-APC )?seed \d) (?:finished|pruned) after \d evaluation\(s\): best "
                          r"target_dev_f1 [\d.]+ \((\d)/4 done, elapsed \d:\d\d:\d\d, left (.+)\)$", run.stderr,
                          flags=re.MULTILINE)
    assert [int(n) for n, _ in progress] == [1, 2, 3, 4] * 2, run.stderr[-3000:]
    assert [left for n, left in progress if n == "4"] == ["0:00:00"] * 2


@pytest.mark.slow
def test_trials_parquet_holds_every_trial_with_its_settings_and_how_it_ended(searched):
    out = searched
    trials = pq.read_table(out / "trials.parquet").to_pylist()
    assert len(trials) == 4
    schema = columns(out / "trials.parquet")
    for name, kind in [("target", pa.string()), ("optuna_trial", pa.int64()), ("trial_id", pa.string()),
                       ("status", pa.string()), ("stopped_round", pa.int64()), ("stopped_step", pa.int64()),
                       ("objective", pa.float64()), ("wall_s", pa.float64()), ("cpu_s", pa.float64()),
                       ("gpu_s", pa.float64()), ("restarts", pa.int64()), ("tau", pa.float64()),
                       ("lam", pa.float64()), ("alpha", pa.float64()), ("beta", pa.float64()),
                       ("gamma", pa.float64()), ("beta_start", pa.float64()), ("target_dev_f1", pa.float64()),
                       ("source_dev_f1", pa.float64()), ("dev_f1_en", pa.float64()), ("loss", pa.float64()),
                       ("collapse", pa.bool_()), ("target_entity_share", pa.float64())]:
        assert schema[name] == kind, name
    assert sorted(t["optuna_trial"] for t in trials) == [0, 1, 2, 3]
    for t in trials:
        assert t["status"] in ("TERMINATED", "PRUNED")
        assert 1 <= t["stopped_round"] <= SMOKE_ROUNDS
        assert t["stopped_step"] == t["stopped_round"] * FIRST_EVAL
        assert (t["status"] == "PRUNED") == (t["stopped_round"] < SMOKE_ROUNDS)
        assert 0.05 <= t["tau"] <= 0.3 and t["gamma"] in (1.0, 1.5, 2.0)  # tests/spaces/every-kind.yaml
        assert t["wall_s"] > 0 and t["cpu_s"] > 0 and t["gpu_s"] == 0 and t["restarts"] == 0
        assert t["objective"] == t["target_dev_f1"]


@pytest.mark.slow
def test_history_parquet_holds_every_evaluation_of_every_trial(searched):
    out = searched
    trials = pq.read_table(out / "trials.parquet").to_pylist()
    history = pq.read_table(out / "history.parquet").to_pylist()
    assert len(history) == sum(t["stopped_round"] for t in trials)
    schema = columns(out / "history.parquet")
    for name, kind in [("target", pa.string()), ("optuna_trial", pa.int64()), ("round", pa.int64()),
                       ("step", pa.int64()), ("target_dev_f1", pa.float64()), ("collapse", pa.bool_())]:
        assert schema[name] == kind, name
    last = {t["optuna_trial"]: t["target_dev_f1"] for t in trials}
    for h in history:
        if h["round"] == next(t for t in trials if t["optuna_trial"] == h["optuna_trial"])["stopped_round"]:
            assert h["target_dev_f1"] == last[h["optuna_trial"]]


@pytest.mark.slow
def test_optuna_records_every_trial_as_tune_ended_it(searched):
    out = searched
    trials = pq.read_table(out / "trials.parquet").to_pylist()
    # Optuna: one study per target, every trial finished, early stops PRUNED with their value at the stop.
    states = {t.number: t for t in study_trials(out)}
    for t in trials:
        frozen = states[t["optuna_trial"]]
        assert frozen.state.name == {"TERMINATED": "COMPLETE", "PRUNED": "PRUNED"}[t["status"]]
        assert frozen.value == pytest.approx(t["objective"])
        assert len(frozen.intermediate_values) == t["stopped_round"]


@pytest.mark.slow
def test_best_json_is_the_best_finished_trial(searched):
    out = searched
    trials = pq.read_table(out / "trials.parquet").to_pylist()
    best = json.loads((out / "best.json").read_text())
    assert best["de"]["value"] == max(t["objective"] for t in trials if t["status"] == "TERMINATED")
    searched = {"tau", "lam", "alpha", "beta", "gamma", "frozen_layers", "proto_space"}  # tests/spaces/every-kind.yaml
    assert best["de"]["sources"] == ["en", "es", "nl"]
    assert set(best["de"]["config"]) == searched | ({"proto_dim"} if best["de"]["config"]["proto_space"] ==
                                                    "projection" else set())


@pytest.mark.slow
def test_final_parquet_holds_pram_and_the_baseline_per_rule_and_language(searched):
    out = searched
    final = pq.read_table(out / "final.parquet").to_pylist()
    assert columns(out / "final.parquet") == {
        "target": pa.string(), "variant": pa.string(), "selection": pa.string(), "lang": pa.string(),
        "role": pa.string(), "seeds": pa.int64(), "f1_mean": pa.float64(), "f1_std": pa.float64(),
        "precision_mean": pa.float64(), "recall_mean": pa.float64(), "f1_per_seed": pa.list_(pa.float64()),
        "checkpoints": pa.list_(pa.string()), "paper_f1": pa.float64(), "steps_per_seed": pa.list_(pa.int64()),
        "test_sentences": pa.int64()}
    # PRAM and the no-APC baseline, the checkpoint kept by each selection rule, every test language
    assert [(r["variant"], r["selection"], r["lang"], r["role"]) for r in final] == [
        (variant, selection, lang, role) for variant in ("both", "none")
        for selection in ("target-dev", "source-dev")
        for lang, role in (("de", "target"), ("en", "source"), ("es", "source"), ("nl", "source"))]
    for r in final:
        assert r["seeds"] == 2 and len(r["f1_per_seed"]) == 2
        assert r["f1_mean"] == pytest.approx(sum(r["f1_per_seed"]) / 2)
        assert r["f1_std"] == pytest.approx(abs(r["f1_per_seed"][0] - r["f1_per_seed"][1]) / 2 ** 0.5)
        # Table 4's multi-source PRAM row is missing from the paper's text; its BERT-f stands for no APC
        assert r["paper_f1"] == ({"both": None, "none": 73.86}[r["variant"]] if r["lang"] == "de" else None)
        assert len(r["checkpoints"]) == 2
        assert len(r["steps_per_seed"]) == 2 and all(step % FIRST_EVAL == 0 for step in r["steps_per_seed"])
        assert r["test_sentences"] == 40  # the smoke preset's test_sentences
        for kept in r["checkpoints"]:  # inside the results folder, with the weights the rule chose
            assert kept.startswith("ray/experiments/final-de/") and kept.endswith(f"/best-{r['selection']}")
            assert (out / kept / "model.safetensors").is_file()
    assert {r["checkpoints"][0].split("/")[3].split("-seed-")[0] for r in final} == {"pram", "no-apc"}


@pytest.mark.slow
def test_summary_md_sets_the_search_beside_the_paper(searched):
    out = searched
    summary = (out / "summary.md").read_text()
    assert "| de | en,es,nl |" in summary and "missing from the paper's text" in summary
    assert "not directly comparable" in summary
    assert "Test sentences scored: de 40, en 40, es 40, nl 40." in summary
    # The best PRAM model of the target, exported for pipeline() (tests/test_export.py checks such a folder)
    assert "- de: `ray/export-de`" in summary
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= {
        p.name for p in (out / "ray" / "export-de").iterdir()}
    assert "| de | PRAM | " in summary and "| de | no APC (--apc none) | " in summary  # the selection table


@pytest.mark.slow
def test_rays_files_stay_in_the_folder_and_spent_checkpoints_are_gone(searched):
    out = searched
    # Ray's own files stay in the run's folder. Once the final stage has retrained the best settings, the
    # search trials' checkpoints are deleted, and each final run keeps only its chosen weights (not last/).
    assert (out / "ray" / "tmp").is_dir() and (out / "ray" / "experiments" / "search-de").is_dir()
    trial_dirs = list((out / "ray" / "experiments" / "search-de").glob("trial-*"))
    assert len(trial_dirs) == 4 and all((d / "progress.csv").is_file() for d in trial_dirs)
    assert not [c for d in trial_dirs for c in d.glob("checkpoint_*")]
    final_checkpoints = list((out / "ray" / "experiments" / "final-de").glob("*/checkpoint_*"))
    assert len(final_checkpoints) == 4
    for checkpoint in final_checkpoints:
        assert sorted(p.name for p in checkpoint.iterdir() if p.is_dir()) == ["best-source-dev", "best-target-dev"]
    assert not list((out / "ray" / "work").glob("*/*"))  # the trials' working copies are gone


@pytest.mark.slow
def test_trials_hand_tune_a_checkpoint_only_when_a_resume_or_the_search_needs_it(searched):
    """Smoke trials end long before --checkpoint-every's 300 s. A search trial followed by a final stage keeps no
    weights, so it hands Tune none; a final run, which no scheduler stops, hands its best weights (and `last`)
    once, with its last evaluation, however often they improved before."""
    for stage in ("search-de", "final-de"):
        for trial, rows in tune_results(searched / "ray" / "experiments", stage).items():
            handed = [r.get("checkpoint_dir_name") for r in rows if not r.get("final")]
            expected = [None] * len(handed) if stage == "search-de" else [None] * (len(handed) - 1) + [
                "checkpoint_000000"]
            assert handed == expected, (stage, trial)


def test_cpu_trials_reuse_their_actors_and_time_their_set_up_and_reports(searched):
    out = searched
    # The smoke search runs 2 one-CPU trials at a time: its 4 search trials and its 4 final runs share
    # processes (Tune's `pid`; an actor that ends takes its process with it), not a new actor apiece
    # (search_overhead.py: the imports alone cost seconds a trial).
    for stage in ("search-de", "final-de"):
        results = tune_results(out / "ray" / "experiments", stage)
        assert len(results) == 4
        assert len({r["pid"] for rows in results.values() for r in rows}) < 4, stage
    history = pq.read_table(out / "history.parquet").to_pylist()
    by_trial: dict[int, list[dict]] = {}
    for h in sorted(history, key=lambda h: h["round"]):
        by_trial.setdefault(h["optuna_trial"], []).append(h)
    for rounds in by_trial.values():
        # set-up (model, optimizer) happens once, before the first step, and within the trial's own clock
        assert len({h["setup_s"] for h in rounds}) == 1 and 0 < rounds[0]["setup_s"] < rounds[0]["elapsed_s"]
        # report_s: the seconds of the reports before this one (each hands Tune a result, so > 0)
        assert rounds[0]["report_s"] == 0
        assert all(later["report_s"] > earlier["report_s"] for earlier, later in itertools.pairwise(rounds))


@pytest.fixture(scope="module")
def fifo_search(tmp_path_factory, data_dir) -> tuple[Path, subprocess.CompletedProcess]:
    """Random search without early stopping (the baseline of the search-efficiency benchmark), 3 trials, in
    which every trial raises once right after its first evaluation (the test-only fault hook), checkpointed at
    every evaluation, its best two trials trained again with the next seed (--rescore-top 2): one search for the
    three tests below."""
    root = tmp_path_factory.mktemp("fifo-search")
    out = root / "run"
    run = subprocess.run(search_command(out, data_dir, "--num-samples", "3", "--final-seeds", "0",
                                        "--sampler", "random", "--scheduler", "fifo", "--checkpoint-every", "0",
                                        "--rescore-top", "2"),
                         cwd=ROOT, env=search_env(root / "cache", PRAM_TUNE_FAIL_AT_STEP=str(FIRST_EVAL)),
                         capture_output=True, text=True, check=False, timeout=400)
    assert run.returncode == 0, run.stderr[-3000:]
    return out, run


@pytest.mark.slow
def test_random_search_without_early_stopping_trains_every_trial_to_the_end(fifo_search):
    """Uniform draws, every trial trained to its last round."""
    out, _ = fifo_search
    trials = sorted(pq.read_table(out / "trials.parquet").to_pylist(), key=lambda t: t["optuna_trial"])
    assert [(t["status"], t["stopped_round"]) for t in trials] == [("TERMINATED", SMOKE_ROUNDS)] * 3
    assert {t.state.name for t in study_trials(out)} == {"COMPLETE"}
    # The draws of a seeded RandomSampler over the same space, made here without Ray (study seed: --seed 0
    # plus the target's place in --targets, 0)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    space = space_function(search_ranges("conll"))
    for t in trials:
        drawn = study.ask()
        space(drawn)
        assert {k: t[k] for k in drawn.params} == pytest.approx(drawn.params)
    assert "drawn at random (Optuna's RandomSampler, seed 0) and each trained to the end" in \
        (out / "summary.md").read_text()
    assert json.loads((out / "run.json").read_text())["scheduler"] == "fifo"
    # With no final stage, the best trial's checkpoint is the search's model: its weights chosen on the
    # objective, and `last`; the other trials' checkpoints are deleted, and no trial wrote best-source-dev.
    best = json.loads((out / "best.json").read_text())["de"]["optuna_trial"]
    kept = {d.name.split("-")[1]: sorted({p.name for c in d.glob("checkpoint_*") for p in c.iterdir() if p.is_dir()})
            for d in (out / "ray" / "experiments" / "search-de").glob("trial-*")}
    assert kept == {"000": [], "001": [], "002": [], f"{best:03d}": ["best-target-dev", "last"]}


@pytest.mark.slow
def test_rescoring_trains_the_two_best_trials_again_and_keeps_the_best_mean(fifo_search):
    out, run = fifo_search
    trials = sorted(pq.read_table(out / "trials.parquet").to_pylist(), key=lambda t: (-t["objective"],
                                                                                      t["optuna_trial"]))
    best = json.loads((out / "best.json").read_text())["de"]
    rescored = {int(n): scores for n, scores in best["rescored"].items()}
    assert sorted(rescored) == sorted(t["optuna_trial"] for t in trials[:2])
    for t in trials[:2]:
        first, second = rescored[t["optuna_trial"]]
        assert first == t["objective"] and 0 <= second <= 100
    # the second run of each is a real run with the next seed: Tune recorded its every round
    runs = tune_results(out / "ray" / "experiments", "rescore-de")
    assert len(runs) == 2 and all(len(r) >= SMOKE_ROUNDS for r in runs.values())
    means = {n: sum(s) / 2 for n, s in rescored.items()}
    assert best["optuna_trial"] == max(means, key=lambda n: (means[n], rescored[n][0], -n))
    assert best["value"] == rescored[best["optuna_trial"]][0]
    assert f"(--rescore-top): trial {best['optuna_trial']} (" in run.stderr


@pytest.mark.slow
def test_a_trial_that_raises_is_retried_from_its_checkpoint(fifo_search):
    out, run = fifo_search
    assert "injected fault after step" in run.stderr
    trials = pq.read_table(out / "trials.parquet").to_pylist()
    assert len(trials) == 3
    for t in trials:
        assert t["restarts"] == 1
    # Each trial's first round was recorded once, before the fault; the retry went on from it.
    history = pq.read_table(out / "history.parquet").to_pylist()
    for t in trials:
        rounds = [h["round"] for h in history if h["trial_id"] == t["trial_id"]]
        assert rounds == list(range(1, t["stopped_round"] + 1))


@pytest.mark.slow
def test_hyperband_halves_its_brackets_and_a_loser_stopped_while_paused_is_pruned(tmp_path, data_dir):
    """Ray's HyperBand over the smoke search's 3 rounds, reduction factor 3. Its bracket sizes, worked out from
    Li et al.'s formulas as Ray rounds them (s_max + 1 = round(log 3 / log 3) + 1 = 2 brackets; bracket s has
    ceil(2 / (s + 1) * 3^s) trials starting at round int(3 / 3^s)): 2 trials trained to round 3, then 3 trials
    of which 1 goes on after round 1. The losers are stopped while PAUSED (only the last trial to reach the
    rung is running), when Tune gives the searcher no result: Optuna must still record them PRUNED with their
    round-1 value, not FAIL."""
    out = tmp_path / "run"
    run = subprocess.run(search_command(out, data_dir, "--num-samples", "5", "--final-seeds", "0",
                                        "--sampler", "random", "--scheduler", "hyperband", "--no-prune-collapsed"),
                         cwd=ROOT, env=search_env(tmp_path / "cache"), capture_output=True, text=True, check=False,
                         timeout=400)
    assert run.returncode == 0, run.stderr[-3000:]
    trials = pq.read_table(out / "trials.parquet").to_pylist()
    assert sorted((t["status"], t["stopped_round"]) for t in trials) == \
        [("PRUNED", 1)] * 2 + [("TERMINATED", SMOKE_ROUNDS)] * 3
    frozen = study_trials(out)
    assert sorted(t.state.name for t in frozen) == ["COMPLETE"] * 3 + ["PRUNED"] * 2
    for t in frozen:
        assert t.value == t.intermediate_values[max(t.intermediate_values)]
    # paused or not (a paused trial that goes on restarts from its checkpoint), each round is recorded once
    history = pq.read_table(out / "history.parquet").to_pylist()
    for t in trials:
        assert [h["round"] for h in history if h["trial_id"] == t["trial_id"]] == \
            list(range(1, t["stopped_round"] + 1))
    assert "stopped early by HyperBand" in (out / "summary.md").read_text()


def _alive(pid: int, started: float) -> bool:
    """The process recorded as (pid, start time) is still running (a reused pid is another process)."""
    import psutil

    try:
        process = psutil.Process(pid)
        return abs(process.create_time() - started) < 1e-3 and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False




@pytest.mark.slow
def test_a_search_killed_mid_way_resumes_with_every_trial_finished(tmp_path, data_dir):
    out = tmp_path / "run"
    cache = tmp_path / "cache"
    stage = out / "ray" / "experiments" / "search-de"
    first_report = reported(stage / "*/progress.csv")
    seen = {}

    def snapshot_after_a_report() -> bool:
        # Tune snapshots the experiment on its own clock (not after every checkpoint; here every second,
        # TUNE_GLOBAL_CHECKPOINT_S, since smoke trials end within Tune's default 10 s): the kill waits for a
        # snapshot that names the reported checkpoint, so that the resume has one to go on from
        if "at" not in seen:
            if first_report():
                seen["at"] = time.time()
            return False
        return any(p.stat().st_mtime > seen["at"] for p in stage.glob("experiment_state-*.json"))

    # (settle: not inside Tune's rewrite of its snapshot, tests/test_reproducible.py)
    with killed_search(search_command(out, data_dir, "--final-seeds", "0"),
                       search_env(cache, TUNE_GLOBAL_CHECKPOINT_S="1"), snapshot_after_a_report, timeout=180,
                       settle=0.5):
        # The trials Tune's last snapshot holds unfinished after a report: the resume names them. (On a fast
        # machine every trial that reported may have ended before the snapshot: then there is none to name.)
        cut = interrupted_in_snapshot(stage)
        # What the killed session recorded of the processes it started; some survive it, with parent 1.
        recorded = json.loads((out / "ray" / "processes.json").read_text())
        assert recorded
        assert not (out / "trials.parquet").exists()
        run = subprocess.run(search_command(out, data_dir, "--resume"), cwd=ROOT, env=search_env(cache),
                             capture_output=True, text=True, check=False, timeout=240)
        # The resume stopped every process of the first session before it started its own Ray.
        leftovers = [pid for pid, started in recorded.items() if _alive(int(pid), started)]
    assert run.returncode == 0, run.stderr[-3000:]
    assert not leftovers
    # It says which trial it continues and from where, and Tune's missing-metrics warning is not there. (With
    # the default --checkpoint-every, a smoke trial's only checkpoints are those of its improving evaluations
    # from step 21 on, when the target term is on: one killed after step 20 starts again.)
    said = re.findall(r"^trial (\d) was interrupted after step \d+(?:; it continues from its checkpoint at step "
                      r"\d+|, before its first checkpoint \(--checkpoint-every\); it starts again from step 0)$",
                      run.stderr, flags=re.MULTILINE)
    assert sorted(int(n) for n in said) == sorted(cut), (cut, run.stderr[-3000:])
    assert "Failed to fetch metrics" not in run.stderr
    assert not (out / "ray" / "processes.json").exists()  # and its own, once it ended
    frozen = study_trials(out)
    assert len(frozen) == 4
    assert {t.state.name for t in frozen} <= {"COMPLETE", "PRUNED"}
    trials = pq.read_table(out / "trials.parquet").to_pylist()
    assert sorted(t["optuna_trial"] for t in trials) == [0, 1, 2, 3]
    assert {t["status"] for t in trials} <= {"TERMINATED", "PRUNED"}
    assert len({t["trial_id"] for t in trials}) == 4
    # Each trial's rounds are recorded once, at their steps, whether it went on from a checkpoint or from step 0
    history = pq.read_table(out / "history.parquet").to_pylist()
    for t in trials:
        rounds = sorted((h["round"], h["step"]) for h in history if h["trial_id"] == t["trial_id"])
        assert rounds == [(r, r * FIRST_EVAL) for r in range(1, t["stopped_round"] + 1)]
    # Without a final stage the best trial's weights are the model: they are kept, the others' deleted.
    best = json.loads((out / "best.json").read_text())["de"]["optuna_trial"]
    for t in trials:
        trial_dir = next((out / "ray" / "experiments" / "search-de").glob(f"trial-{t['optuna_trial']:03d}-*"))
        assert bool(list(trial_dir.glob("checkpoint_*/last/model.safetensors"))) == (t["optuna_trial"] == best)

    # A finished search resumed again (its deleted checkpoints are not needed) changes nothing.
    again = subprocess.run(search_command(out, data_dir, "--resume"), cwd=ROOT, env=search_env(cache),
                           capture_output=True, text=True, check=False, timeout=240)
    assert again.returncode == 0, again.stderr[-3000:]
    def by_trial(rows):
        return sorted(rows, key=lambda t: t["optuna_trial"])

    assert by_trial(pq.read_table(out / "trials.parquet").to_pylist()) == by_trial(trials)


def _train_config(*argv: str):
    from pram.cli import build_parser, train_config_from_args

    return train_config_from_args(build_parser().parse_args(["train", *argv]))


def test_pram_train_settings_reads_an_older_best_json_with_its_run_json():
    """The committed laptop search predates best.json's train_config: its run.json gives the preset and the
    search's overrides, best.json the trial's settings."""
    folder = ROOT / "results" / "search-conll-multi-laptop"
    best = json.loads((folder / "best.json").read_text())["es"]
    config = _train_config("--settings", str(folder / "best.json"), "--target", "es")
    assert (config.dataset, config.sources, config.target) == ("conll", ("en", "de", "nl"), "es")
    assert (config.max_steps, config.lr, config.batch_size, config.train_sentences) == (150, 1e-4, 8, 2000)
    assert {k: getattr(config, k) for k in best["config"]} == best["config"]
    assert config.encoder == "me5-small" and config.out_dir == "runs/settings-es" and config.data_dir is None
    longer = _train_config("--settings", str(folder / "best.json"), "--target", "es", "--max-steps", "2000")
    assert longer.max_steps == 2000 and replace(longer, max_steps=150) == config  # that field alone


@pytest.mark.parametrize("content, argv, message", [
    ("{", ["--target", "de"], "not a best.json of a search"),
    ('{"de": {}}', ["--target", "de"], "no target with settings"),
    ('{"de": {"config": {"tau": 0.2}}, "es": {"config": {"tau": 0.2}}}', [], "say which with --target"),
    ('{"de": {"config": {"tau": 0.2}}}', ["--target", "nl"], "no settings for target nl"),
    ('{"de": {"config": {"tau": 0.2}, "sources": ["en"]}}', ["--target", "de"], "without the run.json"),
])
def test_a_bad_settings_file_is_one_line(tmp_path, content, argv, message):
    from pram.errors import UserError

    (tmp_path / "best.json").write_text(content)
    with pytest.raises(UserError, match=re.escape(message)):
        _train_config("--settings", str(tmp_path / "best.json"), *argv)


@pytest.mark.slow
def test_pram_train_settings_repeats_the_best_trials_config_field_by_field(searched):
    from tune.run import base_config
    from tune.settings import Settings

    run = json.loads((searched / "run.json").read_text())
    settings = Settings(**{**run, "targets": tuple(run["targets"]), "ranges": tuple(run["ranges"])})
    best = json.loads((searched / "best.json").read_text())["de"]
    trained = replace(base_config(settings, "de"), **best["config"])  # what run_trial gave the best trial
    config = _train_config("--settings", str(searched / "best.json"), "--target", "de")
    for f in fields(config):
        if f.name not in ("out_dir", "data_dir", "cache_dir", "quiet", "threads"):
            assert getattr(config, f.name) == getattr(trained, f.name), f.name
    assert "pram train --settings" in (searched / "summary.md").read_text()
    faster = _train_config("--settings", str(searched / "best.json"), "--target", "de", "--lr", "0.5")
    assert faster.lr == 0.5 and replace(faster, lr=config.lr) == config


def test_tunes_missing_metrics_warning_becomes_one_line_that_says_what_it_means():
    import logging

    from tune.stages import NoResultFiles

    message = ("Failed to fetch metrics for 2 trial(s):\n- run_trial_1a2b3_00001: FileNotFoundError('Could not "
               "fetch metrics for run_trial_1a2b3_00001: both result.json and progress.csv were not found at "
               "/x')\n- run_trial_1a2b3_00003: FileNotFoundError('...')")
    record = logging.LogRecord("ray.tune.analysis.experiment_analysis", logging.WARNING, __file__, 1, message, (),
                               None)
    assert NoResultFiles().filter(record)
    assert record.getMessage() == ("no result file for run_trial_1a2b3_00001, run_trial_1a2b3_00003: they had "
                                   "not reported an evaluation when the search was interrupted (nothing of "
                                   "theirs was lost)")
    other = logging.LogRecord("x", logging.WARNING, __file__, 1, "something else", (), None)
    assert NoResultFiles().filter(other) and other.getMessage() == "something else"


def _comparable(out: Path) -> tuple[list[dict], str, list[str]]:
    """What two searches with the same seeds must share: final.parquet without the checkpoint folders (their
    names hold Tune's trial ids), summary.md with the folder's own path taken out, and every chart of the
    dashboard (plotly's element ids taken out; the page's tables also show wall times)."""
    final = [{k: v for k, v in r.items() if k != "checkpoints"}
             for r in pq.read_table(out / "final.parquet").to_pylist()]
    summary = (out / "summary.md").read_text().replace(str(out), "<out>").replace(os.path.relpath(out, ROOT), "<out>")
    page = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<id>",
                  (out / "dashboard.html").read_text())
    charts = re.findall(r"Plotly\.newPlot\((.*?)\)\s*\};?\s*</script>", page, flags=re.DOTALL)
    assert len(charts) >= 5
    return final, re.sub(r"ray/export-de|pram-seed-\d+-\w+|trial-\d+-\w+", "", summary), charts


@pytest.mark.slow
def test_a_search_killed_in_its_final_stage_resumes_without_retraining_a_finished_seed(tmp_path, data_dir):
    """One trial (nothing for ASHA or TPE to decide), 2 final seeds with the no-APC baseline, 2 at a time: the
    driver is killed once one final run has finished and another is under way. --resume keeps the finished run
    as it was, continues the other, and ends with the final table, summary and charts of a search never
    interrupted."""
    extra = ("--num-samples", "1", "--final-seeds", "2")
    reference = tmp_path / "reference"
    whole = subprocess.run(search_command(reference, data_dir, *extra), cwd=ROOT, env=search_env(tmp_path / "c1"),
                           capture_output=True, text=True, check=False, timeout=400)
    assert whole.returncode == 0, whole.stderr[-3000:]

    out = tmp_path / "killed"
    finished = []

    def one_run_finished_and_another_under_way() -> bool:
        runs = tune_results(out / "ray" / "experiments", "final-de")
        finished[:] = [name for name, results in runs.items() if results and results[-1].get("final")]
        return bool(finished) and len(runs) > len(finished)

    # (settle: not inside Tune's rewrite of its snapshot right after a report)
    with killed_search(search_command(out, data_dir, *extra), search_env(tmp_path / "c2"),
                       one_run_finished_and_another_under_way, settle=0.5):
        assert finished, "the search ended before its final stage could be interrupted"
        runs = tune_results(out / "ray" / "experiments", "final-de")
        kept = {name: runs[name] for name in finished}
        resumed = subprocess.run(search_command(out, data_dir, "--resume"), cwd=ROOT, env=search_env(tmp_path / "c2"),
                                 capture_output=True, text=True, check=False, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = tune_results(out / "ray" / "experiments", "final-de")
    assert len(after) == 4 and all(results and results[-1].get("final") for results in after.values())
    for name, results in kept.items():  # a finished seed was not trained again: not one result more
        assert after[name] == results
    assert _comparable(out) == _comparable(reference)


@pytest.mark.slow
def test_sigterm_ends_a_search_and_a_copy_of_its_folder_resumes_in_place(tmp_path, data_dir):
    """`kill` on the driver: Ray shut down, one line, exit 143 (no abort in Ray's C++ core). Its folder copied
    elsewhere and resumed there with `--resume --out COPY` alone: the copy finishes, and the original is not
    touched (run.json's absolute paths are re-based on the copy)."""
    out = tmp_path / "run"
    with killed_search(search_command(out, data_dir, "--final-seeds", "0", "--num-samples", "2"),
                       search_env(tmp_path / "cache"), reported(out / "ray/experiments/search-de/*/progress.csv"),
                       timeout=180, sig=signal.SIGTERM) as driver:
        stderr = driver.stderr_text
        deadline = time.time() + 30  # Ray's processes end just after the driver that shut them down
        while session_processes(driver.pid) and time.time() < deadline:
            time.sleep(0.2)
        left = session_processes(driver.pid)
    assert driver.returncode == 143, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == \
        "search: terminated (SIGTERM); run the same command with --resume to continue"
    assert "Aborted" not in stderr and "core_worker" not in stderr
    assert not left  # Ray and its workers went with the driver
    assert not (out / "trials.parquet").exists()

    original = file_hashes(out)
    copy = tmp_path / "elsewhere" / "copy"
    copy.parent.mkdir()
    subprocess.run(["cp", "-a", str(out), str(copy)], check=True)  # as a user copies it (Ray's sockets too)
    run = subprocess.run([sys.executable, "tune/search.py", "--resume", "--out", str(copy)], cwd=ROOT,
                         env=search_env(tmp_path / "cache"), capture_output=True, text=True, check=False, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"search: resuming in {copy}, where the search was moved or copied from {out}" in run.stderr
    assert file_hashes(out) == original  # the original folder was not written to
    saved = json.loads((copy / "run.json").read_text())
    assert saved["out"] == str(copy) and saved["storage"] == str(copy / "ray" / "experiments")
    trials = pq.read_table(copy / "trials.parquet").to_pylist()
    assert sorted(t["optuna_trial"] for t in trials) == [t.number for t in study_trials(copy)] == [0, 1]


def test_resume_refuses_settings_that_differ_from_the_search_and_takes_the_safe_ones(tmp_path):
    from pram.errors import UserError
    from tune.search import build_parser, settings_from_args

    parser = build_parser()
    out = tmp_path / "run"
    args = ["--dataset", "conll", "--mode", "multi", "--smoke-test", "--targets", "de", "--out", str(out)]
    settings = settings_from_args(parser.parse_args(args), parser)
    out.mkdir()
    (out / "run.json").write_text(json.dumps(asdict(settings)))

    def resumed(*flags):
        return settings_from_args(parser.parse_args(["--resume", "--out", str(out), *flags]), parser)

    assert resumed() == settings  # --resume --out alone: --dataset and --mode come from run.json
    assert resumed("--max-concurrent", "1", "--max-failures", "5").max_concurrent == 1
    for flags, named in [(["--targets", "de,es"], "--targets de,es (the search has ('de',))"),
                         (["--num-samples", "9"], "--num-samples 9 (the search has 4)"),
                         (["--warm-start"], "--warm-start True (the search has False)"),
                         (["--lr", "0.01"], "--lr 0.01 (the search has the smoke preset's)"),
                         (["--dataset", "wikiann"], "--dataset wikiann (the search has conll)")]:
        with pytest.raises(UserError, match=re.escape(named)):
            resumed(*flags)


@pytest.mark.slow
def test_a_gpu_the_machine_does_not_have_is_refused_before_any_trial(tmp_path, data_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "run"
    run = subprocess.run(search_command(out, data_dir, "--gpus-per-trial", "1"), cwd=ROOT,
                         env=search_env(tmp_path / "cache"), capture_output=True, text=True, check=False, timeout=240)
    assert run.returncode == 2, run.stderr[-3000:]
    assert re.match(r"search: error: a trial asks for 1 CPU, 1 GPU and this machine has \d+ CPU, 0 GPU: no trial "
                    "could start", run.stderr.strip().splitlines()[-1]), run.stderr[-2000:]
    assert "Traceback" not in run.stderr and not out.exists()  # nothing left behind


def test_a_final_run_that_failed_stops_the_search_before_its_result_files(tmp_path):
    """A final table without one seed's run would compare PRAM and the baseline on different seeds."""
    from ray.tune import Result

    from pram.errors import UserError
    from tune.run import check_final

    def run(seed, error=None):
        return Result(metrics={"final": 1}, error=error, path=str(tmp_path / f"seed-{seed}"), checkpoint=None)

    check_final([run(0), run(1)], "de")  # every run finished: nothing to say
    full = OSError(28, "No space left on device")
    with pytest.raises(UserError, match=re.escape("final stage of de: 1 of 2 run(s) failed ([Errno 28] No space "
                                                  "left on device); no result file was written")):
        check_final([run(0), run(1, full)], "de")

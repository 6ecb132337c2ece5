"""Search-space files (tune/spaces/, --space): every kind of distribution, conditions, seeds, and bad files.

The suggestions are Optuna's own, drawn without training; the smoke search that a space drives end to end is
the shared one of conftest.py (tests/spaces/every-kind.yaml), checked at the end of this file.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import optuna
import pyarrow.parquet as pq
import pytest
from searches import draws

from pram.config import TrainConfig
from tune.space import (
    PAPER_RANGES,
    SAMPLERS,
    Choice,
    Interval,
    load_space,
    parse_range,
    parse_space,
    search_ranges,
    space_path,
)

ROOT = Path(__file__).resolve().parents[1]
EVERY_KIND = ROOT / "tests" / "spaces" / "every-kind.yaml"


def test_a_space_file_reads_as_optunas_distributions():
    ranges = load_space(EVERY_KIND)
    assert ranges["tau"] == Interval(0.05, 0.3, log=True)
    assert ranges["alpha"] == Interval(0.5, 1.5, step=0.25)
    assert ranges["frozen_layers"] == Interval(0, 1, integer=True)
    assert ranges["gamma"] == Choice((1.0, 1.5, 2.0))
    assert ranges["proto_space"] == Choice(("hidden", "projection"))
    assert ranges["proto_dim"] == Interval(16, 64, log=True, integer=True, when=("proto_space", ("projection",)))


def test_every_suggestion_lies_in_its_range_and_log_settings_are_drawn_on_a_log_scale():
    configs = draws(load_space(EVERY_KIND), n=400, sampler="random")
    for c in configs:
        assert 0.05 <= c["tau"] <= 0.3 and 0.8 <= c["lam"] <= 0.99 and 0.5 <= c["beta"] <= 1.5
        assert c["alpha"] in (0.5, 0.75, 1.0, 1.25, 1.5)  # the grid of step 0.25
        assert c["frozen_layers"] in (0, 1) and isinstance(c["frozen_layers"], int)
        assert c["gamma"] in (1.0, 1.5, 2.0)
        # the conditional setting is there exactly when its condition holds
        assert ("proto_dim" in c) == (c["proto_space"] == "projection")
        if "proto_dim" in c:
            assert 16 <= c["proto_dim"] <= 64 and isinstance(c["proto_dim"], int)
    # Log-uniform on [0.05, 0.3]: half the draws lie below the geometric mean sqrt(0.05 * 0.3) = 0.1225; uniform
    # draws would put (0.1225 - 0.05) / 0.25 = 29 % there. 400 draws: the share's sd is 2.5 points.
    below = statistics.fmean(c["tau"] < math.sqrt(0.05 * 0.3) for c in configs)
    assert 0.42 < below < 0.58
    logs = [math.log(c["tau"]) for c in configs]  # and in log space they are uniform: mean at the middle
    assert statistics.fmean(logs) == pytest.approx((math.log(0.05) + math.log(0.3)) / 2, abs=0.1)
    lam_below = statistics.fmean(c["lam"] < math.sqrt(0.8 * 0.99) for c in configs)
    assert 0.40 < lam_below < 0.55  # lam, uniform: (0.8899 - 0.8) / 0.19 = 47 % below its geometric mean
    assert {c["proto_space"] for c in configs} == {"hidden", "projection"}


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_the_same_seed_suggests_the_same_values_in_the_same_order(sampler):
    ranges = load_space(space_path("wide", "conll"))
    first = draws(ranges, n=8, seed=5, sampler=sampler)  # past TPE's and GP's random start (2 of 8)
    assert draws(ranges, n=8, seed=5, sampler=sampler) == first
    assert draws(ranges, n=8, seed=6, sampler=sampler) != first
    for params in first:  # every sampler keeps to the space: log range, choices, the condition
        assert 0.02 <= params["tau"] <= 0.3 and 1e-5 <= params["lr"] <= 3e-4
        assert params["batch_size"] in (8, 16, 32) and isinstance(params["frozen_layers"], int)
        assert ("warmup" in params) == (params["lr_schedule"] == "linear")


@pytest.mark.parametrize("dataset", ["conll", "wikiann"])
def test_the_shipped_spaces_load_and_paper_is_appendix_a(dataset):
    assert PAPER_RANGES[dataset] == search_ranges(dataset) == load_space(space_path("paper", dataset))
    high = {"conll": 1.5, "wikiann": 3.0}[dataset]
    assert PAPER_RANGES[dataset]["alpha"] == Interval({"conll": 0.5, "wikiann": 1.0}[dataset], high)
    wide = load_space(space_path("wide", dataset))
    assert wide["tau"] == Interval(0.02, 0.3, log=True) and wide["lr"].log
    assert set(PAPER_RANGES[dataset]) < set(wide)
    for c in draws(wide, n=30, sampler="random"):  # every draw of the wide space is a TrainConfig
        TrainConfig(**c)


def test_the_tuning_space_names_the_averages_and_draws_valid_configs():
    """tune/spaces/tuning-conll.yaml (issue 45): `none` of a named setting is a name, not a missing value."""
    space = load_space(space_path(str(space_path("paper", "conll").parent / "tuning-conll.yaml"), "conll"))
    assert space["average"] == Choice(("none", "ema", "tail"))
    assert space["lr"] == Interval(5e-5, 4e-4, log=True) and space["frozen_layers"] == Interval(3, 6, integer=True)
    drawn = draws(space, n=40, sampler="random")
    assert {c["average"] for c in drawn} == {"none", "ema", "tail"}
    for c in drawn:
        TrainConfig(**c)


def test_a_condition_on_none_and_a_conditional_choice_are_drawn_when_they_hold():
    ranges = parse_space("gamma: [1.0, none]\n"
                         "tau: {low: 0.1, high: 0.2, when: {gamma: none}}\n"
                         "proto_space: {choices: [hidden, projection], when: {gamma: 1.0}}\n", "inline")
    assert ranges["tau"].when == ("gamma", (None,)) and ranges["proto_space"].when == ("gamma", (1.0,))
    configs = draws(ranges, n=40, sampler="random")
    assert all(("tau" in c) == (c["gamma"] is None) and ("proto_space" in c) == (c["gamma"] == 1.0)
               for c in configs)
    assert {c["gamma"] for c in configs} == {1.0, None}


def test_a_range_keeps_the_files_condition_and_a_fixed_choice_drops_what_can_no_longer_be_drawn():
    wide = space_path("wide", "conll")
    assert search_ranges("conll", ["warmup=0:0.1"], space=wide)["warmup"] == \
        Interval(0.0, 0.1, when=("lr_schedule", ("linear",)))
    fixed = search_ranges("conll", ["lr_schedule=constant", "proto_space=projection"], space=wide)
    assert "warmup" not in fixed and fixed["proto_dim"] == load_space(wide)["proto_dim"]


def test_a_range_on_the_command_line_replaces_one_line_of_the_file():
    ranges = search_ranges("conll", ["lr=1e-5:1e-3:log", "tau=0.2"], space=EVERY_KIND)
    assert ranges["lr"] == Interval(1e-5, 1e-3, log=True)
    assert ranges["tau"] == Choice((0.2,))
    assert ranges["proto_dim"] == load_space(EVERY_KIND)["proto_dim"]
    assert parse_range("frozen_layers=0:4") == ("frozen_layers", Interval(0, 4, integer=True))


BAD_SPACES = [  # (file text, the line named, words of the message)
    ("tau: {low: 0.1, high: 0.3}\nwarmth: {low: 0, high: 1}\n", 2, "warmth: is not a setting of TrainConfig"),
    ("max_steps: {low: 100, high: 200}\n", 1, "max_steps: is a setting the search does not vary"),
    ("tau: {low: 0.1, high: 0.3}\nfrozen_layers: {low: 0.5, high: 3}\n", 2, "is not a whole number"),
    ("lam: {low: 0.9, high: 0.8}\n", 1, "lam: low 0.9 is not below high 0.8"),
    ("lr: {low: 0, high: 0.001, log: true}\n", 1, "log: true needs a positive low"),
    ("proto_space: [hidden, projection]\nproto_dim: {low: 16, high: 64, when: {proto_space: flat}}\n", 2,
     "when: proto_space has no choice flat"),
    ("proto_dim: {low: 16, high: 64, when: {proto_space: projection}}\n", 1,
     "when: proto_space is not a choice of this space"),
    ("tau: {low: 0.1, high: 0.3\nlam: [0.9]\n", 2, "not valid YAML"),
    ("proto_space: [hidden, flat]\n", 1, "proto_space must be one of"),
    ("tau: [fast]\n", 1, "'fast' is not a number"),
    ("gamma: {low: 1, high: 2, sharp: true}\n", 1, "unknown key(s) sharp"),
    ("{}\n", 1, "the space is empty"),
    ("gamma: [1.0]\ntau: {low: 0.1, high: 0.2, when: {gamma: []}}\n", 2, "give at least one value"),
]


@pytest.mark.parametrize("text, line, words", BAD_SPACES, ids=[b[2][:30] for b in BAD_SPACES])
def test_a_bad_space_file_is_one_line_naming_its_file_and_line_and_writes_nothing(text, line, words, tmp_path,
                                                                               capsys, data_dir):
    from tune.search import main

    space = tmp_path / "space.yaml"
    space.write_text(text)
    out = tmp_path / "results" / "search"
    code = main(["--dataset", "conll", "--mode", "single", "--smoke-test", "--space", str(space), "--out",
                 str(out), "--data-dir", str(data_dir)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"search: error: {space}:{line}: ") and words in err
    assert not (tmp_path / "results").exists()


def test_a_flag_that_the_space_searches_is_refused(tmp_path, capsys, data_dir):
    from tune.search import main

    code = main(["--dataset", "conll", "--mode", "single", "--smoke-test", "--space", "wide", "--lr", "1e-4",
                 "--out", str(tmp_path / "out"), "--data-dir", str(data_dir)])
    assert code == 2 and "--range lr=0.0001 instead" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_resume_with_another_space_is_refused(tmp_path, capsys, data_dir):
    from tune.search import main

    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({  # what a search with --space paper recorded
        "dataset": "conll", "mode": "single", "targets": ["de"], "preset": "smoke", "num_samples": 4,
        "max_concurrent": 2, "cpus_per_trial": 1.0, "gpus_per_trial": None, "address": None,
        "storage": str(out / "ray"), "objective": "target-dev", "seed": 0, "final_seeds": 2, "out": str(out),
        "data_dir": str(data_dir), "cache_dir": None, "ranges": [], "space": "paper",
        "space_sha256": __import__("tune.space").space.space_hash(space_path("paper", "conll").read_text())}))
    code = main(["--dataset", "conll", "--mode", "single", "--out", str(out), "--resume", "--space", "wide"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--space wide differs" in err


@pytest.mark.slow
def test_the_smoke_search_drew_from_its_space_file(smoke_search, tmp_path):
    """The shared smoke search ran with tests/spaces/every-kind.yaml: its folder keeps the file and its hash,
    and every trial's settings (in Optuna's study and in trials.parquet) come from it."""
    from tune.space import space_hash

    out = smoke_search.out
    assert (out / "space.yaml").read_text() == EVERY_KIND.read_text()
    run = json.loads((out / "run.json").read_text())
    assert run["space"] == str(EVERY_KIND) and run["space_sha256"] == space_hash(EVERY_KIND.read_text())
    storage = optuna.storages.RDBStorage(f"sqlite:///{out / 'optuna.db'}")
    [study] = optuna.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=study.study_name, storage=storage).trials
    assert len(trials) == 4
    for t in trials:
        assert t.distributions["tau"].log and t.distributions["alpha"].step == 0.25
        assert ("proto_dim" in t.params) == (t.params["proto_space"] == "projection")
    rows = {r["optuna_trial"]: r for r in pq.read_table(out / "trials.parquet").to_pylist()}
    for t in trials:
        assert rows[t.number]["tau"] == pytest.approx(t.params["tau"])
        assert rows[t.number]["frozen_layers"] == t.params["frozen_layers"]
        assert rows[t.number]["proto_space"] == t.params["proto_space"]
    from pram.dashboard.importance import study_views

    [view] = study_views(out / "optuna.db", {"de": study.study_name}).values()
    assert view.log_scaled == {"tau", "proto_dim"} or view.log_scaled == {"tau"}  # proto_dim: if ever drawn
    axes = {a.title.text: a.type for a in view.slice_plot.select_xaxes()}
    assert axes["tau"] == "log" and axes["lam"] != "log"
    # the same study in Optuna's journal file (--optuna-storage journal) makes the same view
    from pram.results import open_optuna_storage

    journal = tmp_path / "optuna.journal"
    optuna.copy_study(from_study_name=study.study_name, from_storage=storage, to_storage=open_optuna_storage(journal))
    [again] = study_views(journal, {"de": study.study_name}).values()
    assert again.log_scaled == view.log_scaled
    assert {a.title.text: a.type for a in again.slice_plot.select_xaxes()} == axes

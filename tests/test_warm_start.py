"""--warm-start: a target's study begins with the best settings of the targets searched before it."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState
from searches import draws

from pram.results import open_optuna_storage
from tune.space import make_sampler, search_ranges, space_function
from tune.study import StudySearch, warm_start


def test_a_warm_started_study_first_trains_the_earlier_targets_best_settings_once(tmp_path):
    ranges = search_ranges("conll", ())
    de_best, es_best = draws(ranges, 2, seed=7)  # two settings of the paper space, as earlier targets' bests
    assert de_best != es_best
    storage = open_optuna_storage(tmp_path / "optuna.db")
    name = "conll-multi-nl"

    assert warm_start(name, storage, [("de", de_best), ("es", es_best)]) == ["de", "es"]
    # a driver killed before it asked anything, then --resume: nothing is enqueued twice
    assert warm_start(name, storage, [("de", de_best), ("es", es_best)]) == []

    search = StudySearch(space_function(ranges), metric="target_dev_f1", mode="max", sampler=make_sampler(2, 9),
                         study_name=name, storage=storage, max_concurrent=3)
    asked = [search.suggest(f"trial_{i}") for i in range(3)]
    assert [a.pop("optuna_trial") for a in asked] == [0, 1, 2]
    assert asked[0] == de_best and asked[1] == es_best  # in --targets order
    assert asked[2] not in (de_best, es_best)  # then the sampler's own draws
    for i in range(3):
        search.on_trial_complete(f"trial_{i}", {"target_dev_f1": 40.0 + i, "training_iteration": 3})

    # a resumed search whose warm-start trials have finished (and the same best chosen twice) adds none
    assert warm_start(name, storage, [("de", de_best), ("es", es_best), ("en", de_best)]) == []
    study = optuna.load_study(study_name=name, storage=storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    assert [t.user_attrs.get("warm_start_from") for t in study.trials] == ["de", "es", None]

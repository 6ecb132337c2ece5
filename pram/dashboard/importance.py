"""Hyper-parameter importance of each target's study in a search's optuna.db (fANOVA, Optuna's own).

Optuna is imported here only, when a page is built: `pram` itself does not need it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

MIN_COMPLETE = 3
"""Fewer complete trials than this and pruned ones count too, with their value at the stop."""


def study_importances(db: Path, study_names: dict[str, str]) -> dict[str, tuple[dict[str, float], str] | str]:
    """study_names[target] -> ({param: importance}, what it was computed on), or why there is none.

    The database is read from a copy: opening SQLite through SQLAlchemy may write to it, and the folder may be
    a committed one.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "optuna.db"
        shutil.copyfile(db, copy)
        storage = optuna.storages.RDBStorage(f"sqlite:///{copy}")
        try:
            found = set(optuna.get_all_study_names(storage))
            return {target: _importances(optuna.load_study(study_name=name, storage=storage))
                    if name in found else f"no study {name!r} in optuna.db"
                    for target, name in study_names.items()}
        finally:
            storage.engine.dispose()


def _importances(study) -> tuple[dict[str, float], str] | str:
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances
    from optuna.trial import TrialState, create_trial

    def scored(state):
        return [t for t in study.get_trials(deepcopy=False, states=(state,)) if t.value is not None]

    complete, pruned = scored(TrialState.COMPLETE), scored(TrialState.PRUNED)
    used, basis = complete, f"{len(complete)} complete trials"
    if len(complete) < MIN_COMPLETE:
        used, basis = complete + pruned, f"{len(complete)} complete + {len(pruned)} pruned trials"
    if len(used) < 2:
        return f"too few scored trials for importances ({basis})"
    # A stand-in study in memory, so that pruned trials count as scored ones.
    stand_in = optuna.create_study(direction=study.direction)
    stand_in.add_trials([create_trial(params=t.params, distributions=t.distributions, value=t.value)
                         for t in used])
    try:
        values = get_param_importances(stand_in, evaluator=FanovaImportanceEvaluator(seed=0))
    except (RuntimeError, ValueError, ZeroDivisionError) as e:
        return f"importances could not be computed from {basis}: {e}"
    return dict(values), basis

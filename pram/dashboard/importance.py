"""What each target's study in a search's optuna.db says about the settings: fANOVA importance (Optuna's own),
which settings were drawn on a log scale, and Optuna's slice plot of the objective against each setting.

Optuna is imported here only, when a page is built: `pram` itself does not need it.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

MIN_COMPLETE = 20
"""Complete trials below which no importance is shown. fANOVA fits a random forest of the objective on the
settings and splits its variance among them; with the 4 trials a target of a laptop search the forest fits
noise and still returns numbers that sum to 1. 20 is a choice, not a measurement: more trials than the wide
space has settings (15), so that every setting has been varied at least once against the others. (Optuna's fANOVA
leaves out settings that a trial may not have, such as a conditional proto_dim or warmup.)"""


@dataclass
class StudyView:
    importances: tuple[dict[str, float], str] | str
    """({setting: importance}, what it was computed on), or why there is none."""
    log_scaled: set[str] = field(default_factory=set)
    """Settings drawn on a log scale (their axes are logarithmic)."""
    slice_plot: object | None = None
    """Optuna's plot_slice of the complete trials (a plotly figure), None without any."""


def study_views(db: Path, study_names: dict[str, str]) -> dict[str, StudyView | str]:
    """study_names[target] -> its StudyView, or why there is none.

    db: optuna.db or optuna.journal. It is read from a copy: opening SQLite through SQLAlchemy may write to it
    (a journal, its lock), and the folder may be a committed one.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from pram.results import open_optuna_storage

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / db.name
        shutil.copyfile(db, copy)
        storage = open_optuna_storage(copy)
        try:
            found = set(optuna.get_all_study_names(storage))
            return {target: _view(optuna.load_study(study_name=name, storage=storage))
                    if name in found else f"no study {name!r} in {db.name}"
                    for target, name in study_names.items()}
        finally:
            if hasattr(storage, "engine"):  # SQLite: let the copy go
                storage.engine.dispose()


def _view(study) -> StudyView:
    from optuna.trial import TrialState
    from optuna.visualization import plot_slice

    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    log = {name for t in study.get_trials(deepcopy=False) for name, d in t.distributions.items()
           if getattr(d, "log", False)}
    figure = None
    if complete:
        figure = plot_slice(study, target_name="objective (dev F1, %)")
        figure.update_yaxes(title_text="objective (dev F1, %)")  # every panel's, not only the first
        figure.update_layout(title={"text": f"Slice plot, study {study.study_name}: the objective of each "
                                            f"complete trial against each setting ({len(complete)} trials)"})
    return StudyView(importances(study, complete), log, figure)


def importances(study, complete: list) -> tuple[dict[str, float], str] | str:
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    if len(complete) < MIN_COMPLETE:
        return (f"no importance shown: {len(complete)} complete trial(s), and fANOVA needs at least "
                f"{MIN_COMPLETE} to say more than noise")
    try:
        values = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))
    except (RuntimeError, ValueError, ZeroDivisionError) as e:
        return f"importances could not be computed from {len(complete)} complete trials: {e}"
    return dict(values), f"{len(complete)} complete trials"

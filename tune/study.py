"""Tune and Optuna kept in step: early stops recorded as PRUNED, concurrency, and what a killed driver leaves.

Three gaps of Ray 2.60's OptunaSearch, measured here and closed:
- a trial that ASHA stops is told to Optuna as COMPLETE (with its value at the stop, and PRUNED with a value
  is refused by Optuna, so the trial would stay RUNNING);
- ConcurrencyLimiter saves only the wrapped searcher, so after `Tuner.restore` it ignores the completion of
  trials that were running at the kill, and their Optuna trials stay RUNNING for good;
- an Optuna trial asked just before a kill, after Tune's last snapshot, has no Tune trial after the restore.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import optuna
from optuna.trial import TrialState
from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

ITERATION = "training_iteration"
logger = logging.getLogger(__name__)
STORAGE_NOW: list[str] = []
"""The Optuna file (optuna.db or optuna.journal) of the search this driver runs, set before a stage starts. Tune
pickles the searcher and the scheduler with the experiment, storage included: a search resumed from a folder it
was moved or copied to must write its own file, not the one the pickle names (`StudySearch.restore`,
`StudyHistory`)."""


def outcome(result: dict | None, error: bool, metric: str) -> tuple[TrialState, float | None]:
    """What a trial's last result means to Optuna: FAIL, PRUNED or COMPLETE, and its value."""
    value = (result or {}).get(metric)
    if error or value is None or not math.isfinite(value):
        return TrialState.FAIL, None
    if result.get("pruned"):
        return TrialState.PRUNED, value
    return TrialState.COMPLETE, value


def one_trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    """Trial `number` read alone from the storage (Optuna's storage API; Study exposes no single-trial read by
    number, and `study.trials[number]` deep-copies every trial of the study)."""
    storage = study._storage
    return storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study._study_id, number))


def tell(study: optuna.Study, number: int, result: dict | None, error: bool,
         metric: str) -> TrialState | None:
    """Finish Optuna trial `number` from a Tune result; a trial that is finished already is left alone.

    It reads that one trial from the storage (`one_trial`), where `study.trials[number]` would copy them all, a
    cost per trial that grows with the trials. (cProfile put 82 of the driver's 139 CPU s over 300 simulated
    trials here, but the profiler inflates deep copies: measured without it, this change took the driver from
    112.1 to 109.3 CPU s, 2.5%.)"""
    frozen = one_trial(study, number)
    if frozen.state.is_finished():
        return None
    state, value = outcome(result, error, metric)
    if value is not None and result.get(ITERATION) not in frozen.intermediate_values:
        # Tune does not pass the result that stopped a trial to the searcher; Optuna's PRUNED value is the
        # last intermediate value, so report it first.
        optuna.Trial(study, frozen._trial_id).report(value, result[ITERATION])
    study.tell(number, value if state == TrialState.COMPLETE else None, state=state)
    return state


class StudySearch(OptunaSearch):
    """OptunaSearch with PRUNED early stops, its own (saved) concurrency limit, and recovery after a kill.

    Each suggested config carries `optuna_trial`, the Optuna trial number, so that results map back to it.
    """

    def __init__(self, space, metric: str, mode: str, sampler, study_name: str, storage, max_concurrent: int,
                 sampler_for: Callable[[int], optuna.samplers.BaseSampler] | None = None,
                 max_rounds: int | None = None):
        """sampler_for: a sampler for each new Optuna trial, from its number (the reproducible mode): what a
        trial is proposed then depends only on the study's history and the trial's number, not on how many
        proposals this driver has made (after --resume, a seeded sampler would start its draws again).
        max_rounds: a trial's evaluations when it is not stopped early."""
        super().__init__(space=space, metric=metric, mode=mode, sampler=sampler, study_name=study_name,
                         storage=storage)
        self._max_concurrent = max_concurrent
        self._max_rounds = max_rounds
        self._live: set[str] = set()
        self._sampler_for = sampler_for

    def restore(self, checkpoint_path: str) -> None:
        """Tune's restore, then the study on this search's own Optuna file (STORAGE_NOW), wherever the saved
        searcher's storage pointed: its trials are re-attached to it."""
        super().restore(checkpoint_path)
        if not STORAGE_NOW:
            return
        from pram.results import open_optuna_storage

        self._storage = open_optuna_storage(STORAGE_NOW[0])
        old = self._ot_study  # its sampler holds the restored state of its random numbers
        self._ot_study = optuna.load_study(study_name=old.study_name, storage=self._storage, sampler=old.sampler,
                                           pruner=old.pruner)
        self._ot_trials = {tid: optuna.Trial(self._ot_study, t._trial_id) for tid, t in self._ot_trials.items()}

    def suggest(self, trial_id: str) -> dict | None:
        if len(self._live) >= self._max_concurrent:
            return None  # Tune asks again when a trial ends
        if trial_id not in self._ot_trials:
            orphan = self._orphan()
            if orphan is not None:
                logger.info("re-running Optuna trial %d, left RUNNING by a killed search", orphan.number)
                self._ot_trials[trial_id] = orphan
        if trial_id not in self._ot_trials and self._sampler_for is not None:
            # (the number ask() gives; get_trials without copies: `study.trials` deep-copies them all)
            self._ot_study.sampler = self._sampler_for(len(self._ot_study.get_trials(deepcopy=False)))
        params = super().suggest(trial_id)
        self._live.add(trial_id)
        return {**params, "optuna_trial": self._ot_trials[trial_id].number}

    def _orphan(self) -> optuna.Trial | None:
        """A RUNNING Optuna trial that no Tune trial owns: asked by a killed driver after its last snapshot
        (or before its Tuner saved anything). Re-running it keeps the study at --num-samples trials."""
        owned = {t.number for t in self._ot_trials.values()}
        for frozen in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if frozen.number not in owned:
                return optuna.Trial(self._ot_study, frozen._trial_id)
        return None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        try:
            super().on_trial_result(trial_id, result)
        except (RuntimeError, ValueError) as e:  # a resumed trial re-running a round Optuna has finished
            logger.debug("Optuna ignored a result of %s: %s", trial_id, e)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self._live.discard(trial_id)
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        if result is None and not error:
            result = self._last_reported(self._ot_trials[trial_id].number)
        tell(self._ot_study, self._ot_trials[trial_id].number, result, error, self.metric)
        self._completed_trials.add(trial_id)

    def _last_reported(self, number: int) -> dict | None:
        """The last round a trial reported, as its result: HyperBand stops a trial that is PAUSED at a rung
        (a loser, or one that got to the last round before its bracket), and Tune then tells the searcher
        without a result. Stopped before the last round, it was pruned. None if it never reported."""
        values = one_trial(self._ot_study, number).intermediate_values
        if not values:
            return None
        last = max(values)
        return {self.metric: values[last], ITERATION: last,
                "pruned": self._max_rounds is not None and last < self._max_rounds}

    @property
    def study(self) -> optuna.Study:
        return self._ot_study


class StudyHistory:
    """The values each Optuna trial of a study has reported, by round (picklable: it keeps the storage's file,
    optuna.db or optuna.journal)."""

    def __init__(self, storage_file: str, study_name: str):
        self.storage_file, self.study_name = storage_file, study_name

    def __call__(self, number: int) -> dict[int, float]:
        from pram.results import open_optuna_storage

        storage = open_optuna_storage(STORAGE_NOW[0] if STORAGE_NOW else self.storage_file)
        study = optuna.load_study(study_name=self.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        return dict(trials[number].intermediate_values) if number < len(trials) else {}


class StopsCollapsed:
    """A Tune scheduler that also stops a trial whose target predictions collapsed, once it is past the grace
    period (`_collapse_from`, a round; None: never)."""

    _collapse_from: int | None = None

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        collapsed = self._collapse_from is not None and result.get("collapse") and \
            result.get(ITERATION, 0) >= self._collapse_from
        return TrialScheduler.STOP if collapsed else action


class LiveTrialsFirst:
    """A scheduler's choice of the next trial to start, as Tune's FIFOScheduler makes it, from the live trials.

    FIFOScheduler (and ASHA, which keeps its choice) walks every trial of the experiment, twice, at each step of
    Tune's loop: a cost per step that grows with the trials (at 2,000 simulated trials, 10.5 s of the driver's
    437 s under cProfile, which inflates Python loops: results/BENCHMARKS.md, search-scale). The trials that can
    start are PENDING or PAUSED, and Tune keeps those in its set of live trials (pending, running, paused). Where
    one waits, it is the one Tune's walk would find; where several wait, Tune's own walk chooses among them, in
    its order."""

    def choose_trial_to_run(self, tune_controller):
        live = tune_controller.get_live_trials()
        for status in (Trial.PENDING, Trial.PAUSED):
            waiting = [trial for trial in live if trial.status == status]
            if len(waiting) > 1:
                return super().choose_trial_to_run(tune_controller)
            if waiting:
                return waiting[0]
        return None


class Fifo(LiveTrialsFirst, FIFOScheduler):
    """Tune's FIFOScheduler (every trial runs to its end), choosing from the live trials."""


class RoundsASHA(StopsCollapsed, LiveTrialsFirst, ASHAScheduler):
    """ASHA over evaluation rounds; optionally also stops a trial whose target predictions collapsed.

    Tune does not save a scheduler's state, so after `Tuner.restore` ASHA's rungs would start empty and a
    resumed trial would be judged against nothing. With `history`, every restored trial's past rounds (from
    the Optuna study) are recorded in the rungs again as it is added, so a resumed search stops trials as the
    uninterrupted one would have.
    """

    def __init__(self, max_rounds: int, grace_period: int, prune_collapsed: bool,
                 history: StudyHistory | None = None, **kwargs):
        super().__init__(time_attr=ITERATION, max_t=max_rounds, grace_period=grace_period, **kwargs)
        self._collapse_from = grace_period if prune_collapsed else None
        self._history = history

    def on_trial_add(self, tune_controller, trial) -> None:
        super().on_trial_add(tune_controller, trial)
        number = trial.config.get("optuna_trial")
        # (not `trial.last_result`: for a new trial Tune fills that with defaults, and each look at the study
        # reads all its trials, 0.23 s a trial at 100 trials and growing: benchmarks/search_scale.py)
        if self._history is None or number is None or not trial.has_reported_at_least_once:
            return  # a new trial: nothing to record yet
        bracket = self._trial_info[trial.trial_id]  # (ASHA's own record of the trial's bracket)
        for round_, value in sorted(self._history(number).items()):
            bracket.on_result(trial, round_, self._metric_op * value)


class RoundsHyperBand(StopsCollapsed, HyperBandScheduler):
    """Ray's synchronous HyperBand over evaluation rounds (Li et al. 2018): brackets of trials, each halving
    its trials at its own rungs; a trial that reaches a rung first is PAUSED (its actor ends, and it restarts
    from its checkpoint if it goes on) until its bracket's other trials get there. Reduction factor 3, Ray's
    default: with the laptop search's 3 rounds its brackets are 2 trials trained to the end and 3 trials cut
    to 1 after round 1 (with factor 2, Ray's rounding would stop a bracket's winners at round 2 of 3).

    Tune saves no scheduler state: after --resume the restored trials fill new brackets, so a resumed search
    finishes every trial but may stop different ones than an uninterrupted search would."""

    def __init__(self, max_rounds: int, grace_period: int, prune_collapsed: bool):
        super().__init__(time_attr=ITERATION, max_t=max_rounds, reduction_factor=3)
        self._collapse_from = grace_period if prune_collapsed else None

    def on_trial_remove(self, tune_controller, trial) -> None:
        # A rung's loser stopped while PAUSED: Tune reports no result then, so it is marked here as MarkPruned
        # marks the others (the live view and the trial's saved last result read the mark).
        if trial.status == "PAUSED" and trial.has_reported_at_least_once and \
                trial.last_result.get(ITERATION, 0) < self._max_t_attr:
            trial.last_result["pruned"] = True
        super().on_trial_remove(tune_controller, trial)


class MarkPruned(Callback):
    """Marks the result at which the scheduler stopped a trial before its last round as `pruned`.

    Tune sets `done` on that result before the callbacks see it; a trial that ends by itself reports its last
    result without `done`. The mark is kept in the trial's last result, so the searcher and a restored run
    both see it.
    """

    def __init__(self, max_rounds: int):
        self.max_rounds = max_rounds

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if result.get("done") and result.get(ITERATION, 0) < self.max_rounds:
            result["pruned"] = True


def settle(study: optuna.Study, results: list[tuple[dict, dict, bool]], metric: str) -> dict[int, TrialState]:
    """After a search: finish every Optuna trial still RUNNING from its Tune trial's (config, last result,
    errored); one with no Tune trial at all is marked FAIL. Returns the final state of every trial number."""
    by_number = {config["optuna_trial"]: (result, errored) for config, result, errored in results
                 if "optuna_trial" in config}
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        result, errored = by_number.get(frozen.number, (None, True))
        state = tell(study, frozen.number, result, errored, metric)
        logger.info("Optuna trial %d was left RUNNING; now %s", frozen.number, state.name if state else "-")
    return {t.number: t.state for t in study.get_trials(deepcopy=False)}


def warm_start(study_name: str, storage, earlier: list[tuple[str, dict]]) -> list[str]:
    """--warm-start: enqueue each earlier target's best settings (`earlier`: (target, its best trial's params),
    in --targets order) in this target's study, so that its first trials train them (Optuna's `ask` hands out
    the WAITING trials first, lowest number first). A setting already in the study, waiting, running or finished
    (a resumed search, or two targets that chose the same), is not enqueued again. Returns the targets whose
    settings were enqueued now."""
    study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize", load_if_exists=True)
    added = []
    for target, params in earlier:
        before = len(study.get_trials(deepcopy=False))
        study.enqueue_trial(params, user_attrs={"warm_start_from": target}, skip_if_exists=True)
        if len(study.get_trials(deepcopy=False)) > before:
            added.append(target)
    return added

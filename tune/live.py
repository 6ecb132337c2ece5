"""What a person sees while a search runs: a rich table of the trials, the best so far, time spent and left;
and the table at the end.

`LiveView` is a `tune.Callback`, so it sees every trial in the driver. Tune pickles it with the run's settings
(for `--resume`), so the console and the live display are made in `setup` and left out of the pickle.
"""

from __future__ import annotations

import time

from ray.tune import Callback
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from pram.paper import paper_f1, variant_counterpart
from pram.results import FINAL_VARIANTS, VARIANT_NAMES, find_final, mean_sd

STATE_STYLE = {"RUNNING": "cyan", "TERMINATED": "green", "PRUNED": "yellow", "ERROR": "red", "PENDING": "dim",
               "PAUSED": "dim"}
FINISHED = ("TERMINATED", "PRUNED", "ERROR")


def duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _state(trial) -> str:
    if trial.status == "TERMINATED" and (trial.last_result or {}).get("pruned"):
        return "PRUNED"
    return trial.status


REFRESH_S = 0.5


class LiveView(Callback):
    """One stage of a run: the search of one target (num_trials trials of up to max_rounds evaluations each),
    or its final retraining (one trial per seed)."""

    def __init__(self, title: str, num_trials: int, max_rounds: int, metric: str, params: list[str]):
        self.title, self.num_trials, self.max_rounds = title, num_trials, max_rounds
        self.metric, self.params = metric, params
        self._reset()

    def _reset(self) -> None:
        self._console: Console | None = None
        self._live: Live | None = None
        self._started = time.time()
        self._rounds_at_start: int | None = None
        self._rows: list[dict] = []  # a snapshot of the trials, read by the display's refresh thread
        self._best: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._seen: set[str] = set()  # trials started by this driver
        self._built = float("-inf")  # when on_step_end last rebuilt the snapshot

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._reset()

    def setup(self, **info) -> None:
        self._reset()
        self._console = Console(stderr=True)
        if self._console.is_terminal:
            self._live = Live(self, console=self._console, refresh_per_second=2)
            self._live.start()
        else:
            self._console.print(f"[bold]{self.title}[/bold]: {self.num_trials} trial(s), "
                                f"up to {self.max_rounds} evaluation(s) each")

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if self.metric in result:  # (the test report of a final run has none)
            self._last[trial.trial_id] = result[self.metric]
            self._best[trial.trial_id] = max(result[self.metric], self._best.get(trial.trial_id, -1.0))

    def on_step_end(self, iteration, trials, force: bool = False, **info) -> None:
        """The table's snapshot of the trials, rebuilt at most every REFRESH_S, and only for a live display
        (`force`: the table at the end): it walks every trial, and Tune's loop steps many times a second (at
        1,000 trials, rebuilding it at every step took about 40% of the driver's CPU in a profile, and at 2,000
        trials rebuilding it twice a second without a display still 11 s of 437 under cProfile, which inflates
        Python loops: results/BENCHMARKS.md, search-scale)."""
        if not force and (self._live is None or time.monotonic() - self._built < REFRESH_S):
            return  # (without a live display, only the table at the end reads the snapshot)
        self._built = time.monotonic()
        rows = []
        for trial in trials:
            result = trial.last_result or {}
            if trial.trial_id not in self._last and self.metric in result:  # a trial restored by --resume
                self._last[trial.trial_id] = self._best[trial.trial_id] = result[self.metric]
            rows.append({"id": trial.trial_id, "config": trial.config, "state": _state(trial),
                         "round": self._round(result),
                         "last": self._last.get(trial.trial_id), "best": self._best.get(trial.trial_id)})
        if self._rounds_at_start is None:  # a resumed run: its earlier rounds do not count for the pace
            self._rounds_at_start = sum(r["round"] for r in rows)
        self._rows = rows

    def _round(self, result: dict) -> int:
        rounds = result.get("training_iteration", 0)
        return rounds - 1 if result.get("final") else rounds  # the test report of a final run is no round

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        """A trial that had reported before the search was interrupted says where it goes on from."""
        if self._rounds_at_start is None:  # the rounds done before this driver: not counted in its pace
            self.on_step_end(iteration, trials, force=True)
        first = trial.trial_id not in self._seen
        self._seen.add(trial.trial_id)
        last = (trial.last_result or {}).get("step")
        if not (first and last):
            return
        if trial.checkpoint is not None:
            step = (trial.checkpoint.get_metadata() or {}).get("step", last)
            self._log(f"{self._name(trial.config)} was interrupted after step {last}; it continues from its "
                      f"checkpoint at step {step}")
        elif not trial.last_result.get("final"):
            self._log(f"{self._name(trial.config)} was interrupted after step {last}, before its first "
                      "checkpoint (--checkpoint-every); it starts again from step 0")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        best = self._best.get(trial.trial_id)  # (on_trial_result has seen its last result)
        # Tune calls this before it marks the trial TERMINATED
        state = "pruned" if (trial.last_result or {}).get("pruned") else "finished"
        pace = ""
        if self._live is None:  # no live table (output to a file or a pipe): the stage's progress on this line
            self.on_step_end(iteration, trials, force=True)
            for row in self._rows:  # (Tune marks it finished only after this call)
                if row["id"] == trial.trial_id:
                    row["state"] = "PRUNED" if state == "pruned" else "TERMINATED"
            done = sum(r["state"] in FINISHED for r in self._rows)
            pace = (f" ({done}/{self.num_trials} done, elapsed {duration(time.time() - self._started)}, "
                    f"left {self._time_left(self._rows)})")
        self._log(f"{self._name(trial.config)} {state} after "
                  f"{self._round(trial.last_result or {})} evaluation(s): best {self.metric} "
                  f"{'-' if best is None else f'{best:.2f}'}{pace}")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._log(f"[red]{self._name(trial.config)} failed[/red]: see {trial.path}/error.txt")

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._log(f"[yellow]{self._name(trial.config)} raised; retried from its last checkpoint[/yellow]")

    def on_experiment_end(self, trials, **info) -> None:
        self.on_step_end(0, trials, force=True)
        if self._live is not None:
            self._live.stop()
            self._live = None
        elif self._console is not None:
            self._console.print(self.__rich__())

    def _log(self, message: str) -> None:
        if self._live is not None:
            self._live.console.print(message)
        elif self._console is not None:
            self._console.print(message)

    @staticmethod
    def _name(config: dict) -> str:
        if "optuna_trial" in config:
            return f"trial {config['optuna_trial']}"
        if "candidate" in config:  # a re-scoring run (--rescore-top)
            return f"trial {config['candidate']['rescored_trial']}, seed {config['candidate']['seed']}"
        return ("no-APC " if config.get("apc") == "none" else "") + f"seed {config.get('seed')}"

    def _time_left(self, rows: list[dict]) -> str:
        """Evaluations left (an upper bound: pruning ends trials early) at the pace seen so far."""
        done = sum(r["round"] for r in rows) - (self._rounds_at_start or 0)
        left = (self.num_trials - len(rows)) * self.max_rounds + sum(
            self.max_rounds - r["round"] for r in rows if r["state"] not in FINISHED)
        if left == 0:
            return "0:00:00"
        if done <= 0:
            return "?"
        return "at most " + duration(left * (time.time() - self._started) / done)

    def __rich__(self):
        rows = self._rows
        table = Table(show_edge=False, pad_edge=False)
        metric = self.metric.removesuffix("_f1") + " F1"
        for name in ("trial", "state", "evals", *self.params, metric, "best"):
            table.add_column(name, justify="left" if name in ("trial", "state") else "right")
        for r in rows:
            values = [f"{r['config'][p]:.3g}" if isinstance(r["config"].get(p), float) else
                      str(r["config"].get(p, "-")) for p in self.params]
            table.add_row(self._name(r["config"]), Text(r["state"], style=STATE_STYLE.get(r["state"], "")),
                          f"{r['round']}/{self.max_rounds}", *values,
                          "-" if r["last"] is None else f"{r['last']:.2f}",
                          "-" if r["best"] is None else f"{r['best']:.2f}")
        scored = [r for r in rows if r["best"] is not None]
        top = max(scored, key=lambda r: r["best"], default=None)
        best = "-" if top is None else f"{top['best']:.2f} ({self._name(top['config'])})"
        finished = sum(r["state"] in FINISHED for r in rows)
        header = Text.from_markup(
            f"[bold]{self.title}[/bold]  {finished}/{self.num_trials} done  best {self.metric}: {best}  "
            f"elapsed {duration(time.time() - self._started)}  left {self._time_left(rows)}")
        return Group(header, table)


def summary_table(best: dict, final: list[dict], counts: dict, dataset: str, mode: str,
                  objective: str) -> Table:
    """The end of a run: test F1 of each target's final runs (PRAM, and the no-APC baseline where it ran)
    beside the paper's, and what the search did."""
    variants = [v for v in FINAL_VARIANTS if any(r["variant"] == v for r in final)] or ["both"]
    table = Table(title="test F1 of the best settings (entity-level micro, %; checkpoints chosen on "
                        f"{objective})", title_justify="left")
    for name in ("target", "sources", *(f"{VARIANT_NAMES[v]} here (mean ± sd)" for v in variants),
                 *(f"paper {variant_counterpart(mode, v)}" for v in variants),
                 "trials done / pruned / failed", "best settings"):
        table.add_column(name, justify="right" if name.startswith(("PRAM", "no APC", "paper")) else "left")
    for target, entry in best.items():
        here = [mean_sd(find_final(final, target, v, objective, target)) for v in variants]
        theirs = [f"{value:.2f}" if (value := paper_f1(dataset, mode, v, target)) is not None else
                  "not in the text" if mode == "multi" and v == "both" else "-" for v in variants]
        c = counts.get(target, {})
        settings = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in entry.get("config", {}).items())
        table.add_row(target, ",".join(entry.get("sources", [])), *here, *theirs,
                      f"{c.get('TERMINATED', 0)} / {c.get('PRUNED', 0)} / {c.get('ERROR', 0)}", settings)
    return table

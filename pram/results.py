"""The one owner of a search's results folder (results/README.md lists its files): their names, the Parquet
schemas, the metric each objective maximises, the variants' names, the final-row lookup, the mean ± sd of a
final row (the files themselves are written through pram/files.py). tune/ writes through it; the dashboard and
`pram report` read through it.

Only the files are read, never Ray: a folder committed to git without its `ray/` still makes a page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from pram.config import CATEGORICAL, SEARCHABLE
from pram.errors import UserError, at

RUN, BEST, TRIALS, HISTORY, FINAL = "run.json", "best.json", "trials.parquet", "history.parquet", "final.parquet"
SUMMARY, OPTUNA_DB, DASHBOARD, PAPER_TABLES = "summary.md", "optuna.db", "dashboard.html", "paper-tables.md"
SPACE = "space.yaml"  # the copy of the search space file the search draws from
RUNS = "runs.parquet"  # a `pram experiment` folder's table (its summary is SUMMARY too)
OPTUNA_FILES = {"sqlite": OPTUNA_DB, "journal": "optuna.journal"}
"""--optuna-storage -> the file of the results folder that holds the Optuna studies: SQLite (the default, what
optuna-dashboard and any SQL tool read) or Optuna's journal file (an append-only log: 5.9x less Optuna time per
trial at 1,000 trials in benchmarks/search_scale.py; optuna-dashboard reads it too)."""
REQUIRED = (RUN, BEST, TRIALS, HISTORY)
OBJECTIVE_METRICS = {"target-dev": "target_dev_f1", "source-dev": "source_dev_f1"}
"""The metric a search maximises (and a run selects on) for each --objective / --selection."""
VARIANT_NAMES = {"both": "PRAM", "target": "w/o S-C (--apc target)", "source": "w/o T-C (--apc source)",
                 "none": "no APC (--apc none)"}
"""What a table calls each --apc variant; the final stage of a search runs `both` and `none`, in this order."""
FINAL_VARIANTS = ("both", "none")

TRIAL_COLUMNS = [  # the fixed part of trials.parquet; every metric of the last result follows as float64
    ("target", pa.string()), ("optuna_trial", pa.int64()), ("trial_id", pa.string()), ("status", pa.string()),
    ("stopped_round", pa.int64()), ("stopped_step", pa.int64()), ("objective", pa.float64()),
    ("best_objective", pa.float64()), ("wall_s", pa.float64()), ("cpu_s", pa.float64()),
    ("gpu_s", pa.float64()), ("restarts", pa.int64()), ("node_ip", pa.string()), ("node_id", pa.string()),
    ("gpu_ids", pa.string()), *((name, pa.float64()) for name in SEARCHABLE),
    *((name, pa.string()) for name in CATEGORICAL),
]
RUN_COLUMNS = ("trial_id", "wall_s", "cpu_s", "gpu_s", "restarts", "node_ip", "node_id", "gpu_ids", "elapsed_s",
               "time_total_s", "setup_s", "report_s", "eval_s", "test_s")
"""Columns of trials.parquet (and history.parquet) that say when, where and how often a trial ran, not what it
did: all that two runs of a reproducible search (--deterministic) may differ in."""
HISTORY_COLUMNS = [("target", pa.string()), ("optuna_trial", pa.int64()), ("trial_id", pa.string()),
                   ("round", pa.int64()), ("step", pa.int64()), ("time_total_s", pa.float64())]
FINAL_COLUMNS = [("target", pa.string()), ("variant", pa.string()), ("selection", pa.string()),
                 ("lang", pa.string()), ("role", pa.string()), ("seeds", pa.int64()),
                 ("f1_mean", pa.float64()), ("f1_std", pa.float64()), ("precision_mean", pa.float64()),
                 ("recall_mean", pa.float64()), ("f1_per_seed", pa.list_(pa.float64())),
                 ("checkpoints", pa.list_(pa.string())), ("paper_f1", pa.float64()),
                 ("steps_per_seed", pa.list_(pa.int64())), ("test_sentences", pa.int64())]
"""final.parquet. `steps_per_seed`: the step each seed's kept weights are from; `test_sentences`: how many test
sentences were scored (both absent from folders before whole test sets; read as None)."""


def find_final(rows: list[dict], target: str, variant: str, selection: str, lang: str) -> dict | None:
    """The final.parquet row of one target, variant, selection rule and test language, or None."""
    return next((r for r in rows if (r["target"], r["variant"], r["selection"], r["lang"])
                 == (target, variant, selection, lang)), None)


def mean_sd(row: dict | None, seeds: bool = True) -> str:
    """A final row's test F1 as `mean ± sd (n=seeds, steps a/b)`; `-` for none, no ± with one seed. The steps
    are those each seed's kept weights come from (every PRAM score names the step it was chosen at)."""
    if row is None:
        return "-"
    sd = f" ± {row['f1_std']:.2f}" if row.get("f1_std") is not None else ""
    steps = [s for s in row.get("steps_per_seed") or [] if s is not None]
    at = f", steps {'/'.join(map(str, steps))}" if steps else ""
    return f"{row['f1_mean']:.2f}{sd}" + (f" (n={row['seeds']}{at})" if seeds else "")


def paired_arms(rows: list[dict], target: str, selection: str, lang: str | None = None):
    """PRAM against `--apc none` on one test set, paired by seed (`pram.stats.compare_seeds`), or None where the
    final stage did not run both with the same number of seeds. Each row's f1_per_seed is in seed order and the
    final stage trains both variants on the same seeds, so the lists pair by position."""
    from pram.stats import compare_seeds

    a, b = (find_final(rows, target, v, selection, lang or target) for v in FINAL_VARIANTS)
    if a is None or b is None or len(a["f1_per_seed"]) != len(b["f1_per_seed"]) or not a["f1_per_seed"]:
        return None
    return compare_seeds(list(a["f1_per_seed"]), list(b["f1_per_seed"]))


def verdict_line(target: str, c) -> str:
    """One line a reader can act on: the paired difference with its interval, the verdict, what would settle it."""
    line = f"{target}: PRAM minus no APC {c.interval()}: {c.verdict}"
    if c.aso is not None:
        line += f"; ASO eps_min {c.aso:.2f} (below 0.5: PRAM stochastically ahead)"
    if c.seeds_for_1 is not None and not c.verdict.startswith(("ahead", "behind")):
        line += f"; {c.seeds_for_1} seeds would detect 1 F1 at this spread (80% power)"
    return line


def test_sentences_line(rows: list[dict]) -> str:
    """`Test sentences scored: de 3005, en 3453.` over final rows (one count per language)."""
    counts = {}
    for r in rows:
        counts.setdefault(r["lang"], r.get("test_sentences"))
    cells = ", ".join(f"{lang} {n if n else 'not recorded (an older search: the first 200)'}"
                      for lang, n in counts.items())
    return f"Test sentences scored: {cells}." if counts else ""


@dataclass
class SearchFolder:
    path: Path
    run: dict
    """run.json: the search's settings (dataset, mode, targets, objective, final_seeds, train, ...)."""
    best: dict
    """best.json: per target, the best Optuna trial, its settings, sources and encoder."""
    trials: list[dict]
    history: list[dict]
    final: list[dict]
    """final.parquet's rows; older folders without `variant`, `selection` or `checkpoints` get PRAM, the
    search's objective and none."""

    @property
    def metric(self) -> str:
        """The column the search maximised."""
        return OBJECTIVE_METRICS.get(self.run.get("objective"), "target_dev_f1")

    @property
    def targets(self) -> list[str]:
        return list(self.run.get("targets") or self.best)

    @property
    def encoder(self) -> str:
        found = [e["encoder"] for e in self.best.values() if e and e.get("encoder")]
        return found[0] if found else self.run.get("train", {}).get("encoder", "unknown encoder")

    @property
    def optuna_db(self) -> Path | None:
        """The file of the folder's Optuna studies (optuna.db, or optuna.journal), None without one."""
        return next((self.path / f for f in OPTUNA_FILES.values() if (self.path / f).is_file()), None)

    @property
    def searched(self) -> list[str]:
        """The settings the search drew: the names in its space.yaml (older folders: the paper's five) and its
        --range's, with any other setting that varies across its trials."""
        import yaml

        space = self.path / SPACE
        try:
            names = [str(n).replace("-", "_") for n in yaml.safe_load(space.read_text(encoding="utf-8")) or {}] \
                if space.is_file() else ["tau", "lam", "alpha", "beta", "gamma"]
        except (yaml.YAMLError, AttributeError, TypeError):
            names = []
        names += [r.partition("=")[0].strip().replace("-", "_") for r in self.run.get("ranges", ())]
        order = SEARCHABLE + CATEGORICAL
        names += [p for p in order if len({str(t.get(p)) for t in self.trials}) > 1]
        return sorted(set(names) & set(order), key=order.index)

    def final_row(self, target: str, variant: str, selection: str, lang: str) -> dict | None:
        return find_final(self.final, target, variant, selection, lang)

    def variants(self) -> list[str]:
        """The final stage's variants, PRAM first."""
        found = {r["variant"] for r in self.final}
        return [v for v in FINAL_VARIANTS if v in found] + sorted(found - set(FINAL_VARIANTS))


def search_strategy(run: dict) -> str:
    """How a search chose and stopped its trials, in words (run.json's sampler and scheduler; folders from
    before those flags were TPE with ASHA)."""
    seed = run.get("seed")
    chosen = (f"drawn at random (Optuna's RandomSampler, seed {seed})" if run.get("sampler") == "random"
              else f"proposed by Optuna TPE (seed {seed})")
    stopped = {"fifo": "each trained to the end", "hyperband": "stopped early by HyperBand"}.get(
        run.get("scheduler"), "stopped early by ASHA")
    return f"{chosen} and {stopped}"


def read_folder(path: str | Path) -> SearchFolder:
    """Read a results folder; a folder that is not one is a UserError that names what is missing."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{at(path)}: no such folder: pass the results folder of a search, "
                        "e.g. results/conll-multi-laptop")
    missing = [name for name in REQUIRED if not (path / name).is_file()]
    if missing:
        raise UserError(f"{at(path)}: not the results folder of a search (no {', '.join(missing)}): pass a "
                        "folder that tune/search.py wrote, e.g. results/conll-multi-laptop")
    run, best = _json(path / RUN), _json(path / BEST)
    lacking = [key for key in ("dataset", "mode", "targets", "objective") if key not in run]
    if lacking:
        raise UserError(f"{at(path / RUN)}: no {', '.join(lacking)}: not the settings of a search by "
                        "tune/search.py")
    final = _parquet(path / FINAL) if (path / FINAL).is_file() else []
    for row in final:
        row.setdefault("variant", "both")
        row.setdefault("selection", run.get("objective", "target-dev"))
        row.setdefault("checkpoints", None)
        row.setdefault("steps_per_seed", None)
        row.setdefault("test_sentences", None)
    trials, history = _parquet(path / TRIALS), _parquet(path / HISTORY)
    return SearchFolder(path, run, best, trials, history, final)


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{at(path)}: not valid JSON ({e}): the search that wrote it may have been cut off; "
                        "`tune/search.py --resume` writes it again") from None
    if not isinstance(value, dict):
        raise UserError(f"{at(path)}: expected a JSON object, found {type(value).__name__}")
    return value


def _parquet(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except (OSError, pa.ArrowException) as e:
        raise UserError(f"{at(path)}: not a readable Parquet file ({e}): the search that wrote it may have "
                        "been cut off; `tune/search.py --resume` writes it again") from None


def open_optuna_storage(path: Path):
    """An Optuna storage on a file of OPTUNA_FILES: a journal file for the `.journal` name, else SQLite."""
    import optuna

    if Path(path).suffix == ".journal":
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    return optuna.storages.RDBStorage(f"sqlite:///{path}")


def optuna_dashboard_command(path: Path) -> str:
    """The command that opens optuna-dashboard on a search's file, on this machine only."""
    return f"optuna-dashboard {'sqlite:///' if Path(path).suffix == '.db' else ''}{path} --host 127.0.0.1"

"""The files a search leaves in its results folder: Parquet tables, best.json and summary.md.

trials.parquet   one row per trial: its settings, status, the round it stopped at, time, where it ran (node
                 IP, Ray node id, GPU ids on that node: of its last attempt), every last metric
history.parquet  one row per evaluation of each trial
final.parquet    per target and language: mean and standard deviation of test F1 over the final seeds
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tune.space import SEARCHABLE

# Tune's bookkeeping columns, left out of the tables (the trial's own numbers stay).
TUNE_COLUMNS = {"date", "hostname", "node_ip", "pid", "timestamp", "time_since_restore", "time_this_iter_s",
                "iterations_since_restore", "checkpoint_dir_name", "done", "trial_id", "should_checkpoint",
                "experiment_tag", "config", "pruned", "final", "training_iteration", "starts"}
BOOL_METRICS = {"collapse"}  # reported as 0/1 (Tune's CSV keeps numbers); stored as booleans

TRIAL_COLUMNS = [  # the fixed part of trials.parquet; every metric of the last result follows as float64
    ("target", pa.string()), ("optuna_trial", pa.int64()), ("trial_id", pa.string()), ("status", pa.string()),
    ("stopped_round", pa.int64()), ("stopped_step", pa.int64()), ("objective", pa.float64()),
    ("best_objective", pa.float64()), ("wall_s", pa.float64()), ("cpu_s", pa.float64()),
    ("gpu_s", pa.float64()), ("restarts", pa.int64()), ("node_ip", pa.string()), ("node_id", pa.string()),
    ("gpu_ids", pa.string()), *((name, pa.float64()) for name in SEARCHABLE),
]
HISTORY_COLUMNS = [("target", pa.string()), ("optuna_trial", pa.int64()), ("trial_id", pa.string()),
                   ("round", pa.int64()), ("step", pa.int64()), ("time_total_s", pa.float64())]
FINAL_COLUMNS = [("target", pa.string()), ("lang", pa.string()), ("role", pa.string()), ("seeds", pa.int64()),
                 ("f1_mean", pa.float64()), ("f1_std", pa.float64()), ("precision_mean", pa.float64()),
                 ("recall_mean", pa.float64()), ("f1_per_seed", pa.list_(pa.float64())),
                 ("paper_f1", pa.float64())]

# The paper's PRAM test F1 (mBERT). Table 4's multi-source PRAM row is missing from the paper's text.
PAPER_F1 = {("conll", "single"): {"de": 77.64, "es": 82.06, "nl": 83.15},
            ("wikiann", "single"): {"ar": 57.44, "hi": 74.67, "zh": 55.46}}


@dataclass
class TrialRecord:
    """What the writers need of one Tune trial."""

    target: str
    config: dict
    history: list[dict]
    last: dict
    status: str  # TERMINATED, PRUNED or ERROR
    gpus: float = 0.0
    extra: dict = field(default_factory=dict)


def _float(value) -> float | None:
    if value is None or isinstance(value, str):
        return None
    value = float(value)
    return value if not math.isnan(value) else None


def _metric_names(rows: list[dict], fixed: set[str]) -> list[str]:
    names = {k for row in rows for k, v in row.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return sorted(names - fixed - TUNE_COLUMNS)


def trial_rows(records: list[TrialRecord], objective: str, base: dict) -> list[dict]:
    rows = []
    for rec in records:
        values = [h[objective] for h in rec.history if _float(h.get(objective)) is not None]
        wall = _float(rec.last.get("elapsed_s")) or 0.0
        row = {"target": rec.target, "optuna_trial": rec.config.get("optuna_trial"),
               "trial_id": rec.last.get("trial_id"), "status": rec.status,
               "stopped_round": rec.last.get("training_iteration"), "stopped_step": rec.last.get("step"),
               "objective": _float(rec.last.get(objective)), "best_objective": max(values, default=None),
               "wall_s": wall, "cpu_s": _float(rec.last.get("cpu_s")), "gpu_s": wall * rec.gpus,
               "restarts": max(0, int(rec.last.get("starts", 1)) - 1)}
        row.update({name: _float(rec.config.get(name, base[rec.target].get(name))) for name in SEARCHABLE})
        row.update({k: v for k, v in rec.last.items() if k not in row})
        rows.append(row)
    return rows


def history_rows(records: list[TrialRecord]) -> list[dict]:
    rows = {}
    for rec in records:
        for h in rec.history:
            key = (rec.target, h.get("trial_id"), h.get("training_iteration"))
            # a resumed trial may repeat a round: the later copy wins
            rows[key] = {"target": rec.target, "optuna_trial": rec.config.get("optuna_trial"),
                         "trial_id": h.get("trial_id"), "round": h.get("training_iteration"),
                         "step": h.get("step"), **{k: v for k, v in h.items() if k != "step"}}
    return list(rows.values())


def write_table(path: Path, rows: list[dict], fixed: list[tuple[str, pa.DataType]]) -> Path:
    """Fixed columns with their types, then every other metric as float64 (booleans as bool); null where
    a row lacks one."""
    metrics = _metric_names(rows, {name for name, _ in fixed} | {"step"})
    schema = pa.schema([*fixed, *((m, pa.bool_() if m in BOOL_METRICS else pa.float64()) for m in metrics)])
    columns = {}
    for f in schema:
        values = [row.get(f.name) for row in rows]
        if f.type == pa.float64():
            values = [_float(v) for v in values]
        elif f.type == pa.bool_():
            values = [None if _float(v) is None else bool(v) for v in values]
        columns[f.name] = pa.array(values, type=f.type)
    pq.write_table(pa.table(columns, schema=schema), path)
    return path


def final_rows(dataset: str, mode: str, finals: dict[str, list[dict]],
               roles: dict[str, dict[str, str]]) -> list[dict]:
    """finals[target]: the last result of each final seed, with test_f1_<lang> etc."""
    paper = PAPER_F1.get((dataset, mode), {})
    rows = []
    for target, results in finals.items():
        langs = sorted({k.removeprefix("test_f1_") for r in results for k in r if k.startswith("test_f1_")},
                       key=lambda lang: (lang != target, lang))
        for lang in langs:
            f1 = [r[f"test_f1_{lang}"] for r in results if f"test_f1_{lang}" in r]
            rows.append({"target": target, "lang": lang, "role": roles[target].get(lang, "zero-shot"),
                         "seeds": len(f1), "f1_mean": statistics.fmean(f1),
                         "f1_std": statistics.stdev(f1) if len(f1) > 1 else None,
                         "precision_mean": statistics.fmean(r[f"test_precision_{lang}"] for r in results
                                                            if f"test_precision_{lang}" in r),
                         "recall_mean": statistics.fmean(r[f"test_recall_{lang}"] for r in results
                                                         if f"test_recall_{lang}" in r),
                         "f1_per_seed": f1, "paper_f1": paper.get(lang) if lang == target else None})
    return rows


def write_final(path: Path, rows: list[dict]) -> Path:
    schema = pa.schema(FINAL_COLUMNS)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def write_best(path: Path, best: dict) -> Path:
    path.write_text(json.dumps(best, indent=1) + "\n")
    return path


def summary_markdown(run: dict, best: dict, final: list[dict], counts: dict[str, dict[str, int]]) -> str:
    """A short report: test F1 per target next to the paper's, the chosen settings, what the search did."""
    mode = run["mode"]
    lines = [f"# PRAM search: {run['dataset']}, {mode}-source, preset {run['preset']}", "",
             f"Encoder `{run['encoder']}`; the paper used mBERT, so the numbers are not directly comparable. "
             f"Settings chosen on {run['objective']} F1 by Optuna TPE (seed {run['seed']}) with ASHA early "
             f"stopping; each target's best settings retrained with {run['final_seeds']} seed(s), test F1 "
             "(entity-level micro, %) as mean ± standard deviation.", "",
             "| target | sources | test F1 here | paper PRAM | trials (complete / pruned / error) "
             "| best settings |",
             "|---|---|---|---|---|---|"]
    for target, entry in best.items():
        row = next((r for r in final if r["target"] == target and r["lang"] == target), None)
        here = "-" if row is None else f"{row['f1_mean']:.2f}" + (
            f" ± {row['f1_std']:.2f}" if row["f1_std"] is not None else "") + f" (n={row['seeds']})"
        if mode == "multi":
            paper = "missing from the paper's text (Table 4)"
        else:
            paper_f1 = PAPER_F1.get((run["dataset"], mode), {}).get(target)
            paper = f"{paper_f1:.2f}" if paper_f1 is not None else "-"
        c = counts.get(target, {})
        settings = ", ".join(f"{k}={_fmt(v)}" for k, v in entry.get("config", {}).items())
        lines.append(f"| {target} | {','.join(entry['sources'])} | {here} | {paper} | "
                     f"{c.get('TERMINATED', 0)} / {c.get('PRUNED', 0)} / {c.get('ERROR', 0)} | {settings} |")
    others = [r for r in final if r["lang"] != r["target"]]
    if others:
        lines += ["", "Other test sets of the final models (sources and zero-shot languages):", "",
                  "| target | language | role | test F1 |", "|---|---|---|---|"]
        lines += [f"| {r['target']} | {r['lang']} | {r['role']} | {r['f1_mean']:.2f}"
                  + (f" ± {r['f1_std']:.2f}" if r["f1_std"] is not None else "") + " |" for r in others]
    return "\n".join(lines) + "\n"


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)

"""The files a search leaves in its results folder: Parquet tables, best.json and summary.md.

trials.parquet   one row per trial: its settings, status, the round it stopped at, time, where it ran (node
                 IP, Ray node id, GPU ids on that node: of its last attempt), every last metric
history.parquet  one row per evaluation of each trial
final.parquet    per target, variant (PRAM, the no-APC baseline), selection rule and language: mean and
                 standard deviation of test F1 over the final seeds, and the checkpoint each seed kept
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from pram.config import CATEGORICAL, SEARCHABLE, SELECTIONS
from pram.files import write_json, write_parquet
from pram.paper import paper_f1, variant_counterpart
from pram.results import (
    FINAL_COLUMNS,
    FINAL_VARIANTS,
    VARIANT_NAMES,
    find_final,
    mean_sd,
    paired_arms,
    search_strategy,
    test_sentences_line,
    verdict_line,
)

# Tune's bookkeeping columns, left out of the tables (the trial's own numbers stay).
TUNE_COLUMNS = {"date", "hostname", "node_ip", "pid", "timestamp", "time_since_restore", "time_this_iter_s",
                "iterations_since_restore", "checkpoint_dir_name", "done", "trial_id", "should_checkpoint",
                "experiment_tag", "config", "pruned", "final", "training_iteration", "starts"}
BOOL_METRICS = {"collapse", "selectable"}  # reported as 0/1 (Tune's CSV keeps numbers); stored as booleans

@dataclass
class FinalRun:
    """One run of the final stage."""

    variant: str  # its --apc: both (PRAM) or none (the no-APC baseline)
    seed: int
    metrics: dict  # its last result: test_f1_<lang>_by_<selection> etc.
    checkpoint: str | None  # the checkpoints/ folder Tune kept (relative to the results folder if inside it)


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
        # the best value among evaluations a run may keep (pram's selection rule: none before the target term)
        values = [h[objective] for h in rec.history if _float(h.get(objective)) is not None
                  and h.get("selectable", 1)]
        wall = _float(rec.last.get("elapsed_s")) or 0.0
        row = {"target": rec.target, "optuna_trial": rec.config.get("optuna_trial"),
               "trial_id": rec.last.get("trial_id"), "status": rec.status,
               "stopped_round": rec.last.get("training_iteration"), "stopped_step": rec.last.get("step"),
               "objective": _float(rec.last.get(objective)), "best_objective": max(values, default=None),
               "wall_s": wall, "cpu_s": _float(rec.last.get("cpu_s")), "gpu_s": wall * rec.gpus,
               "restarts": max(0, int(rec.last.get("starts", 1)) - 1)}
        row.update({name: _float(rec.config.get(name, base[rec.target].get(name))) for name in SEARCHABLE})
        row.update({name: rec.config.get(name, base[rec.target].get(name)) for name in CATEGORICAL})
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
    return write_parquet(path, pa.table(columns, schema=schema))


def final_rows(dataset: str, mode: str, finals: dict[str, list[FinalRun]],
               roles: dict[str, dict[str, str]]) -> list[dict]:
    """One row per target, variant, selection rule and test language, over the final runs' seeds."""
    rows = []
    for target, runs in finals.items():
        langs = sorted({k.removeprefix("test_f1_") for r in runs for k in r.metrics
                        if k.startswith("test_f1_") and "_by_" not in k},
                       key=lambda lang: (lang != target, lang))
        for variant in [v for v in FINAL_VARIANTS if any(r.variant == v for r in runs)]:
            seeds = sorted((r for r in runs if r.variant == variant), key=lambda r: r.seed)
            for selection in SELECTIONS:
                for lang in langs:
                    row = _over_seeds(seeds, lang, selection)
                    if row:
                        paper = paper_f1(dataset, mode, variant, lang) if lang == target else None
                        rows.append({"target": target, "variant": variant, "selection": selection,
                                     "lang": lang, "role": roles[target].get(lang, "zero-shot"), **row,
                                     "paper_f1": paper})
    return rows


def _over_seeds(runs: list[FinalRun], lang: str, selection: str) -> dict | None:
    """Test scores on one language of the weights one selection rule kept, over the runs that have them."""
    suffix = "_by_" + selection.replace("-", "_")
    runs = [r for r in runs if f"test_f1_{lang}{suffix}" in r.metrics]
    if not runs:
        return None
    f1 = [r.metrics[f"test_f1_{lang}{suffix}"] for r in runs]
    return {"seeds": len(f1), "f1_mean": statistics.fmean(f1),
            "f1_std": statistics.stdev(f1) if len(f1) > 1 else None,
            "precision_mean": statistics.fmean(r.metrics[f"test_precision_{lang}{suffix}"] for r in runs),
            "recall_mean": statistics.fmean(r.metrics[f"test_recall_{lang}{suffix}"] for r in runs),
            "f1_per_seed": f1,
            "steps_per_seed": [r.metrics.get("selected_step" + suffix) for r in runs],
            "test_sentences": max((r.metrics.get(f"test_sentences_{lang}{suffix}") or 0 for r in runs),
                                  default=0) or None,
            "checkpoints": [r.checkpoint and f"{r.checkpoint}/best-{selection}" for r in runs]}


def write_final(path: Path, rows: list[dict]) -> Path:
    return write_parquet(path, pa.Table.from_pylist(rows, schema=pa.schema(FINAL_COLUMNS)))


def write_best(path: Path, best: dict) -> Path:
    return write_json(path, best)


def summary_markdown(run: dict, best: dict, final: list[dict], counts: dict[str, dict[str, int]],
                     exports: dict[str, str] | None = None) -> str:
    """A short report: test F1 per target next to the paper's, the chosen settings, what the search did."""
    mode, objective = run["mode"], run["objective"]
    variants = [v for v in FINAL_VARIANTS if any(r["variant"] == v for r in final)] or ["both"]
    baseline = ", and the same seeds, steps and data without APC (`--apc none`)" if "none" in variants else ""
    about = (f"Encoder `{run['encoder']}`; the paper used mBERT, so the numbers are not directly comparable. "
             f"Settings chosen on {objective} F1, trials {search_strategy(run)}; each target's best settings "
             f"retrained with {run['final_seeds']} seed(s){baseline}; "
             f"test F1 (entity-level micro, %) of the checkpoint chosen on {objective} F1, as mean ± "
             "standard deviation. Charts: `dashboard.html`; the paper's tables beside ours: "
             "`paper-tables.md`.")
    lines = [f"# PRAM search: {run['dataset']}, {mode}-source, preset {run['preset']}", "", about, "",
             "| target | sources | " + " | ".join(f"{VARIANT_NAMES[v]} here" for v in variants) + " | "
             + " | ".join(f"paper {variant_counterpart(mode, v)}" for v in variants)
             + " | trials (complete / pruned / error) | best settings |",
             "|---|---|" + "---|" * (2 * len(variants)) + "---|---|"]
    for target, entry in best.items():
        here = [mean_sd(find_final(final, target, v, objective, target)) for v in variants]
        paper = [_paper_cell(run, v, target) for v in variants]
        c = counts.get(target, {})
        trials = f"{c.get('TERMINATED', 0)} / {c.get('PRUNED', 0)} / {c.get('ERROR', 0)}"
        settings = ", ".join(f"{k}={_fmt(v)}" for k, v in entry.get("config", {}).items())
        lines.append(f"| {target} | {','.join(entry.get('sources', []))} | " + " | ".join(here + paper)
                     + f" | {trials} | {settings} |")
    shown = [r for r in final if r["variant"] == variants[0] and r["selection"] == objective]
    lines += ["", test_sentences_line(shown)] if shown else []
    lines += verdict_block(final, list(best), objective)
    lines += _selection_lines(final, variants) + _other_lines(final, variants, objective)
    commands = [(t, e) for t, e in best.items() if e and e.get("config") is not None]
    if commands:
        where = os.path.relpath(run["out"]) if run.get("out") else "<this folder>"
        lines += ["", "Train each target's best settings again (longer, on all the data, on a GPU: any setting flag "
                  "after `--settings` overrides that setting alone):", "", "```bash",
                  *(f"pram train --settings {where}/best.json --target {t}" for t, _ in commands), "```"]
        expanded = [f"# {t}: {e['command']}" for t, e in commands if e.get("command")]
        if expanded:
            lines[-1:-1] = ["# the same, flag by flag:", *expanded]
    if exports:
        lines += ["", "Each target's best PRAM model as a HuggingFace folder (under `ray/`, not in git; "
                  '`pipeline("token-classification", model=FOLDER, aggregation_strategy="first")` loads it, and its '
                  "README.md names the seed and the settings):", "",
                  *(f"- {target}: `{folder}`" for target, folder in exports.items())]
    return "\n".join(lines) + "\n"


VERDICTS = ("PRAM against the no-APC baseline on each target's test set, paired by seed (mean difference, its 95% "
            "Student-t interval and the number of pairs; `pram/stats.py`):")


def verdict_block(final: list[dict], targets: list[str], objective: str) -> list[str]:
    """The summary's verdict lines, PRAM against the no-APC baseline per target (none without a baseline)."""
    verdicts = [verdict_line(t, c) for t in targets if (c := paired_arms(final, t, objective)) is not None]
    return ["", VERDICTS, "", *(f"- {v}" for v in verdicts)] if verdicts else []


def _paper_cell(run: dict, variant: str, target: str) -> str:
    value = paper_f1(run["dataset"], run["mode"], variant, target)
    if value is None and run["mode"] == "multi" and variant == "both":
        return "missing from the paper's text (Table 4)"
    return "-" if value is None else f"{value:.2f}"


def _selection_lines(final: list[dict], variants: list[str]) -> list[str]:
    """The checkpoint each selection rule keeps in the same final runs, scored on the target's test set."""
    targets = list(dict.fromkeys(r["target"] for r in final))
    if not targets:
        return []
    lines = ["", ("Model selection: target test F1 of the checkpoint each rule keeps, in the same runs "
                  "(target dev uses target labels, the paper's protocol; source dev is strictly "
                  "zero-resource):"), "",
             "| target | variant | " + " | ".join(f"chosen on {s}" for s in SELECTIONS) + " |",
             "|---|---|" + "---|" * len(SELECTIONS)]
    for target in targets:
        for v in variants:
            cells = [mean_sd(find_final(final, target, v, s, target), seeds=False) for s in SELECTIONS]
            lines.append(f"| {target} | {VARIANT_NAMES[v]} | " + " | ".join(cells) + " |")
    return lines


def _other_lines(final: list[dict], variants: list[str], objective: str) -> list[str]:
    others = [r for r in final if r["lang"] != r["target"] and r["variant"] == variants[0]
              and r["selection"] == objective]
    if not others:
        return []
    lines = ["", "Other test sets of the final models (sources and zero-shot languages):", "",
             "| target | language | role | " + " | ".join(VARIANT_NAMES[v] for v in variants) + " |",
             "|---|---|---|" + "---|" * len(variants)]
    for r in others:
        cells = [mean_sd(find_final(final, r["target"], v, objective, r["lang"]), seeds=False) for v in variants]
        lines.append(f"| {r['target']} | {r['lang']} | {r['role']} | " + " | ".join(cells) + " |")
    return lines


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)

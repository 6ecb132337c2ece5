"""Repeated runs side by side: APC variants x targets x seeds, same steps and data, summarised per language.

`pram experiment --variants both,none --seeds 0,1,2 --targets de` runs every combination (in parallel
processes, each with its share of the cores), then writes to --results:
- `runs.parquet`: one row per run and test language (variant, target, seed, selection, F1, ...),
- `summary.md`: mean and standard deviation of test F1 per language, chosen on target dev and on source dev,
  with the command that made it and the paper's Table 5 beside it.
Runs that finished are not repeated: their metrics.json is read back (so an interrupted experiment resumes).
Rows already in --results/runs.parquet for other (variant, target, seed) are kept, each with the command that
made it: a target can be added later, into the same table, by one more command.
"""

from __future__ import annotations

import json
import os
import statistics
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

from pram.config import SELECTIONS, TrainConfig
from pram.files import write_atomically, write_parquet
from pram.paper import ablation_by_variant
from pram.results import RUNS, SUMMARY, VARIANT_NAMES

# The paper's Table 5 (ablations, single source en, mBERT), variant -> language -> F1, from pram/paper.py.
# w/o C is the BERT-f-like baseline.
PAPER_TABLE5 = {dataset: ablation_by_variant(dataset) for dataset in ("conll", "wikiann")}


def _run_one(config: TrainConfig, threads: int) -> dict:
    import torch

    from pram.logs import quiet_libraries
    from pram.train import train

    quiet_libraries()
    torch.set_num_threads(threads)
    metrics_file = Path(config.out_dir) / "metrics.json"
    if metrics_file.exists():
        final = json.loads(metrics_file.read_text())
        if "selected_by" in final:
            return final
    return train(replace(config, quiet=True, threads=threads), resume=True)


def rows_of(final: dict, variant: str) -> list[dict]:
    config = final["config"]
    rows = []
    for selection in SELECTIONS:
        kept = final["selected_by"][selection]
        for lang, scores in kept["test"].items():
            rows.append({"variant": variant, "target": config["target"], "seed": config["seed"],
                         "selection": selection, "step": kept["step"], "lang": lang,
                         "test_sentences": scores.get("sentences"),
                         "role": "target" if lang == config["target"] else
                         "source" if lang in config["sources"] else "zero-shot",
                         "f1": scores["f1"], "precision": scores["precision"], "recall": scores["recall"],
                         "collapsed": final["collapsed"], "elapsed_s": final["elapsed_s"]})
    return rows


def _mean_sd(values: list[float], form: str) -> str:
    """`mean ± sd`; the mean alone for one value (one seed has no spread to show); empty for none."""
    if len(values) < 2:
        return form.format(values[0]) if values else ""
    return f"{form.format(statistics.mean(values))} ± {statistics.stdev(values):.2f}"


def summary_markdown(rows: list[dict], dataset: str, command: str) -> str:
    """Mean ± std of test F1 per variant and language, for each selection rule, beside the paper's Table 5."""
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    commands = list(dict.fromkeys(r.get("command") or command for r in rows))
    lines = [f"Command: `{commands[0]}`", ""] if len(commands) == 1 else \
        ["Commands (each made the rows of its targets):", "", *(f"- `{c}`" for c in commands), ""]
    for target in dict.fromkeys(r["target"] for r in rows):
        order = {"target": 0, "source": 1, "zero-shot": 2}
        langs = list(dict.fromkeys(r["lang"] for r in sorted(rows, key=lambda r: order[r["role"]])
                                   if r["target"] == target))
        for selection in SELECTIONS:
            lines += [f"### Target {target}, checkpoint chosen on {selection}", "",
                      "| variant | seeds | " + " | ".join(f"{lang} test F1" for lang in langs) +
                      " | steps chosen (by seed) |", "|---|---|" + "---|" * len(langs) + "---|"]
            for v in variants:
                cells = []
                n = 0
                for lang in langs:
                    f1 = [r["f1"] for r in rows if (r["variant"], r["target"], r["selection"], r["lang"])
                          == (v, target, selection, lang)]
                    n = len(f1)
                    cells.append(_mean_sd(f1, "{:.2f}"))
                steps = [str(r["step"]) for r in sorted(rows, key=lambda r: r["seed"])
                         if (r["variant"], r["target"], r["selection"], r["lang"]) == (v, target, selection, target)]
                lines.append(f"| {VARIANT_NAMES.get(v, v)} | {n} | " + " | ".join(cells) + f" | {', '.join(steps)} |")
            lines += ["", "Test sentences scored: " + ", ".join(
                f"{lang} {_sentences(rows, target, lang)}" for lang in langs) + ".", ""]
            lines += paired_lines(rows, target, selection, langs)
    paper = PAPER_TABLE5.get(dataset)
    if paper:
        langs = list(next(iter(paper.values())))
        lines += ["### The paper's Table 5 (mBERT, 20,000 steps, batch 128; single source en)", "",
                  "| variant | " + " | ".join(langs) + " |", "|---|" + "---|" * len(langs)]
        for v, scores in paper.items():
            lines.append(f"| {VARIANT_NAMES[v]} | " + " | ".join(f"{scores[lang]:.2f}" for lang in langs) + " |")
        lines.append("")
    return "\n".join(lines)


def _sentences(rows: list[dict], target: str, lang: str) -> str:
    counts = sorted({r.get("test_sentences") for r in rows if (r["target"], r["lang"]) == (target, lang)},
                    key=lambda c: (c is None, c or 0))
    return " / ".join("not recorded (the first 1,000 before issue 17)" if c is None else str(c) for c in counts)


def paired_lines(rows: list[dict], target: str, selection: str, langs: list[str]) -> list[str]:
    """Each variant minus --apc none, seed by seed: runs with one seed share their batches and initial weights,
    so the paired difference is the sharper test of an effect than two means with their spreads. Each cell: the
    mean difference, its 95% Student-t interval, the number of pairs and the verdict (`pram.stats`)."""
    from pram.stats import compare_seeds

    f1 = {(r["variant"], r["seed"], r["lang"]): r["f1"] for r in rows
          if (r["target"], r["selection"]) == (target, selection)}
    variants = [v for v in dict.fromkeys(r["variant"] for r in rows) if v != "none"]
    if not any(k[0] == "none" for k in f1) or not variants:
        return []
    lines = ["Paired by seed, variant minus `--apc none`: mean difference [95% interval] (pairs), and what it "
             "shows:", "",
             "| variant | " + " | ".join(f"{lang} Δ F1" for lang in langs) + " |",
             "|---|" + "---|" * len(langs)]
    for v in variants:
        cells = []
        for lang in langs:
            seeds = sorted(s for (w, s, la) in f1 if (w, la) == (v, lang) and ("none", s, lang) in f1)
            if not seeds:
                cells.append("")
                continue
            c = compare_seeds([f1[(v, s, lang)] for s in seeds], [f1[("none", s, lang)] for s in seeds])
            cells.append(f"{c.interval()}: {c.verdict}")
        lines.append(f"| {VARIANT_NAMES.get(v, v)} | " + " | ".join(cells) + " |")
    return lines + [""]


def write_figure(rows: list[dict], dataset: str, path: Path) -> None:
    from pram.experiment_figures import experiment_figure

    paper = PAPER_TABLE5.get(dataset) or {}
    targets = ", ".join(dict.fromkeys(r["target"] for r in rows))
    sources = "+".join(dict.fromkeys(r["lang"] for r in rows if r["role"] == "source"))
    experiment_figure(rows, VARIANT_NAMES, paper, path, f"{dataset}: {sources} -> {targets}, test F1")


def run_folder(runs_dir: Path, base: TrainConfig, target: str, variant: str, seed: int) -> Path:
    return runs_dir / f"{base.dataset}-{'+'.join(base.sources)}-to-{target}-{variant}-seed{seed}"


def histories_of(rows: list[dict], runs_dir: Path, base: TrainConfig, target: str) -> dict[str, list[list[dict]]]:
    """variant -> the evaluation history of each seed's run of `target` whose metrics.json is in runs_dir."""
    histories: dict[str, list] = {}
    for variant, seed in dict.fromkeys((r["variant"], r["seed"]) for r in rows if r["target"] == target):
        metrics = run_folder(runs_dir, base, target, variant, seed) / "metrics.json"
        if metrics.exists():
            histories.setdefault(variant, []).append(json.loads(metrics.read_text()).get("history", []))
    return histories


DIAGNOSTIC_COLUMNS = (("q_entropy_target", "H(q) target, nats", 3), ("proto_f1_target", "argmax q F1", 2),
                      ("target_dev_f1", "head F1", 2), ("proto_cos_mean", "prototype cosine", 3),
                      ("grad_ratio_target", "‖∇ β·L_c target‖ / ‖∇ L_sup‖", 3),
                      ("align_cos_target", "cos(source prototype, target class mean)", 3),
                      ("proto_acc_target", "argmax q accuracy", 3), ("js_pq_target", "JS(p, q)", 4))


def diagnostics_lines(histories: dict[str, list[list[dict]]], target: str) -> list[str]:
    """The diagnostics of q at the last evaluation, mean over seeds (target dev of `target`)."""
    from pram.metrics import gradient_ratios

    lines = [f"Diagnostics of q and the alignment at the last evaluation on {target} dev, mean over seeds (README, "
             "*Diagnostics of q*; target dev labels serve these diagnostics only):",
             "", "| variant | runs | " + " | ".join(name for _, name, _ in DIAGNOSTIC_COLUMNS) + " |",
             "|---|---|" + "---|" * len(DIAGNOSTIC_COLUMNS)]
    for variant, runs in histories.items():
        last = [{**run[-1], **gradient_ratios(run[-1])} for run in runs if run and "q_entropy_target" in run[-1]]
        if not last:
            continue
        cells = [f"{statistics.mean(h[key] for h in last):.{digits}f}" if all(key in h for h in last) else ""
                 for key, _, digits in DIAGNOSTIC_COLUMNS]  # (blank: runs from before the alignment figures)
        lines.append(f"| {VARIANT_NAMES.get(variant, variant)} | {len(last)} | " + " | ".join(cells) + " |")
    return [*lines, ""] if len(lines) > 4 else []


def write_diagnostics(rows: list[dict], runs_dir: Path, base: TrainConfig, path: Path) -> list[str]:
    """diagnostics.png: the diagnostics of q of every run of the table whose metrics.json is in runs_dir, one
    picture per target (the first target's, when there are several, is path; the others path-<target>.png).
    Returns the lines of summary.md's diagnostics table."""
    from pram.experiment_figures import diagnostics_figure

    lines = []
    for n, target in enumerate(dict.fromkeys(r["target"] for r in rows)):
        histories = histories_of(rows, runs_dir, base, target)
        out = path if n == 0 else path.with_name(f"{path.stem}-{target}.png")
        sources = "+".join(base.sources)
        diagnostics_figure(histories, VARIANT_NAMES, out, f"{base.dataset}: {sources} -> {target}, diagnostics of q")
        lines += diagnostics_lines(histories, target)
    return lines


def experiment(base: TrainConfig, variants: list[str] | dict[str, dict], targets: list[str], seeds: list[int],
               parallel: int, runs_dir: Path, results_dir: Path, command: str) -> list[dict]:
    """variants: APC sides (`both`, `none`, ...) or a dict from a variant's name to the TrainConfig fields it
    changes (an `--arm`)."""
    if not isinstance(variants, dict):
        variants = {v: {"apc": v} for v in variants}
    from rich.console import Console

    console = Console()
    jobs = {}
    for target in targets:
        for variant in variants:
            for seed in seeds:
                out = run_folder(runs_dir, base, target, variant, seed)
                everyone = dict.fromkeys((*base.eval_languages, base.target, *targets))
                eval_languages = tuple(lang for lang in everyone if lang != target and lang not in base.sources)
                jobs[(variant, target, seed)] = replace(base, **variants[variant], target=target, seed=seed,
                                                        out_dir=str(out), eval_languages=eval_languages)
    threads = max(1, (os.cpu_count() or 1) // parallel)
    console.print(f"{len(jobs)} runs, {parallel} at a time, {threads} thread(s) each; runs under {runs_dir}")
    rows = []
    with ProcessPoolExecutor(parallel, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_run_one, config, threads): key for key, config in jobs.items()}
        for done in as_completed(futures):
            variant, target, seed = futures[done]
            final = done.result()
            rows += [{**row, "command": command} for row in rows_of(final, variant)]
            console.print(f"done: {variant} {target} seed {seed}: {target} test F1 {final['test'][target]['f1']:.2f}"
                          f" ({final['elapsed_s'] / 60:.1f} min)")
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = results_dir / RUNS
    earlier = []  # rows of other runs stay; a rerun of the same run replaces its rows
    if table.exists():
        earlier = [r for r in pq.read_table(table).to_pylist() if (r["variant"], r["target"], r["seed"]) not in jobs]
        rows = [{**r, "command": r.get("command") or "(not recorded)"} for r in earlier] + rows
    order = list(dict.fromkeys([*(r["variant"] for r in earlier), *variants]))  # the earlier table's order first
    rows.sort(key=lambda r: (r["target"], order.index(r["variant"]), r["seed"], r["selection"], r["lang"]))
    results_dir.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for r in rows for k in r))  # an older row may lack a newer column
    write_parquet(table, pa.Table.from_pylist([{k: r.get(k) for k in columns} for r in rows]))
    write_figure(rows, base.dataset, results_dir / "summary.png")
    diagnostics = write_diagnostics(rows, runs_dir, base, results_dir / "diagnostics.png")
    summary = "\n".join([summary_markdown(rows, base.dataset, command), *diagnostics])
    write_atomically(results_dir / SUMMARY, summary)
    print((results_dir / SUMMARY).read_text())
    return rows

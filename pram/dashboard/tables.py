"""paper-tables.md: the paper's Tables 2-6 as printed, with this search's rows beside the paper's where the
search ran the same setting (corpus, single- or multi-source)."""

from __future__ import annotations

import statistics

from pram.paper import PAPER_ENCODER, TABLES, VARIANT_METHODS, PaperTable
from pram.results import SearchFolder, mean_sd

OURS = {"both": "PRAM", "none": "no APC (`--apc none`)"}


def paper_tables_markdown(folder: SearchFolder) -> str:
    run = folder.run
    objective = run.get("objective", "target-dev")
    title = (f"# The paper's tables beside this search ({run['dataset']}, {run['mode']}-source, preset "
             f"{run.get('preset', '?')})")
    about = (f"Test F1 (entity-level micro, %). The paper's rows are as printed in its Tables 2-6, all with "
             f"{PAPER_ENCODER} (bert-base-multilingual-cased, 20,000 steps of batch 128, 5 seeds). Rows "
             f"marked *here* are this search's final runs: encoder `{folder.encoder}`, its own schedule, "
             f"checkpoints chosen on {objective} F1, mean ± standard deviation over seeds: not directly "
             "comparable.")
    lines = [title, "", about, ""]
    for table in TABLES:
        lines += _table(table, folder) + [""]
    return "\n".join(lines)


def _table(table: PaperTable, folder: SearchFolder) -> list[str]:
    same = (table.dataset, table.mode) == (folder.run["dataset"], folder.run["mode"])
    lines = [f"## Table {table.number}: {table.caption}", "",
             "| method | encoder | " + " | ".join(table.columns) + " |",
             "|---|---|" + "---|" * len(table.columns)]
    for method, values in table.rows.items():
        cells = ["(not in the paper's text)" if v is None else f"{v:.2f}" for v in values]
        lines.append(f"| {method} | {PAPER_ENCODER} | " + " | ".join(cells) + " |")
    ours = _our_rows(table, folder) if same else []
    lines += [f"| **{name}, here** | {folder.encoder} | " + " | ".join(cells) + " |" for name, cells in ours]
    if not ours:
        run = folder.run
        lines += ["", f"No row of this search: it is a {run['dataset']} {run['mode']}-source search"
                  + ("" if same else f", the table is {table.dataset} {table.mode}-source") + "."]
    return lines


def _our_rows(table: PaperTable, folder: SearchFolder) -> list[tuple[str, list[str]]]:
    """This search's rows for a table of its own setting."""
    objective = folder.run.get("objective", "target-dev")
    if table.number == "6":  # English test F1: `en` is a model trained on English alone (ours: no APC)
        return [(f"{'en' if v == 'none' else 'en-' + t} ({OURS[v]}, model for {t})",
                 [mean_sd(folder.final_row(t, v, objective, "en"), seeds=False)])
                for t in folder.targets for v in folder.variants() if folder.final_row(t, v, objective, "en")]
    rows = []
    for variant in folder.variants():
        names = VARIANT_METHODS if table.number.startswith("5") else OURS
        name = names.get(variant, variant)
        found = {c: folder.final_row(c, variant, objective, c) for c in table.columns if c != "Avg."}
        if any(found.values()):
            means = [r["f1_mean"] for r in found.values() if r]
            average = f"{statistics.fmean(means):.2f}" if len(means) == len(found) else "-"
            rows.append((name, [mean_sd(found[c], seeds=False) if c != "Avg." else average for c in table.columns]))
    return rows

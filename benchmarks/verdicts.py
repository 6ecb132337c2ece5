"""Every comparison the committed results draw a conclusion from, re-derived with pram/stats.py (issue 46).

    python benchmarks/verdicts.py

Reads the tables in results/ (no training): each `pram experiment` folder's runs.parquet (every variant minus
`--apc none`, paired by seed, on the target's test set, for both selection rules), pooled over the targets of
the two APC verdicts (apc-geometry: de, es, nl; apc-distant: ar, hi, zh), the final stage of each committed
search folder (final.parquet), and the two search comparisons
(search-efficiency: TPE against random search, paired by search seed; search-space: `wide` against `paper`).
Writes results/VERDICTS.md: per comparison the mean paired difference, its 95% Student-t interval and the number
of pairs, the verdict, deepsig's almost-stochastic-order score where each side has 5 or more, and the pairs a
1-F1 difference would need at the spread measured.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pyarrow.parquet as pq

from pram.results import RUNS, SUMMARY, VARIANT_NAMES
from pram.stats import compare_seeds

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
POOLED = {"apc-geometry": ("de", "es", "nl"), "apc-distant": ("ar", "hi", "zh")}


def cells(c) -> list[str]:
    aso = "-" if c.aso is None else f"{c.aso:.2f}"
    need = "-" if c.seeds_for_1 is None else str(c.seeds_for_1)
    return [c.interval(), c.verdict, aso, need]


def target_f1(runs: list[dict], target: str, selection: str) -> dict[tuple[str, int], float]:
    """(variant, seed) -> test F1 on the target of the weights `selection` kept, from runs.parquet rows."""
    return {(r["variant"], r["seed"]): r["f1"] for r in runs
            if (r["target"], r["selection"], r["lang"]) == (target, selection, target)}


def experiment_rows(under: Path = RESULTS) -> list[list[str]]:
    rows = []
    for table in sorted(under.glob(f"**/{RUNS}")):
        runs = pq.read_table(table).to_pylist()
        folder = str(table.parent.relative_to(RESULTS))
        for target in dict.fromkeys(r["target"] for r in runs):
            for selection in ("target-dev", "source-dev"):
                f1 = target_f1(runs, target, selection)
                for variant in dict.fromkeys(v for v, _ in f1):
                    seeds = sorted(s for v, s in f1 if v == variant and ("none", s) in f1)
                    if variant == "none" or not seeds:
                        continue
                    c = compare_seeds([f1[(variant, s)] for s in seeds], [f1[("none", s)] for s in seeds])
                    rows.append([f"`{folder}`", target, selection, VARIANT_NAMES.get(variant, variant), *cells(c)])
    return rows


def pooled_rows() -> list[list[str]]:
    rows = []
    for folder, targets in POOLED.items():
        for selection in ("target-dev", "source-dev"):
            a, b = [], []
            for target in targets:
                runs = pq.read_table(RESULTS / folder / target / RUNS).to_pylist()
                f1 = target_f1(runs, target, selection)
                seeds = sorted(s for v, s in f1 if v == "both" and ("none", s) in f1)
                a += [f1[("both", s)] for s in seeds]
                b += [f1[("none", s)] for s in seeds]
            c = compare_seeds(a, b)
            rows.append([f"`{folder}`", "+".join(targets), selection, "PRAM", *cells(c)])
    return rows


def final_stage_rows() -> list[list[str]]:
    """The final stage of each committed search folder: PRAM against its no-APC baseline, paired by seed."""
    from pram.results import FINAL, paired_arms

    rows = []
    for final in sorted(RESULTS.glob(f"*/{FINAL}")):
        table = pq.read_table(final).to_pylist()
        if not any(r["variant"] == "none" for r in table):
            continue
        folder = str(final.parent.relative_to(RESULTS))
        for target in dict.fromkeys(r["target"] for r in table):
            for selection in ("target-dev", "source-dev"):
                c = paired_arms(table, target, selection)
                if c is not None:
                    rows.append([f"`{folder}`", target, selection, "PRAM", *cells(c)])
    return rows


def search_rows() -> list[list[str]]:
    rows = []
    arms = {}
    for path in sorted((RESULTS / "search-efficiency").glob("*.json")):
        found = json.loads(path.read_text())
        arms[(found["arm"], found["seed"])] = found
    seeds = sorted(s for arm, s in arms if arm == "tpe" and ("random", s) in arms)
    for name, key in (("best dev F1", lambda r: max(r["values"])), ("test F1 of the chosen setting",
                                                                     lambda r: r["test_f1"])):
        c = compare_seeds([key(arms[("tpe", s)]) for s in seeds], [key(arms[("random", s)]) for s in seeds])
        rows.append(["`search-efficiency`", "de", name, "TPE minus random search", *cells(c)])
    spaces = {}
    for path in sorted((RESULTS / "search-space" / "searches").glob("*.json")):
        found = json.loads(path.read_text())
        spaces[(found["space"], found["seed"])] = found
    seeds = sorted(s for space, s in spaces if space == "wide" and ("paper", s) in spaces)
    for name, key in (("best dev F1", lambda r: r["best_dev_f1"]),
                      ("test F1 of the chosen setting", lambda r: statistics.fmean(r["test_f1"]))):
        c = compare_seeds([key(spaces[("wide", s)]) for s in seeds], [key(spaces[("paper", s)]) for s in seeds])
        rows.append(["`search-space`", "de", name, "`wide` minus `paper`", *cells(c)])
    return rows


OLD_PAIRED = "Paired by seed, variant minus `--apc none` (mean ± std of the differences):"


def refresh_summaries() -> list[str]:
    """The paired tables of each committed `pram experiment` summary.md, written again with intervals and
    verdicts (pram.experiment.paired_lines) from its runs.parquet; the rest of the file is left as it was (its
    diagnostics were drawn from runs that are not committed). Returns the files changed."""
    import re

    from pram.experiment import paired_lines

    changed = []
    for table in sorted(RESULTS.glob(f"**/{RUNS}")):
        summary = table.parent / SUMMARY
        if not summary.is_file() or OLD_PAIRED not in summary.read_text(encoding="utf-8"):
            continue
        rows = pq.read_table(table).to_pylist()
        lines = summary.read_text(encoding="utf-8").split("\n")
        out, heading, i = [], None, 0
        while i < len(lines):
            found = re.match(r"### Target (\S+), checkpoint chosen on (\S+)$", lines[i])
            heading = (found.group(1), found.group(2)) if found else heading
            if lines[i] != OLD_PAIRED:
                out.append(lines[i])
                i += 1
                continue
            header = lines[i + 2]
            langs = [c.strip().removesuffix(" Δ F1") for c in header.strip("|").split("|")[2:]]
            end = i + 1
            while end < len(lines) and not (lines[end] == "" and lines[end - 1].startswith("|")):
                end += 1
            out += paired_lines(rows, heading[0], heading[1], langs)[:-1]
            i = end
        summary.write_text("\n".join(out), encoding="utf-8")
        changed.append(str(summary.relative_to(RESULTS)))
    return changed


def refresh_search_summaries() -> list[str]:
    """Each committed search's summary.md from before its verdict lines: they go in after its first table (the
    sentence count line, where there is one), made from its final.parquet as a search writes them now
    (tune.results.verdict_block). Returns the files changed."""
    from pram.results import FINAL, RUN
    from tune.results import VERDICTS, verdict_block

    changed = []
    for final in sorted(RESULTS.glob(f"*/{FINAL}")):
        summary = final.parent / SUMMARY
        text = summary.read_text(encoding="utf-8") if summary.is_file() else VERDICTS
        if VERDICTS in text:
            continue
        rows = pq.read_table(final).to_pylist()
        objective = json.loads((final.parent / RUN).read_text())["objective"]
        block = verdict_block(rows, list(dict.fromkeys(r["target"] for r in rows)), objective)
        if not block:
            continue
        lines = text.split("\n")
        first_table = next(i for i, line in enumerate(lines) if line.startswith("|"))
        end = next(i for i in range(first_table, len(lines)) if not lines[i].startswith("|"))
        if lines[end + 1].startswith("Test sentences scored"):
            end += 2
        summary.write_text("\n".join(lines[:end] + block + lines[end:]), encoding="utf-8")
        changed.append(str(summary.relative_to(RESULTS)))
    return changed


def refresh_readmes(header: list[str]) -> list[str]:
    """Each results folder whose README.md discusses `pram experiment` runs (a runs.parquet under it) opens with
    this folder's rows of the verdict table, between markers that a later run replaces. Returns the files."""
    import re

    from common import table

    changed = []
    for readme in sorted(RESULTS.glob("*/README.md")):
        rows = experiment_rows(readme.parent)
        if not rows:
            continue
        block = "\n".join([
            "<!-- verdicts -->",
            "> **How sure each comparison is**, from this folder's runs.parquet by `python benchmarks/verdicts.py` "
            "(all folders: [VERDICTS.md](../VERDICTS.md)); where the text below gives a paired difference as "
            "mean ± sd, the sd is the spread of the differences, not an interval.",
            "",
            table(header, rows),
            "<!-- /verdicts -->"])
        text = readme.read_text(encoding="utf-8")
        if "<!-- verdicts -->" in text:
            text = re.sub(r"<!-- verdicts -->.*?<!-- /verdicts -->", lambda _, new=block: new, text, flags=re.DOTALL)
        else:
            title, _, rest = text.partition("\n")
            text = f"{title}\n\n{block}\n{rest}"
        readme.write_text(text, encoding="utf-8")
        changed.append(str(readme.relative_to(RESULTS)))
    return changed


def main() -> None:
    from common import command_line, table

    header = ["folder", "target", "selection or figure", "arm (minus `--apc none` unless named)",
              "mean difference [95% interval] (pairs)", "verdict", "ASO eps_min (5+ a side)",
              "pairs for 1 F1 (80% power)"]
    text = "\n\n".join([
        "# Verdicts, with how sure each is",
        f"Made by `{command_line()}` from the committed tables (no training). Each row pairs two arms by seed "
        "(runs with one seed share their batches and initial weights; searches with one search seed their "
        "sampler's start), takes the mean of the differences with its 95% Student-t interval, and says "
        "`ahead` or `behind` only when the interval excludes 0. ASO is deepsig's almost-stochastic-order "
        "eps_min of the first arm over the second (below 0.5: the first is stochastically ahead; computed from "
        "5 runs a side). The last column is the number of pairs a paired t-test would need to detect a "
        "1-F1 difference with 80% power at the spread of these differences.",
        "## APC against `--apc none`, per experiment and target (test F1 on the target)",
        table(header, experiment_rows()),
        "## The two APC verdicts pooled over their targets (pairs from different targets: a summary, not "
        "independent draws of one experiment)",
        table(header, pooled_rows()),
        "## PRAM against the baseline in the final stage of each committed search (2 seeds each)",
        table(header, final_stage_rows()),
        "## The search comparisons",
        table(header, search_rows()),
    ])
    (RESULTS / "VERDICTS.md").write_text(text + "\n")
    print(text)
    print("paired tables written again with intervals:", ", ".join(refresh_summaries()) or "none")
    print("verdict lines added to search summaries:", ", ".join(refresh_search_summaries()) or "none")
    print("verdict tables at the top of:", ", ".join(refresh_readmes(header)) or "none")


if __name__ == "__main__":
    main()

"""Where a finished search's wall time went, stage by stage, and what one of its runs spends on what.

    python benchmarks/search_stages.py results/conll-multi-laptop --wall 1:02:03
    python benchmarks/search_stages.py results/conll-multi-laptop --wall 1:02:03 --components de

Reads the folder a search wrote (no training): for each stage (each target's search, re-scoring and final
stage, in the order they ran) its runs, its wall time from the first run's start to the last run's end, the
mean time of a run, and the slot-seconds it left idle (slots x wall minus the runs' own time). The wall time the
search printed at its end (`--wall`) gives what lay outside the stages: Ray's start, the data, the exports and
the result files.

--components TARGET trains that target's best settings once more as its final stage does (`pram train
--settings best.json`, seed 0, one thread), beside the same run with `--apc none`, two at a time as the search
runs them, and splits each run's time into set-up, training steps, tagging the dev sets at each evaluation
(`eval_s`) and tagging the test set (`test_s`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from common import table, timed_together, write_section

from pram.results import BEST, RUN


def seconds(text: str) -> float:
    h, m, s = (int(x) for x in text.split(":"))
    return 3600 * h + 60 * m + s


def clock(value: float) -> str:
    value = round(value)
    return f"{value // 3600}:{value // 60 % 60:02d}:{value % 60:02d}"


def runs_of(stage: Path) -> list[dict]:
    """Each run of a Tune experiment folder: its start and end (epoch seconds) from its result.json."""
    found = []
    for result in sorted(stage.glob("*/result.json")):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        if not rows:
            continue
        last = rows[-1]
        found.append({"start": rows[0]["timestamp"] - rows[0]["time_this_iter_s"], "end": last["timestamp"],
                      "seconds": last["time_total_s"], "evaluations": sum("target_dev_f1" in r for r in rows)})
    return found


def stage_rows(out: Path, slots: int) -> tuple[list[list], float]:
    run = json.loads((out / RUN).read_text())
    experiments = Path(run["storage"]) if "://" not in run["storage"] else out / "ray" / "experiments"
    rows, inside = [], 0.0
    for target in run["targets"]:
        for kind in ("search", "rescore", "final"):
            runs = runs_of(experiments / f"{kind}-{target}")
            if not runs:
                continue
            wall = max(r["end"] for r in runs) - min(r["start"] for r in runs)
            busy = sum(r["seconds"] for r in runs)
            inside += wall
            rows.append([f"{kind} {target}", len(runs), clock(wall), f"{busy / len(runs) / 60:.1f}",
                         f"{statistics.fmean(r['evaluations'] for r in runs):.1f}",
                         f"{max(0.0, slots * wall - busy) / 60:.1f}"])
    return rows, inside


def components(out: Path, target: str) -> list[list]:
    """One final-stage pair (PRAM, no APC) trained again two at a time; each run's time split by what it did."""
    best = out / BEST
    with tempfile.TemporaryDirectory(prefix="stages-") as tmp:
        argvs = {variant: [sys.executable, "-m", "pram.cli", "train", "--settings", str(best), "--target", target,
                           "--seed", "0", "--threads", "1", "--apc", variant, "--out", f"{tmp}/{variant}"]
                 for variant in ("both", "none")}
        wall = timed_together(list(argvs.values()), Path.cwd())
        rows = []
        for variant in argvs:
            m = json.loads((Path(tmp) / variant / "metrics.json").read_text())
            last = m["history"][-1]
            evals = sum(h["eval_s"] for h in m["history"])
            setup = last["setup_s"]
            steps = last["elapsed_s"] - setup - evals
            rows.append([{"both": "PRAM", "none": "no APC"}[variant], f"{setup:.0f}", f"{steps:.0f}",
                         f"{steps / m['steps']:.2f}", f"{evals:.0f} ({len(m['history'])} evaluations)",
                         f"{m['test_s']:.0f}", f"{last['elapsed_s'] + m['test_s']:.0f}"])
        rows.append(["both, side by side (wall)", "", "", "", "", "", f"{wall:.0f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="a finished search's folder")
    parser.add_argument("--wall", required=True, metavar="H:MM:SS",
                        help="the wall time the search printed at its end")
    parser.add_argument("--slots", type=int, default=2, help="runs the search ran at once (default: 2)")
    parser.add_argument("--components", metavar="TARGET", help="also time one final-stage pair of this target")
    parser.add_argument("--note", default="", help="a sentence on where and how the search ran")
    args = parser.parse_args()
    rows, inside = stage_rows(args.out, args.slots)
    total = seconds(args.wall)
    rows.append(["outside the stages (Ray's start, data, exports, result files)", "", clock(total - inside), "",
                 "", ""])
    rows.append(["the search, as it printed", "", args.wall, "", "", ""])
    body = [args.note, table(["stage", "runs", "wall (h:mm:ss)", "mean minutes a run", "evaluations a run",
                              f"idle slot-minutes ({args.slots} slots)"], rows)]
    if args.components:
        body.append(table(["final run, " + args.components, "set-up s", "training steps s", "s a step",
                           "tagging dev sets s", "tagging the test set s", "all s"],
                          components(args.out, args.components)))
    write_section("search-stages", "Where the laptop search's time goes, stage by stage", "\n\n".join(body),
                  threads=1)


if __name__ == "__main__":
    main()

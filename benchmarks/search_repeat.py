"""What a seeded search repeats: the same search run several times in the default mode and with --deterministic.

    python benchmarks/search_repeat.py [--repeats 3] [--preset smoke] [-- EXTRA SEARCH FLAGS]

Each repeat is `tune/search.py --dataset conll --mode multi --targets de --seed 0` into a folder of its own. For
each mode the table says, over the repeats, whether the suggested settings, ASHA's decisions (how far each
trial ran), the best trial and the final table were the same as in the first repeat, the largest difference
in a final test F1, and the mean wall time; the ratio of the wall times is what the reproducible mode costs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
from common import table, write_section

from pram.results import FINAL

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("tau", "lam", "alpha", "beta", "gamma")


def search(out: Path, preset: str, extra: list[str]) -> float:
    started = time.perf_counter()
    flags = ["--smoke-test"] if preset == "smoke" else ["--preset", preset]
    subprocess.run([sys.executable, "tune/search.py", "--dataset", "conll", "--mode", "multi", "--targets", "de",
                    "--seed", "0", *flags, "--out", str(out), *extra], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def outcome(out: Path) -> dict:
    trials = sorted(pq.read_table(out / "trials.parquet").to_pylist(), key=lambda t: t["optuna_trial"])
    final = {(r["variant"], r["selection"], r["lang"]): r["f1_per_seed"]
             for r in pq.read_table(out / FINAL).to_pylist()}
    best = max(trials, key=lambda t: t["best_objective"] or -1)["optuna_trial"]
    return {"settings": [tuple(round(t[s], 12) if t[s] is not None else None for s in SETTINGS) for t in trials],
            "stops": [(t["status"], t["stopped_round"]) for t in trials],
            "best": best, "final": final}


def same(runs: list[tuple[float, dict]], key: str) -> str:
    """How many repeats had the first one's `key`, of how many."""
    first = runs[0][1][key]
    return f"{sum(r[key] == first for _, r in runs)}/{len(runs)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--preset", default="smoke")
    parser.add_argument("extra", nargs="*", help="more flags for every search (after --)")
    args = parser.parse_args()
    rows, seconds = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode, flags in (("default", []), ("--deterministic", ["--deterministic"])):
            runs = []
            for i in range(args.repeats):
                out = Path(tmp) / f"{mode.strip('-')}-{i}"
                wall = search(out, args.preset, [*flags, *args.extra])
                runs.append((wall, outcome(out)))
                print(mode, i, f"{wall:.0f}s", runs[-1][1]["stops"], flush=True)
            first = runs[0][1]
            gap = max(abs(a - b) for _, r in runs for key in first["final"]
                      for a, b in zip(r["final"].get(key, []), first["final"][key]))
            seconds[mode] = sum(w for w, _ in runs) / len(runs)
            rows.append([mode, *(same(runs, key) for key in ("settings", "stops", "best", "final")), f"{gap:.2f}",
                         f"{seconds[mode]:.0f}"])
    body = table(["mode", "same settings", "same early stops", "same best trial", "same final table",
                  "largest final F1 difference", "mean wall s"], rows)
    flags = " ".join([*([] if "--mode" in args.extra else ["--mode multi"]), *args.extra])
    body += (f"\n\n{args.repeats} repeats of the seeded `{args.preset}` search (CoNLL, target de, `{flags}`), "
             f"each counted against the first. The reproducible mode took "
             f"**{seconds['--deterministic'] / seconds['default']:.2f}x** the default's wall time.")
    write_section(f"search-repeat-{args.preset}", f"What a seeded search repeats ({args.preset} preset)", body)


if __name__ == "__main__":
    main()

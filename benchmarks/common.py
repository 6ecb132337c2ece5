"""What every benchmark shares: the environment line, peak memory, and writing its section of BENCHMARKS.md.

Each benchmark owns one section of `results/BENCHMARKS.md`, between `<!-- name -->` and `<!-- /name -->`, and
rewrites only that section, so the file keeps the latest run of every benchmark with the command that made it.
"""

from __future__ import annotations

import os
import platform
import re
import resource
import shlex
import statistics
import sys
import time
from pathlib import Path

from pram.results import RUN

REPORT = Path(__file__).resolve().parent.parent / "results" / "BENCHMARKS.md"
HEADER = """# Benchmarks

Each section is written by the script it names, which measures a ratio against a baseline in one run on this
project's machine (2 CPU cores, no GPU, the offline `me5-small` encoder unless it says otherwise). Run a script
again to replace its section. Figures from a busy machine say so.

"""


def peak_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def command_line() -> str:
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0]), *sys.argv[1:]])


def environment(threads: int | None = None) -> str:
    import torch

    load = os.getloadavg()[0]
    return (f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
            + (f", {threads} torch thread(s)" if threads else "") + f", load average {load:.1f} at the end")


def write_section(name: str, title: str, body: str, threads: int | None = None) -> None:
    """Replace (or append) this benchmark's section of results/BENCHMARKS.md, atomically."""
    section = (f"<!-- {name} -->\n## {title}\n\nCommand: `{command_line()}`  \n"
               f"Run: {environment(threads)}.\n\n{body.strip()}\n<!-- /{name} -->")
    text = REPORT.read_text() if REPORT.exists() else HEADER
    pattern = re.compile(rf"<!-- {re.escape(name)} -->.*?<!-- /{re.escape(name)} -->", re.DOTALL)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    partial = REPORT.with_suffix(".md.partial")
    partial.write_text(text)
    partial.replace(REPORT)
    print(section)


def timed(argv: list[str], cwd: Path) -> float:
    """Run a command to its end; its wall seconds. A failure ends the benchmark with the command's stderr."""
    return timed_together([argv], cwd)


def timed_together(argvs: list[list[str]], cwd: Path) -> float:
    """Start the commands at once; the wall seconds until the last ends. A failure ends the benchmark with the
    command's stderr."""
    import subprocess

    started = time.perf_counter()
    running = [subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for argv in argvs]
    errors = [p.communicate()[1] for p in running]
    wall = time.perf_counter() - started
    for argv, p, err in zip(argvs, running, errors, strict=True):
        if p.returncode:
            sys.exit(f"{' '.join(argv)} failed:\n{err[-3000:]}")
    return wall


def resumable_search(out: Path, dataset: str, mode: str, flags: list[str], capture: bool = True) -> float:
    """Run `tune/search.py --dataset D --mode M --out OUT FLAGS` from the repository root, or `--resume` it
    where an earlier session left its run.json; its wall seconds, summed over the sessions that ran it (kept in
    OUT/wall.json). A failure ends the benchmark (with the command's stderr when it is captured)."""
    import json
    import subprocess

    clock = out / "wall.json"
    spent = json.loads(clock.read_text())["seconds"] if clock.is_file() else 0.0
    argv = [sys.executable, "tune/search.py", "--dataset", dataset, "--mode", mode, "--out", str(out)]
    argv += ["--resume"] if (out / RUN).is_file() else flags
    started = time.perf_counter()
    try:
        done = subprocess.run(argv, cwd=REPORT.parents[1], capture_output=capture, text=True, check=False)
    finally:
        out.mkdir(parents=True, exist_ok=True)
        clock.write_text(json.dumps({"seconds": spent + time.perf_counter() - started}))
    if done.returncode:
        sys.exit(f"{' '.join(argv)} failed (exit {done.returncode})" + (f":\n{done.stderr[-3000:]}" if capture else ""))
    return spent + time.perf_counter() - started


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def mean_sd(values: list[float]) -> str:
    """`mean ± sd` of some figures, `mean` alone for one, `-` for none."""
    if not values:
        return "-"
    return f"{statistics.fmean(values):.2f}" + (f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else "")

"""Peak memory of multi-source PRAM training steps at a small batch against the paper's batch of 128.

    python benchmarks/multi_source_memory.py [--batch-sizes 16,128] [--steps 3] [--out results/multi-source-memory.md]

Each batch size runs in its own process (so peaks do not mix): the laptop preset, CoNLL sources en, es, nl and
target de, the target term on from step 0 (the costliest step: four forward and backward passes). It records
the peak resident memory of the process after loading data and model, and after the training steps; the
difference is what the batch costs. Writes a Markdown report with the command that made it.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def one(batch_size: int, steps: int, encoder: str) -> dict:
    import torch

    from pram.cli import quiet_libraries
    from pram.config import preset
    from pram.inputs import prepare_data
    from pram.objective import Banks
    from pram.train import build_model, train_step

    quiet_libraries()
    config = preset("laptop", sources=("en", "es", "nl"), target="de", batch_size=batch_size, beta_start=0.0,
                    encoder=encoder, eval_sentences=10, quiet=True)
    data = prepare_data(config)
    model = build_model(config, data, "cpu")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    banks = Banks.empty(3, len(data.label_names), model.encoder.config.hidden_size)
    before = peak_mib()
    started = time.perf_counter()
    for step in range(steps):
        banks, _ = train_step(model, optimizer, banks, data, config, step, "cpu")
    return {"batch_size": batch_size, "steps": steps, "peak_before_mib": before, "peak_mib": peak_mib(),
            "s_per_step": (time.perf_counter() - started) / steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", default="16,128", help="sentences per source language per step")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--encoder", default="me5-small")
    parser.add_argument("--out", default="results/multi-source-memory.md")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.one, args.steps, args.encoder)))
        return
    rows = []
    for b in (int(x) for x in args.batch_sizes.split(",")):
        done = subprocess.run([sys.executable, __file__, "--one", str(b), "--steps", str(args.steps),
                               "--encoder", args.encoder], capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    small, large = rows[0], rows[-1]
    command = "python benchmarks/multi_source_memory.py " + " ".join(sys.argv[1:])
    lines = [
        "# Multi-source PRAM: peak memory at a small batch against the paper's 128",
        "",
        f"Command: `{command.strip()}` ({time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
        f"CPU, encoder {args.encoder}, sources en+es+nl, target de, target term on).",
        "",
        "| sentences per source per step | peak RSS after load (MiB) | peak RSS in training (MiB) | "
        "training adds (MiB) | s/step |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['batch_size']} | {r['peak_before_mib']:.0f} | {r['peak_mib']:.0f} | "
                     f"{r['peak_mib'] - r['peak_before_mib']:.0f} | {r['s_per_step']:.1f} |")
    added = lambda r: r["peak_mib"] - r["peak_before_mib"]  # noqa: E731
    lines += ["", f"Batch {large['batch_size']} needs {added(large) / max(1.0, added(small)):.1f} times the "
              f"training memory of batch {small['batch_size']} "
              f"({large['peak_mib'] / small['peak_mib']:.2f} times the whole process's peak).", ""]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

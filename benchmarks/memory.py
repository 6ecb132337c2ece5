"""Memory: peak resident memory of single- and multi-source PRAM training at the laptop preset, and of
multi-source training at the paper's batch of 128.

    python benchmarks/memory.py [--rows en:16,en+es+nl:16,en+es+nl:128] [--steps 2]

Each row (source languages : sentences per source per step) runs in its own process, so peaks do not mix: CoNLL,
target de, the target term on from step 0 (the costliest step: one forward and backward pass per source and one
for the target). It records the process's peak after loading data and model and after the training steps; the
difference is what the batch costs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from common import peak_mib, table, write_section


def one(sources: tuple[str, ...], batch_size: int, steps: int, encoder: str) -> dict:
    import torch

    from pram.config import preset
    from pram.inputs import prepare_data
    from pram.logs import quiet_libraries
    from pram.objective import Banks
    from pram.train import build_model, train_step

    quiet_libraries()
    config = preset("laptop", sources=sources, target="de", batch_size=batch_size, beta_start=0.0,
                    encoder=encoder, eval_sentences=10, quiet=True)
    data = prepare_data(config)
    model = build_model(config, data, "cpu")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    banks = Banks.empty(len(sources), len(data.label_names), model.encoder.config.hidden_size)
    before = peak_mib()
    started = time.perf_counter()
    for step in range(steps):
        banks, _, _ = train_step(model, optimizer, banks, data, config, step, "cpu")
    return {"sources": "+".join(sources), "batch_size": batch_size, "steps": steps, "peak_before_mib": before,
            "peak_mib": peak_mib(), "s_per_step": (time.perf_counter() - started) / steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="en:16,en+es+nl:16,en+es+nl:128",
                        help="comma-separated SOURCES:BATCH, sources joined by +")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--encoder", default="me5-small")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        sources, batch = args.one.split(":")
        print(json.dumps(one(tuple(sources.split("+")), int(batch), args.steps, args.encoder)))
        return
    rows = []
    for row in args.rows.split(","):
        done = subprocess.run([sys.executable, __file__, "--one", row, "--steps", str(args.steps),
                               "--encoder", args.encoder], check=False, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{row} failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    base = rows[0]
    cells = [[r["sources"], r["batch_size"], f"{r['peak_before_mib']:.0f}", f"{r['peak_mib']:.0f}",
              f"{r['peak_mib'] - r['peak_before_mib']:.0f}", f"{r['peak_mib'] / base['peak_mib']:.2f}",
              f"{r['s_per_step']:.1f}"] for r in rows]
    body = table(["sources", "sentences per source per step", "peak RSS after load (MiB)",
                  "peak RSS in training (MiB)", "training adds (MiB)", "peak against row 1", "s/step"], cells)
    body += (f"\n\nTarget de, the target term on, {args.steps} steps per row, encoder {args.encoder}. Multi-source "
             f"PRAM at a batch of 16 per source keeps one prototype bank per source as a moving average, so it "
             f"needs no large batch for stable prototypes (the paper's §6 limitation); the paper's 128 per source "
             f"is the last row.")
    write_section("memory", "Memory: single- and multi-source training", body)


if __name__ == "__main__":
    main()

"""APC overhead: time per training step of PRAM against the same step with APC off (`--apc none`).

    python benchmarks/apc_overhead.py [--steps 20] [--warmup 3] [--threads 2] [--batch-size 16]

The laptop preset, single source en, target de, the target term on from step 0 (`beta_start 0`). One model per
variant, all from the same initial weights, stepped in turn (none, source, target, both, none, ...) on the same
batches, so a busy machine slows every variant alike. Reports the median seconds per step and the ratio to none.
`source` isolates the cost of the APC arithmetic (prototypes, similarities, Jensen-Shannon); `target` and `both`
add the forward and backward pass over the unlabelled target batch that the target term needs.
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import table, write_section

VARIANTS = ("none", "source", "target", "both")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--encoder", default="me5-small")
    args = parser.parse_args()

    import dataclasses

    import torch

    from pram.config import preset
    from pram.inputs import prepare_data
    from pram.logs import quiet_libraries
    from pram.objective import Banks
    from pram.train import build_model, train_step

    quiet_libraries()
    torch.set_num_threads(args.threads)
    base = preset("laptop", encoder=args.encoder, batch_size=args.batch_size, beta_start=0.0, eval_sentences=10,
                  quiet=True)
    data = prepare_data(base)
    runs = {}
    for apc in VARIANTS:
        config = dataclasses.replace(base, apc=apc)
        model = build_model(config, data, "cpu")
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr)
        banks = Banks.empty(1, len(data.label_names), model.encoder.config.hidden_size)
        runs[apc] = [config, model, optimizer, banks, []]
    for step in range(args.warmup + args.steps):
        for run in runs.values():
            config, model, optimizer, banks, times = run
            started = time.perf_counter()
            run[3], _, _ = train_step(model, optimizer, banks, data, config, step, "cpu")
            if step >= args.warmup:
                times.append(time.perf_counter() - started)
        print(f"step {step}: " + ", ".join(f"{a} {r[4][-1]:.2f}s" for a, r in runs.items() if r[4]), flush=True)

    median = {apc: statistics.median(run[4]) for apc, run in runs.items()}
    rows = [[apc, f"{median[apc]:.3f}", f"{median[apc] / median['none']:.3f}",
             "source" if apc in ("none", "source") else "source + target"] for apc in VARIANTS]
    body = table(["--apc", "median s/step", "ratio to none", "sentences through the encoder"], rows)
    body += (f"\n\nBatch {args.batch_size} source (and {args.batch_size} target) sentences, {args.steps} timed steps "
             f"after {args.warmup} warm-up steps per variant, the variants stepped in turn on the same batches.\n\n"
             f"- The APC arithmetic itself (prototype update, cosine similarities, Jensen-Shannon, down-sampling) "
             f"costs **{median['source'] / median['none']:.3f}x** a plain step (`source` against `none`).\n"
             f"- The target term needs the unlabelled target batch to go through the encoder and back: "
             f"PRAM (`both`) costs **{median['both'] / median['none']:.2f}x** a plain step while the target term is "
             f"on. Per sentence through the encoder that is "
             f"{median['both'] / median['none'] / 2:.2f}x. The paper's claim of no meaningful extra cost holds for "
             f"the APC computation, not for reading the target text, which its baseline never does.\n"
             f"- With the default schedule (target term off for the first half, `beta_start 0.5`) a whole run costs "
             f"about {(median['source'] + median['both']) / 2 / median['none']:.2f}x the baseline's steps.")
    write_section("apc-overhead", "APC overhead: a PRAM step against a plain step", body, args.threads)


if __name__ == "__main__":
    main()

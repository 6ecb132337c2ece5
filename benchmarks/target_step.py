"""Why a target-on step costs about 3x a source-only step in FLOPs, where one more pass should cost about 2x.

    python benchmarks/target_step.py [--steps 20] [--warmup 3] [--threads 2]

Counts FLOPs per padded piece (the batch's longest sentence times its sentences: what the encoder computes on)
for the very steps `step_speed.py` times at the laptop preset (source-only steps from 0, target-on steps from
`beta_start_step`), with torch's FlopCounterMode over real training steps of the offline encoder; and the padded
pieces of the source and target batches over every step of a run. If FLOPs per piece are about equal in both
phases, the ratio comes from longer batches, not from a duplicated pass.
"""

from __future__ import annotations

import argparse
import statistics

from common import table, write_section


def padded(lengths: tuple[int, ...], indices: list[int]) -> int:
    return max(lengths[i] for i in indices) * len(indices)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="counted steps per phase (step_speed.py's default)")
    parser.add_argument("--warmup", type=int, default=3, help="steps skipped first (step_speed.py's default)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pram.batches import batch_at
    from pram.config import preset
    from pram.inputs import prepare_data
    from pram.logs import quiet_libraries
    from pram.objective import Banks
    from pram.train import build_model, train_step

    quiet_libraries()
    torch.set_num_threads(args.threads)
    config = preset("laptop", eval_sentences=10, test_sentences=10, eval_languages=(), quiet=True)
    data = prepare_data(config)
    source, target = data.source_lengths["en"], data.target_lengths

    def pieces(step: int) -> tuple[int, int]:
        """Padded pieces of the step's source batch, and of its target batch once the target term is on."""
        s = padded(source, batch_at(source, config.batch_size, config.seed, step))
        on = step >= config.beta_start_step
        t = padded(target, batch_at(target, config.target_batch, config.seed + 997, step)) if on else 0
        return s, t

    model = build_model(config, data, "cpu")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    banks = Banks.empty(1, len(data.label_names), model.proto_size)
    rows, per_piece = [], {}
    for phase, first in (("source only", 0), ("source + target", config.beta_start_step)):
        steps = range(first + args.warmup, first + args.warmup + args.steps)
        with FlopCounterMode(display=False) as counter:
            for step in steps:
                banks, _, _ = train_step(model, optimizer, banks, data, config, step, "cpu")
        flops = counter.get_total_flops() / args.steps
        src = statistics.mean(pieces(s)[0] for s in steps)
        tgt = statistics.mean(pieces(s)[1] for s in steps)
        per_piece[phase] = flops / (src + tgt)
        rows.append([phase, f"{steps.start}-{steps.stop - 1}", f"{src:.0f}", f"{tgt:.0f}", f"{flops / 1e12:.4f}",
                     f"{per_piece[phase] / 1e6:.1f}"])
    ratio_flops = float(rows[1][4]) / float(rows[0][4])
    ratio_pieces = (float(rows[1][2]) + float(rows[1][3])) / float(rows[0][2])
    whole = [pieces(step) for step in range(config.beta_start_step, config.max_steps)]
    src_all, tgt_all = statistics.mean(s for s, _ in whole), statistics.mean(t for _, t in whole)
    mean_len = (statistics.mean(source), statistics.mean(target))
    body = table(["phase", "steps", "source pieces/step (padded)", "target pieces/step (padded)", "TFLOP/step",
                  "MFLOP per padded piece"], rows)
    body += (f"\n\nOver the counted steps a target-on step is **{ratio_flops:.2f}x** a source-only step in FLOPs "
             f"and **{ratio_pieces:.2f}x** in padded pieces; FLOPs per padded piece differ by "
             f"{100 * (per_piece['source + target'] / per_piece['source only'] - 1):+.1f}% (attention grows with the "
             f"square of a batch's length, so longer batches cost a little more per piece). No pass is duplicated: "
             f"a target-on step is one more forward and backward pass over a batch that is longer. German CoNLL "
             f"sentences are {mean_len[1]:.1f} pieces on average against English {mean_len[0]:.1f} "
             f"({mean_len[1] / mean_len[0]:.2f}x), and over all {config.max_steps - config.beta_start_step} target-on "
             f"steps of a run the padded target batch is {tgt_all / src_all:.2f}x the source batch "
             f"({tgt_all:.0f} against {src_all:.0f} pieces), so a target-on step costs about "
             f"{1 + tgt_all / src_all:.1f}x a source-only one over a whole run. Batches are grouped by length, so "
             f"{args.steps} steps are a small sample: their source batches in the two phases differ too.")
    write_section("target-step", "The target-on step: FLOPs per piece, laptop preset, en -> de", body,
                  args.threads)


if __name__ == "__main__":
    main()

"""Training step speed, fp32 against bf16: steps per second, model FLOPs utilisation, hours for a whole run.

    python benchmarks/step_speed.py --preset paper --device cuda          # item 8 of issue 8, on a GPU
    python benchmarks/step_speed.py --preset laptop [--steps 20] [--threads 2]

One model per precision, both from the same initial weights, stepped in turn on the same batches (fp32, bf16,
fp32, ...), so a busy machine slows both alike. Both phases of a run are timed: source batches only (the first
`beta_start` of the steps) and source with target batches (the rest, twice the sentences through the encoder).

FLOPs are counted by torch's FlopCounterMode over the very batches that were timed (matrix products of the forward
and the backward pass, which is what model FLOPs utilisation counts), in a pass of their own after the timing;
seconds per step are the mean over the timed steps, so FLOP/s is total FLOPs over total time. MFU divides the
achieved FLOP/s by the chip's dense bf16 peak (H100/H200 989 TFLOP/s, A100 312, or --peak-tflops), for both
precisions, so the rows compare.

The `paper` preset needs the paper's encoder size. Where bert-base-multilingual-cased cannot be downloaded, a
random BERT of its shape (12 layers, hidden 768, 12 heads, feed-forward 3072) is built with the offline
tokenizer; its embedding table has the offline encoder's 250,037 rows instead of mBERT's 119,547, which is
frozen in the paper preset and costs a lookup, so the FLOPs per step are mBERT's. Evaluation is not timed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from common import table, write_section

PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "GH200": 989.4, "A100": 312.0, "L40S": 362.1, "L4": 121.0}


def random_mbert_shape(cache: Path) -> str:
    """A random-initialised BERT of bert-base-multilingual-cased's shape, with the offline tokenizer (built once):
    the offline encoder's config (vocabulary, positions, special tokens) with mBERT-base's layers and widths."""
    folder = cache / "encoders" / "random-mbert-base-shape"
    if (folder / "model.safetensors").is_file():
        return str(folder)
    import torch
    from transformers import BertModel

    from pram.encoder import encoder_config
    from pram.me5 import ME5_SMALL, write_me5_tokenizer

    config = encoder_config(ME5_SMALL, cache)
    config.update({"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072})
    write_me5_tokenizer(folder)
    torch.manual_seed(0)
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    return str(folder)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown model"


def peak_tflops(device: str, given: float | None) -> tuple[float | None, str]:
    import torch

    if given:
        return given, f"MFU against {given:g} TFLOP/s (--peak-tflops)."
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(device)
        for chip, peak in sorted(PEAK_BF16_TFLOPS.items(), key=lambda kv: -len(kv[0])):
            if chip in name:
                return peak, f"MFU against the {chip}'s dense bf16 peak, {peak:g} TFLOP/s."
        return None, f"No MFU: the peak of the {name} is not in the table; give --peak-tflops."
    return None, "No MFU: give the CPU's peak with --peak-tflops."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=("laptop", "paper"), default="laptop")
    parser.add_argument("--encoder", default=None,
                        help="default: the preset's (laptop) or a random BERT of mBERT-base shape (paper)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per precision and phase")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per precision and phase first")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the preset's (16 laptop, 128 paper)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (CPU)")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated, from fp32 and bf16")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the chip's dense bf16 peak, for MFU")
    args = parser.parse_args()

    import dataclasses

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pram.config import preset
    from pram.encoder import default_cache_dir
    from pram.inputs import prepare_data
    from pram.logs import quiet_libraries
    from pram.objective import Banks
    from pram.train import build_model, pick_device, train_step

    quiet_libraries()
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    cuda = device.startswith("cuda")
    encoder = args.encoder or (random_mbert_shape(default_cache_dir(None)) if args.preset == "paper" else None)
    overrides = {"encoder": encoder} if encoder else {}
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    base = preset(args.preset, eval_sentences=10, quiet=True, **overrides)
    data = prepare_data(base)
    precisions = tuple(args.precisions.split(","))
    runs = {}
    for precision in precisions:
        config = dataclasses.replace(base, precision=precision)
        model = build_model(config, data, device)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr)
        banks = Banks.empty(1, len(data.label_names), model.encoder.config.hidden_size, device)
        runs[precision] = [config, model, optimizer, banks]
    phases = {"source": 0, "source + target": base.beta_start_step}  # first step index of each phase

    def step(precision: str, index: int) -> float:
        config, model, optimizer, banks = runs[precision]
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        runs[precision][3], _, _ = train_step(model, optimizer, banks, data, config, index, device)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - started

    flops, seconds = {}, {}
    for phase, first in phases.items():
        times = {precision: [] for precision in precisions}
        for i in range(args.warmup + args.steps):
            for precision in precisions:
                took = step(precision, first + i)
                if i >= args.warmup:
                    times[precision].append(took)
            print(f"{phase} step {i}: " + ", ".join(f"{p} {t[-1]:.3f}s" for p, t in times.items() if t), flush=True)
        # Batches are grouped by length, so FLOPs differ from step to step: count those of exactly the timed
        # steps, once more afterwards (FLOPs depend on the shapes, not on the weights, so one model does).
        with FlopCounterMode(display=False) as counter:
            for i in range(args.warmup, args.warmup + args.steps):
                step(precisions[0], first + i)
        flops[phase] = counter.get_total_flops() / args.steps
        for precision in precisions:
            seconds[(phase, precision)] = statistics.mean(times[precision])

    peak, peak_note = peak_tflops(device, args.peak_tflops)
    share = {"source": base.beta_start, "source + target": 1 - base.beta_start}
    rows = []
    for precision in precisions:
        hours = sum(base.max_steps * share[phase] * seconds[(phase, precision)] for phase in phases) / 3600
        for phase in phases:
            s = seconds[(phase, precision)]
            achieved = flops[phase] / s / 1e12
            rows.append([precision, phase, f"{s:.3f}", f"{1 / s:.2f}",
                         f"{seconds[(phase, precisions[0])] / s:.2f}", f"{flops[phase] / 1e12:.3g}", f"{achieved:.3g}",
                         f"{100 * achieved / peak:.1f}%" if peak else "-", f"{hours:.2f}"])
    where = (torch.cuda.get_device_name(device) if cuda else
             f"CPU ({cpu_name()}, torch kernels for {torch.backends.cpu.get_cpu_capability()}), "
             f"{args.threads} torch thread(s)")
    memory = ""
    if cuda:
        memory = f" Peak GPU memory allocated: {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB (all models)."
    body = table(["precision", "phase", "mean s/step", "steps/s", f"speed-up over {precisions[0]}", "TFLOP/step",
                  "TFLOP/s", "MFU", f"hours for {base.max_steps:,} steps"], rows)
    body += (f"\n\nThe `{args.preset}` preset on {where}: encoder `{Path(base.encoder).name}`, batch "
             f"{base.batch_size} source (and {base.target_batch} target) sentences of CoNLL en and de, "
             f"{args.steps} timed steps after {args.warmup} warm-up steps per precision and phase"
             + (", the precisions stepped in turn on the same batches" if len(precisions) > 1 else "")
             + f". Batches are grouped by length, so a few steps give a rough figure. {peak_note}{memory} "
             f"Hours: {100 * base.beta_start:.0f}% of the steps source only, the rest with the target batch; "
             f"evaluation not included.")
    write_section(f"step-speed-{args.preset}-{device.split(':')[0]}",
                  f"Step speed, {' against '.join(precisions)}: `{args.preset}` preset on {where}", body,
                  args.threads)


if __name__ == "__main__":
    main()

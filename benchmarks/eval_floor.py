"""How fast can tagging get on this CPU? The compute floor of `pram evaluate` on the CoNLL-2002 Spanish test set.

    python benchmarks/eval_floor.py [--threads 2] [--no-pipeline]

The eval-throughput section asks `pram evaluate` for 4x the HuggingFace pipeline. This measures, in one run,
whether 4x is there to take: the floating-point operations the encoder needs for the test set (counted by
`torch.utils.flop_counter` over the very batches `pram evaluate` runs: length-sorted, 64 sentences), the
rate this CPU sustains on the model's own matrix shapes (the feed-forward and attention-projection products of
me5-small at the batches' size, fp32, the best of several repeats), and so the floor: the seconds tagging would
take if every operation ran at that rate with nothing else. Beside it, timed in the same run: the model's
forward over those batches alone, the whole of `pram evaluate` (forward, word mapping, seqeval), and the
pipeline as most people call it (batch size 1), on the same architecture with a fresh 9-label head (weights do
not change the cost). The pipeline's time over the floor is the most any tagger built on this model and this
CPU's fp32 matrix products can beat it by.
"""

from __future__ import annotations

import argparse
import functools
import time

from common import table, write_section


def gemm_rate(shapes: list[tuple[int, int, int]], repeats: int = 5) -> dict[tuple[int, int, int], float]:
    """GFLOP/s of (m x k) @ (k x n) in fp32, best of `repeats`, per shape."""
    import torch

    rates = {}
    for m, k, n in shapes:
        a, b = torch.randn(m, k), torch.randn(k, n)
        torch.mm(a, b)  # warm-up
        best = min(_timed(functools.partial(torch.mm, a, b)) for _ in range(repeats))
        rates[(m, k, n)] = 2 * m * k * n / best / 1e9
    return rates


def int8_rate(shapes: list[tuple[int, int, int]], repeats: int = 5) -> dict[tuple[int, int, int], float]:
    """GFLOP/s-equivalent of torch's dynamic int8 Linear (what `--int8` runs) at (m x k) -> n, best of `repeats`."""
    import torch

    rates = {}
    for m, k, n in shapes:
        layer = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(k, n)), {torch.nn.Linear},
                                                       dtype=torch.qint8)
        x = torch.randn(m, k)
        with torch.inference_mode():
            layer(x)
            best = min(_timed(functools.partial(layer, x)) for _ in range(repeats))
        rates[(m, k, n)] = 2 * m * k * n / best / 1e9
    return rates


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-pipeline", action="store_true", help="skip timing the HF pipeline (about 2 min)")
    args = parser.parse_args()

    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModelForTokenClassification, pipeline

    from pram.batches import collate, encode_dataset, eval_batches
    from pram.data.corpora import LABELS, load_language
    from pram.encoder import load_tokenizer, resolve_encoder
    from pram.evaluate import evaluate
    from pram.logs import quiet_libraries
    from pram.model import TokenClassifier

    quiet_libraries()
    torch.set_num_threads(args.threads)
    data = load_language("conll", "es")
    names = LABELS["conll"]
    test = data["test"].flatten_indices()
    folder = resolve_encoder("me5-small")
    tokenizer = load_tokenizer(folder)
    model = TokenClassifier.from_encoder(folder, len(names)).eval()
    encoded = encode_dataset(test, tokenizer, 128, labelled=True)
    columns = encoded.select_columns(["input_ids", "attention_mask", "labels", "word_ids"])
    batches = [collate([columns[i] for i in indices], tokenizer.pad_token_id)
               for indices in eval_batches(encoded["length"], 64)]
    real = sum(encoded["length"])
    padded = sum(b["input_ids"].numel() for b in batches)

    def forward_all() -> None:
        for b in batches:
            model(b["input_ids"], b["attention_mask"])

    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            forward_all()
        flops = counter.get_total_flops()
        forward_s = _timed(forward_all)
    evaluate_s = _timed(lambda: evaluate(model, encoded, names, tokenizer.pad_token_id, 64))

    hidden, ffn = model.encoder.config.hidden_size, model.encoder.config.intermediate_size
    rows_per_batch = padded // len(batches)  # pieces in a typical batch: the m of its products
    shapes = [(rows_per_batch, hidden, hidden), (rows_per_batch, hidden, ffn), (rows_per_batch, ffn, hidden)]
    rates, int8 = gemm_rate(shapes), int8_rate(shapes)
    peak = max(rates.values())
    floor_s = flops / (peak * 1e9)

    pipeline_s = None
    if not args.no_pipeline:
        hf = AutoModelForTokenClassification.from_pretrained(folder, num_labels=len(names)).eval()
        texts = [" ".join(tokens) for tokens in test["tokens"]]
        tagger = pipeline("token-classification", model=hf, tokenizer=tokenizer, device=-1)
        pipeline_s = _timed(lambda: tagger(texts, batch_size=1))

    body = table(["shape of the product (m x k x n)", "GFLOP/s, fp32 `torch.mm`, best of 5",
                  "GFLOP/s-equivalent, dynamic int8 `Linear` (`--int8`), best of 5"],
                 [[f"{m} x {k} x {n}", f"{r:.1f}", f"{int8[shape]:.1f}"]
                  for shape, r in rates.items() for m, k, n in [shape]])
    rows = [["the floor: counted FLOPs at the best rate above", f"{floor_s:.1f}", "1.00"],
            ["the model's forward over `pram evaluate`'s batches", f"{forward_s:.1f}", f"{forward_s / floor_s:.2f}"],
            ["`pram evaluate` (forward, word mapping, seqeval)", f"{evaluate_s:.1f}", f"{evaluate_s / floor_s:.2f}"]]
    if pipeline_s is not None:
        rows.append(["HF pipeline, batch size 1 (as most people call it)", f"{pipeline_s:.1f}",
                     f"{pipeline_s / floor_s:.2f}"])
    body += "\n\n" + table(["CoNLL-2002 Spanish test (1,517 sentences), me5-small", "seconds", "times the floor"],
                           rows)
    body += (f"\n\nThe test set is {real:,} pieces, {padded:,} with the padding of length-sorted batches of 64 "
             f"({padded / real - 1:.1%} padding); the encoder and head need **{flops / 1e12:.2f} TFLOP** for it "
             f"({flops / padded / 1e6:.1f} MFLOP per padded piece). At this CPU's best fp32 matrix-product rate "
             f"on the model's shapes ({peak:.0f} GFLOP/s on {args.threads} thread(s)) that is {floor_s:.1f} s. "
             f"`pram evaluate`'s forward runs at {forward_s / floor_s:.2f}x the floor (attention's small batched "
             f"products, softmax, layer norms and GELU run below the matrix rate), and the whole of `pram "
             f"evaluate` at {evaluate_s / floor_s:.2f}x (the forward is timed first, `pram evaluate` second; the two "
             f"differ by this machine's run-to-run spread). torch's dynamic int8 runs these products at "
             f"{min(int8.values()):.0f}-{max(int8.values()):.0f} GFLOP/s-equivalent, "
             f"{max(int8.values()) / peak:.2f}x the best fp32 rate at most, and only on the layers it quantises.")
    if pipeline_s is not None:
        body += (f" The pipeline as most people call it takes {pipeline_s:.1f} s, so in this run `pram evaluate` "
                 f"is **{pipeline_s / evaluate_s:.2f}x** as fast as it, and no fp32 tagger on this model and CPU "
                 f"can be more than **{pipeline_s / floor_s:.2f}x** as fast: the floor, not the code around the "
                 f"model, bounds the speed-up. Even with every product at the int8 rate the bound is "
                 f"{pipeline_s / floor_s * max(int8.values()) / peak:.2f}x, and int8 already costs more F1 than "
                 f"the 0.5 allowed (eval-throughput section).")
    write_section("eval-floor", "Evaluation: the compute floor on this CPU", body, args.threads)


if __name__ == "__main__":
    main()

"""Prototype stability: how far the prototypes of a mini-batch of 16 sentences per source are from each class's
mean over many sentences, with and without the moving average that keeps a bank across steps, against the
paper's 128.

    python benchmarks/prototype_stability.py [--checkpoint runs/<multi-source run>/checkpoints/best-target-dev]

The paper (§6) needs a large batch for stable prototypes in multi-source mode. pram keeps one bank per source
language as a moving average (Eq. 5) that persists across steps. This measures what that buys, on one fixed
model (a trained checkpoint, or the bare offline encoder): the last-layer first-piece representations of a pool
of training sentences per source are computed once; batches are drawn from the pool at random; after every step
the distance (1 - cosine) of each class's prototype to that class's mean over the whole pool is recorded, with
pram's `update_prototypes` at λ = 0.9 ("bank") and with the batch's own class means ("batch only", λ = 0). A
class absent from a batch has no batch prototype: the share of such (step, class) pairs is reported too.
"""

from __future__ import annotations

import argparse
import statistics

from common import table, write_section


def pool_representations(model, tokenizer, lang: str, sentences: int, seed: int):
    """First-piece representations (N, H) and labels (N,) of each of `sentences` training sentences."""
    import torch

    from pram.batches import collate, encode_dataset, eval_batches
    from pram.data.corpora import load_language

    split = load_language("conll", lang)["train"].shuffle(seed=seed).select(range(sentences)).flatten_indices()
    encoded = encode_dataset(split, tokenizer, 128, labelled=True)
    rows = encoded.select_columns(["input_ids", "attention_mask", "labels", "word_ids"]).to_list()
    out = [None] * len(rows)
    with torch.no_grad():
        for indices in eval_batches(encoded["length"], 64):
            batch = collate([rows[i] for i in indices], tokenizer.pad_token_id)
            h, _ = model(batch["input_ids"], batch["attention_mask"])
            for row, i in enumerate(indices):
                first = batch["word_ids"][row] >= 0
                out[i] = (h[row][first], batch["labels"][row][first])
    return out


def simulate(pool, batch_size: int, lam: float, steps: int, num_classes: int, seed: int) -> dict:
    import torch
    import torch.nn.functional as F

    from pram.losses import batch_class_means, update_prototypes

    h_all = torch.cat([h for h, _ in pool])
    y_all = torch.cat([y for _, y in pool])
    reference, counts = batch_class_means(h_all, y_all, num_classes)
    generator = torch.Generator().manual_seed(seed)
    bank = torch.zeros_like(reference)
    known = torch.zeros(num_classes, dtype=torch.bool)
    distances, absent = [], 0
    for _ in range(steps):
        picked = torch.randint(len(pool), (batch_size,), generator=generator).tolist()
        means, present = batch_class_means(torch.cat([pool[i][0] for i in picked]),
                                           torch.cat([pool[i][1] for i in picked]), num_classes)
        bank, known = update_prototypes(bank, known, means, present > 0, lam)
        absent += int(((present == 0) & (counts > 0)).sum())
        shown = (present > 0) if lam == 0 else known  # batch only: a missing class has no prototype this step
        cos = F.cosine_similarity(bank if lam else means, reference, dim=-1)
        distances.append(float((1 - cos)[shown & (counts > 0)].mean()))
    settled = distances[steps // 4:]  # after the bank has filled
    return {"distance": statistics.mean(settled), "absent": absent / (steps * int((counts > 0).sum()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="a pram checkpoint folder; default: the bare encoder")
    parser.add_argument("--sources", default="en,es,nl")
    parser.add_argument("--pool", type=int, default=2000, help="training sentences per source")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lam", type=float, default=0.9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from pram.data.corpora import LABELS
    from pram.encoder import load_tokenizer, resolve_encoder
    from pram.logs import quiet_libraries
    from pram.model import TokenClassifier
    from pram.predict import load_trained

    quiet_libraries()
    torch.set_num_threads(args.threads)
    if args.checkpoint:
        model, tokenizer, _ = load_trained(args.checkpoint)
    else:
        path = resolve_encoder("me5-small")
        model, tokenizer = TokenClassifier.from_encoder(path, len(LABELS["conll"])).eval(), load_tokenizer(path)
    k = len(LABELS["conll"])
    rows = []
    for lang in args.sources.split(","):
        pool = pool_representations(model, tokenizer, lang, args.pool, args.seed)
        for batch_size in (16, 128):
            for lam, name in ((args.lam, "bank"), (0.0, "batch only")):
                r = simulate(pool, batch_size, lam, args.steps, k, args.seed)
                rows.append([lang, batch_size, name, f"{r['distance']:.4f}", f"{100 * r['absent']:.1f}"])
                print(rows[-1], flush=True)
    body = table(["source", "sentences per step", "prototype", "mean distance to the pool's class mean",
                  "% (step, class) with no token in the batch"], rows)
    dist = {(r[0], r[1], r[2]): float(r[3]) for r in rows}
    langs = args.sources.split(",")
    small_bank = statistics.mean(dist[(lang, 16, "bank")] for lang in langs)
    large_batch = statistics.mean(dist[(lang, 128, "batch only")] for lang in langs)
    body += (f"\n\nModel: {args.checkpoint or 'the bare offline encoder'}; pools of {args.pool} CoNLL training "
             f"sentences per source; {args.steps} steps, the first quarter not counted. Averaged over sources, the "
             f"moving-average bank fed 16 sentences a step sits {small_bank:.4f} from the class means, against "
             f"{large_batch:.4f} for the paper-sized batch of 128 taken alone; the bank also keeps a prototype for "
             f"every class a small batch misses.")
    write_section("prototype-stability", "Prototype stability at a small batch", body, args.threads)


if __name__ == "__main__":
    main()

"""Evaluation throughput: tagging the CoNLL-2002 Spanish test set with pram's evaluation against the
HuggingFace `pipeline("token-classification")` on the same model.

    python benchmarks/eval_throughput.py [--threads 2] [--sentences 0]

One model (the offline encoder with a token classifier, the same modules on both sides): pram's side is what
`pram evaluate` runs once the checkpoint is loaded (tokenise the split, tag it in length-sorted batches of 64, map
first pieces back to words, score with seqeval); the pipeline's side tags the same sentences, given as their words
joined by spaces, once with its default batch size (1) and once with batch size 64. Reports sentences per second.
"""

from __future__ import annotations

import argparse
import time

from common import table, write_section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sentences", type=int, default=0, help="first N test sentences; 0: all 1,517")
    parser.add_argument("--encoder", default="me5-small")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForTokenClassification, pipeline

    from pram.batches import encode_dataset
    from pram.data.corpora import LABELS, load_language
    from pram.encoder import load_tokenizer, resolve_encoder
    from pram.evaluate import evaluate
    from pram.logs import quiet_libraries
    from pram.model import TokenClassifier

    quiet_libraries()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    test = load_language("conll", "es")["test"]
    if args.sentences:
        test = test.select(range(args.sentences))
    test = test.flatten_indices()
    names = LABELS["conll"]
    path = resolve_encoder(args.encoder)
    tokenizer = load_tokenizer(path)
    hf = AutoModelForTokenClassification.from_pretrained(
        path, num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    hf.eval()
    ours = TokenClassifier(hf.base_model, len(names))
    ours.classifier = hf.classifier  # the same weights on both sides
    texts = [" ".join(tokens) for tokens in test["tokens"]]

    def pram_side():
        encoded = encode_dataset(test, tokenizer, 128, labelled=True)
        return evaluate(ours, encoded, names, tokenizer.pad_token_id, 64)

    def pipeline_side(batch_size: int):
        tagger = pipeline("token-classification", model=hf, tokenizer=tokenizer, device=-1)
        return tagger(texts, batch_size=batch_size)

    sides = {"`pram evaluate` (batches of 64)": pram_side,
             "HF pipeline, default batch size": lambda: pipeline_side(1),
             "HF pipeline, batch_size=64": lambda: pipeline_side(64)}
    seconds = {}
    for name, side in sides.items():
        started = time.perf_counter()
        side()
        seconds[name] = time.perf_counter() - started
        print(f"{name}: {seconds[name]:.1f}s", flush=True)
    ours_s = seconds["`pram evaluate` (batches of 64)"]
    rows = [[name, f"{s:.1f}", f"{len(test) / s:.1f}", f"{s / ours_s:.2f}"] for name, s in seconds.items()]
    body = table(["side", "seconds", "sentences/s", "pram's speed-up"], rows)
    default = seconds["HF pipeline, default batch size"] / ours_s
    batched = seconds["HF pipeline, batch_size=64"] / ours_s
    body += (f"\n\n{len(test)} sentences of the CoNLL-2002 Spanish test set. pram tags and scores them "
             f"**{default:.1f}x** as fast as the pipeline as most people call it (target: at least 5x), and "
             f"{batched:.1f}x as fast as the pipeline given batch_size=64. The pipeline pads each batch to its "
             f"longest sentence in arrival order and post-processes every piece in Python; pram sorts by length, "
             f"keeps only first pieces and scores in the same pass. (The pipeline's time does not include "
             f"scoring.) On a CPU the encoder's arithmetic bounds both sides: the pipeline at batch size 1 pads "
             f"nothing, so what pram saves is the per-call overhead, about half the pipeline's time here; a "
             f"ratio of 5 would need a device where that overhead dominates (a GPU, perhaps; not measured here).")
    write_section("eval-throughput", "Evaluation throughput against the HuggingFace pipeline", body, args.threads)


if __name__ == "__main__":
    main()

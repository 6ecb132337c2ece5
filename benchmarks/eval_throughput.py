"""Evaluation throughput: a trained checkpoint tagging the CoNLL-2002 Spanish test set with `pram evaluate` (fp32
and `--int8`) against the HuggingFace `pipeline("token-classification")` on the same weights, exported with
`pram export`; and the F1 of int8 against fp32 on the whole Spanish and German test sets.

    python benchmarks/eval_throughput.py CHECKPOINT [--threads 2]

pram's side is what `pram evaluate` runs once the checkpoint is loaded (tokenise the split, tag it in
length-sorted batches of 64, map first pieces back to words, score with seqeval); the pipeline's side loads the
exported folder and tags the same sentences, given as their words joined by spaces, with its default batch size
(1, as most people call it) and with batch size 64. Reports sentences per second and F1.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import table, write_section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a pram checkpoint folder trained on CoNLL (e.g. a laptop run's "
                                           "checkpoints/best-target-dev)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    from pram.batches import encode_dataset
    from pram.data.corpora import load_language
    from pram.evaluate import evaluate
    from pram.export import export
    from pram.logs import quiet_libraries
    from pram.predict import load_trained

    quiet_libraries()
    torch.set_num_threads(args.threads)
    tests = {lang: load_language("conll", lang)["test"].flatten_indices() for lang in ("es", "de")}
    models = {"fp32": load_trained(args.checkpoint, "cpu"), "int8": load_trained(args.checkpoint, "cpu", int8=True)}
    tokenizer, info = models["fp32"][1], models["fp32"][2]
    names = info["label_names"]

    def pram_side(kind: str, lang: str) -> dict:
        model = models[kind][0]
        return evaluate(model, encode_dataset(tests[lang], tokenizer, 128, labelled=True), names,
                        tokenizer.pad_token_id, 64)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "export"
        export(args.checkpoint, folder, command="(benchmarks/eval_throughput.py)")
        hf = AutoModelForTokenClassification.from_pretrained(folder).eval()
        hf_tokenizer = AutoTokenizer.from_pretrained(folder)
        texts = [" ".join(tokens) for tokens in tests["es"]["tokens"]]

        def pipeline_side(batch_size: int):
            tagger = pipeline("token-classification", model=hf, tokenizer=hf_tokenizer, device=-1)
            return tagger(texts, batch_size=batch_size)

        ours = {"fp32": "`pram evaluate` (fp32, batches of 64)", "int8": "`pram evaluate --int8` (batches of 64)"}
        sides = {ours["fp32"]: lambda: pram_side("fp32", "es"), ours["int8"]: lambda: pram_side("int8", "es"),
                 "HF pipeline on the exported folder, default batch size": lambda: pipeline_side(1),
                 "HF pipeline on the exported folder, batch_size=64": lambda: pipeline_side(64)}
        seconds, scores = {}, {}
        for name, side in sides.items():
            started = time.perf_counter()
            scores[name] = side()
            seconds[name] = time.perf_counter() - started
            print(f"{name}: {seconds[name]:.1f}s", flush=True)
    f1 = {(kind, lang): (scores[ours[kind]] if lang == "es" else pram_side(kind, lang))["f1"]
          for kind in ours for lang in ("es", "de")}
    default = seconds["HF pipeline on the exported folder, default batch size"]
    rows = [[name, f"{s:.1f}", f"{len(texts) / s:.1f}", f"{default / s:.2f}"] for name, s in seconds.items()]
    body = table(["side (CoNLL-2002 Spanish test, 1,517 sentences)", "seconds", "sentences/s",
                  "speed against the pipeline as most people call it"], rows)
    body += "\n\n" + table(["weights", "es test F1 (1,517 sentences)", "de test F1 (3,005 sentences)"],
                           [[kind, f"{f1[(kind, 'es')]:.2f}", f"{f1[(kind, 'de')]:.2f}"] for kind in ("fp32", "int8")])
    int8_s, fp32_s = seconds[ours["int8"]], seconds[ours["fp32"]]
    gap = max(abs(f1[("int8", lang)] - f1[("fp32", lang)]) for lang in ("es", "de"))
    config = info["config"]
    body += (f"\n\nCheckpoint: `{args.checkpoint}` ({config['encoder']}, trained {'+'.join(config['sources'])} -> "
             f"{config['target']}). `pram evaluate --int8` tags and scores the Spanish test set "
             f"**{default / int8_s:.1f}x** as fast as the pipeline as most people call it (target: at least 4x), "
             f"{fp32_s / int8_s:.2f}x as fast as fp32, with F1 within **{gap:.2f}** of fp32 on both test sets "
             f"(target: 0.5). Both sides run the same weights: the pipeline loads the folder `pram export` wrote. "
             f"int8 is torch's dynamic quantisation (weights int8 per output channel, activations quantised per "
             f"batch) of the attention and feed-forward input layers (`pram.predict.int8_layers`); the "
             f"feed-forward outputs, the classifier and the embeddings stay fp32. The pipeline pads each batch "
             f"to its longest sentence in arrival order and post-processes every piece in Python; pram sorts by "
             f"length and keeps only first pieces. "
             f"(The pipeline's time does not include scoring.)")
    write_section("eval-throughput", "Evaluation throughput against the HuggingFace pipeline", body, args.threads)


if __name__ == "__main__":
    main()

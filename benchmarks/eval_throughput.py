"""Evaluation throughput: a trained checkpoint tagging the CoNLL-2002 Spanish test set with `pram evaluate` (fp32
and `--int8`) against the HuggingFace `pipeline("token-classification")` on the same weights, exported with
`pram export`; and the F1 of int8 against fp32 on the whole Spanish and German test sets.

    python benchmarks/eval_throughput.py CHECKPOINT [--threads 2] [--onnx]

pram's side is what `pram evaluate` runs once the checkpoint is loaded (tokenise the split, tag it in
length-sorted batches of 64, map first pieces back to words, score with seqeval); the pipeline's side loads the
exported folder and tags the same sentences, given as their words joined by spaces, with its default batch size
(1, as most people call it) and with batch size 64. Reports sentences per second and F1.

--onnx adds the same model exported to ONNX and run by ONNX Runtime (its CPU provider, all graph
optimisations), in fp32 and with its dynamic int8 quantisation of the MatMul weights (per channel): what an
inference runtime gives on this CPU beyond torch. It needs `pip install -e '.[bench]'` (onnxruntime, onnx,
onnxscript); pram itself does not depend on them.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

from common import table, write_section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a pram checkpoint folder trained on CoNLL (e.g. a laptop run's "
                                           "checkpoints/best-target-dev)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--onnx", action="store_true", help="also ONNX Runtime, fp32 and int8 (the bench extra)")
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

    ours = {"fp32": "`pram evaluate` (fp32, batches of 64)", "int8": "`pram evaluate --int8` (batches of 64)"}
    if args.onnx:
        scratch = tempfile.TemporaryDirectory(prefix="pram-onnx-")  # about 0.9 GB, removed at exit
        models.update(onnx_models(models["fp32"][0], Path(scratch.name), args.threads))
        ours.update({"onnx-fp32": "ONNX Runtime fp32 (same pipeline as `pram evaluate`)",
                     "onnx-int8": "ONNX Runtime dynamic int8 (MatMul weights per channel)"})

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

        sides = {name: functools.partial(pram_side, kind, "es") for kind, name in ours.items()}
        sides |= {"HF pipeline on the exported folder, default batch size": lambda: pipeline_side(1),
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
                           [[kind, f"{f1[(kind, 'es')]:.2f}", f"{f1[(kind, 'de')]:.2f}"] for kind in ours])
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
    if args.onnx:
        onnx_gap = max(abs(f1[("onnx-int8", lang)] - f1[("fp32", lang)]) for lang in ("es", "de"))
        body += (f"\n\nWith `--onnx`: ONNX Runtime {ort_version()} runs the exported graph "
                 f"{fp32_s / seconds[ours['onnx-fp32']]:.2f}x as fast as torch fp32 with the same F1, and its "
                 f"dynamic int8 {fp32_s / seconds[ours['onnx-int8']]:.2f}x, F1 within {onnx_gap:.2f} of fp32.")
    write_section("eval-throughput", "Evaluation throughput against the HuggingFace pipeline", body, args.threads)


class OnnxTagger:
    """An ONNX Runtime session behind the interface `pram.evaluate.predict` calls: (z, logits) of a batch (z is
    not computed: no similarity function is asked for)."""

    def __init__(self, path: Path, threads: int, classifier):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.classifier = classifier  # predict reads the number of labels from it

    def eval(self):
        return self

    def __call__(self, input_ids, attention_mask):
        import torch

        logits = self.session.run(None, {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()})
        return None, torch.from_numpy(logits[0])


def onnx_models(model, folder: Path, threads: int) -> dict:
    """The fp32 model exported to ONNX (logits only, batch and length dynamic), and its dynamic int8 copy."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    class Logits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids, attention_mask)[1]

    example = (torch.ones(2, 16, dtype=torch.long), torch.ones(2, 16, dtype=torch.long))
    axes = {name: {0: "batch", 1: "length"} for name in ("input_ids", "attention_mask", "logits")}
    torch.onnx.export(Logits(model).eval(), example, str(folder / "fp32.onnx"), dynamo=False, opset_version=17,
                      input_names=["input_ids", "attention_mask"], output_names=["logits"], dynamic_axes=axes)
    quantize_dynamic(str(folder / "fp32.onnx"), str(folder / "int8.onnx"), weight_type=QuantType.QInt8,
                     per_channel=True, op_types_to_quantize=["MatMul"])
    return {kind: (OnnxTagger(folder / f"{kind.split('-')[1]}.onnx", threads, model.classifier),)
            for kind in ("onnx-fp32", "onnx-int8")}


def ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


if __name__ == "__main__":
    main()

"""Training throughput of `pram train --apc none` against the standard HuggingFace token-classification recipe.

    python benchmarks/hf_throughput.py [--steps 40] [--threads 2] [--batch-size 16]

Same encoder, same tokenised CoNLL-2003 English training sentences (labels on first pieces, as in `run_ner.py`),
same batch size, learning rate and number of steps, the same layers trained on both sides (the paper's: embeddings
and the bottom 3 layers frozen), on CPU. The HuggingFace
side is `AutoModelForTokenClassification` + `DataCollatorForTokenClassification` + `Trainer` with its defaults
(random batches padded to their longest sentence), and once more grouping batches by length
(`train_sampling_strategy="group_by_length"`, transformers 5's spelling of `group_by_length=True`). pram's side is
its training loop (`train_step`, length-grouped batches with dynamic padding). Each side runs in its own process,
one after the other; the clock runs over the training steps (`Trainer.train()`, pram's loop), not the
loading of data and model. Reports sentences per second and the ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

from common import table, write_section


def _config(args):
    from pram.config import preset

    return preset("laptop", encoder=args.encoder, batch_size=args.batch_size, apc="none", eval_sentences=10,
                  max_steps=args.steps, quiet=True)


def run_pram(args) -> float:
    import torch

    from pram.inputs import prepare_data
    from pram.objective import Banks
    from pram.train import build_model, train_step

    config = _config(args)
    data = prepare_data(config)
    model = build_model(config, data, "cpu")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    banks = Banks.empty(1, len(data.label_names), model.encoder.config.hidden_size)
    started = time.perf_counter()
    for step in range(args.steps):
        banks, _, _ = train_step(model, optimizer, banks, data, config, step, "cpu")
    return time.perf_counter() - started


def run_hf(args, group_by_length: bool) -> float:
    from datasets import Dataset
    from transformers import (
        AutoModelForTokenClassification,
        DataCollatorForTokenClassification,
        Trainer,
        TrainingArguments,
    )

    from pram.encoder import load_tokenizer
    from pram.inputs import prepare_data

    config = _config(args)
    data = prepare_data(config)  # the very sentences and labels pram trains on
    rows = [{k: r[k] for k in ("input_ids", "attention_mask", "labels")} for r in data.source_train["en"]]
    tokenizer = load_tokenizer(data.encoder_path)
    model = AutoModelForTokenClassification.from_pretrained(data.encoder_path, num_labels=len(data.label_names))
    model.base_model.embeddings.requires_grad_(False)  # the same frozen part as pram's (the paper's) model
    for layer in model.base_model.encoder.layer[:config.frozen_layers]:
        layer.requires_grad_(False)
    with tempfile.TemporaryDirectory() as out:
        training = TrainingArguments(out, per_device_train_batch_size=args.batch_size, max_steps=args.steps,
                                     learning_rate=config.lr, weight_decay=config.weight_decay,
                                     save_strategy="no", eval_strategy="no", logging_strategy="no", report_to=[],
                                     use_cpu=True, disable_tqdm=True, seed=0,
                                     train_sampling_strategy="group_by_length" if group_by_length else "random")
        trainer = Trainer(model=model, args=training, train_dataset=Dataset.from_list(rows),
                          data_collator=DataCollatorForTokenClassification(tokenizer))
        started = time.perf_counter()
        trainer.train()
    return time.perf_counter() - started


def one(args) -> dict:
    import torch

    from pram.logs import quiet_libraries

    quiet_libraries()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    seconds = {"pram": run_pram, "hf": lambda a: run_hf(a, False), "hf-grouped": lambda a: run_hf(a, True)}
    elapsed = seconds[args.one](args)
    return {"side": args.one, "seconds": elapsed, "sentences_per_s": args.steps * args.batch_size / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--encoder", default="me5-small")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args)))
        return
    results = {}
    for side in ("hf", "pram", "hf-grouped"):
        argv = [sys.executable, __file__, "--one", side, "--steps", str(args.steps), "--threads", str(args.threads),
                "--batch-size", str(args.batch_size), "--encoder", args.encoder]
        done = subprocess.run(argv, check=False, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{side} failed:\n{done.stderr[-3000:]}")
        results[side] = json.loads(done.stdout.strip().splitlines()[-1])
        print(results[side], flush=True)
    names = {"hf": "HF `Trainer` (run_ner.py recipe, defaults)",
             "hf-grouped": "HF `Trainer`, batches grouped by length", "pram": "`pram train --apc none` loop"}
    base = results["hf"]["sentences_per_s"]
    rows = [[names[s], f"{r['seconds']:.1f}", f"{r['sentences_per_s']:.1f}", f"{r['sentences_per_s'] / base:.2f}"]
            for s, r in results.items()]
    body = table(["side", "seconds (the steps)", "sentences/s", "ratio to HF defaults"], rows)
    ratio = results["pram"]["sentences_per_s"] / base
    body += (f"\n\n{args.steps} steps of {args.batch_size} CoNLL-2003 English training sentences, embeddings "
             f"and the bottom 3 layers frozen on both sides, "
             f"AdamW at the laptop preset's learning rate. pram trains **{ratio:.2f}x** as many sentences per "
             f"second as "
             f"the HuggingFace recipe with its defaults (target: at least 1.3x). The gain is padding: pram draws "
             f"batches of similar length, the default `Trainer` pads random batches to their longest sentence.")
    write_section("hf-throughput", "Training throughput against the HuggingFace Trainer", body, args.threads)


if __name__ == "__main__":
    main()

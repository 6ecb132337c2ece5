"""Does the model at the end of a trial swing, and how much does the dev sample add? (issue 44, points 1 and 2)

    python benchmarks/end_of_trial.py [--seeds 0,1,2] [--arms constant,linear,ema,tail,linear+ema] [--parallel 2]

Each arm trains the laptop search's trial (tune/search.py's SEARCH_DEFAULTS["laptop"]: 150 steps of 8 sentences,
an evaluation every 50 steps on the first 200 German dev sentences, English -> German) with each seed, one torch
thread a run, --parallel runs at a time. Arms: `constant` (the search's rate throughout), `linear` (HuggingFace's
warm-up over 10% of the steps, then linear decay to 0), `ema` and `tail` (weight averaging, pram/averaging.py,
at TrainConfig's defaults: decay 0.99 with its warm-up; the uniform mean from half-way), `linear+ema`,
`linear+tail`.

For every run the weights scored at its last two evaluations (steps 100 and 150: the average where the arm
averages) tag the whole German dev set and, at step 150, the whole German test set. From them:
- the swing: |dev F1 at 150 - dev F1 at 100|, on the search's 200 sentences and on the whole dev set;
- the seed sd of the last evaluation's dev F1 and the test F1 of the model at the end of the trial;
- the sample curve: for 200, 500 and 1,000 dev sentences drawn at random (400 draws), the sd that the sample adds
  to a run's F1 against the whole dev set, and the share of pairs of runs (every arm and seed) that such a
  sample orders otherwise than the whole dev set does, beside the seconds that tagging the sample costs.

Runs go to runs/end-of-trial/<arm>-seed<seed>/ and each writes result.json there when done, so a second call
does only what is missing.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from common import mean_sd, table, write_section

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs" / "end-of-trial"
ARMS = {
    "constant": {},
    "linear": dict(lr_schedule="linear", warmup=0.1),
    "ema": dict(average="ema"),
    "tail": dict(average="tail"),
    "linear+ema": dict(lr_schedule="linear", warmup=0.1, average="ema"),
    "linear+tail": dict(lr_schedule="linear", warmup=0.1, average="tail"),
}
SAMPLES = (200, 500, 1000)
DRAWS = 400


def run_one(arm: str, seed: int, smoke: bool) -> None:
    """Train one arm with one seed; tag the whole dev and test sets with the weights of its last evaluations."""
    import torch
    from safetensors.torch import load_file

    from pram.config import preset
    from pram.evaluate import entity_scores, predict
    from pram.inputs import prepare_data
    from pram.train import build_model, train
    from tune.settings import SEARCH_DEFAULTS

    out = RUNS / f"{arm}-seed{seed}"
    shutil.rmtree(out, ignore_errors=True)
    trial = {} if smoke else SEARCH_DEFAULTS["laptop"]["train"]
    config = preset("smoke" if smoke else "laptop", dataset="conll", sources=("en",), target="de", **trial,
                    **ARMS[arm], seed=seed, threads=1, quiet=True, out_dir=str(out / "run"))
    data = prepare_data(config)
    steps = (config.max_steps - config.eval_every, config.max_steps)
    kept = {}

    def keep(metrics, checkpoint, last):  # `last` is written at every evaluation (save_every 0)
        if metrics["step"] in steps:
            kept[metrics["step"]] = shutil.copytree(checkpoint, out / f"at-{metrics['step']}")

    started = time.perf_counter()
    final = train(config, data, report=keep, score_test=False, best_weights=())
    train_s = time.perf_counter() - started
    full = prepare_data(replace(config, eval_sentences=None, test_sentences=None))
    model = build_model(config, data, "cpu")
    names = data.label_names
    result = {"arm": arm, "seed": seed, "train_s": train_s, "steps": list(steps),
              "objective": [h["target_dev_f1"] for h in final["history"]],
              "objective_steps": [h["step"] for h in final["history"]], "dev": {}}
    for step in steps:
        tensors = load_file(kept[step] / "trainer.safetensors")
        averaged = {k[len("average."):]: v for k, v in tensors.items() if k.startswith("average.")}
        model.load_state_dict(averaged or load_file(kept[step] / "model.safetensors"), strict=False)
        splits = [("dev", full.dev["de"])] + ([("test", full.test["de"])] if step == steps[-1] else [])
        for split, encoded in splits:
            t0 = time.perf_counter()
            with torch.no_grad():
                words = predict(model, encoded, full.pad_token_id, config.eval_batch_size).words
            seconds = time.perf_counter() - t0
            gold = [[names[t] for t in tags] for tags in encoded["ner_tags"]]
            pred = [[names[t] if t >= 0 else "O" for t in tags] for tags in words]
            f1 = entity_scores(gold, pred)["f1"]
            if split == "dev":
                result["dev"][str(step)] = {"f1": f1, "seconds": seconds, "sentences": len(encoded),
                                            "pred": pred}
            else:
                result["test_f1"], result["test_sentences"] = f1, len(encoded)
    result["gold_dev"] = [[names[t] for t in tags] for tags in full.dev["de"]["ner_tags"]]
    (out / "result.json").write_text(json.dumps(result))
    for step in steps:
        shutil.rmtree(out / f"at-{step}")
    shutil.rmtree(out / "run" / "checkpoints", ignore_errors=True)


def run_all(arms: list[str], seeds: list[int], parallel: int, smoke: bool) -> None:
    todo = [(a, s) for s in seeds for a in arms if not (RUNS / f"{a}-seed{s}" / "result.json").is_file()]
    running: list[tuple[subprocess.Popen, str]] = []
    while todo or running:
        while todo and len(running) < parallel:
            arm, seed = todo.pop(0)
            argv = [sys.executable, __file__, "--one", arm, str(seed)] + (["--smoke"] if smoke else [])
            running.append((subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.PIPE, text=True),
                            f"{arm} seed {seed}"))
        time.sleep(2)
        for proc, name in list(running):
            if proc.poll() is not None:
                running.remove((proc, name))
                if proc.returncode:
                    sys.exit(f"{name} failed:\n{proc.stderr.read()[-3000:]}")
                print(f"done: {name}", flush=True)


def paired(results: dict, arm: str, baseline: str, seeds: list[int]) -> str:
    """Mean paired test-F1 difference from the baseline arm with its 95% Student-t interval, over seeds."""
    if arm == baseline:
        return "-"
    from pram.stats import compare_seeds

    return compare_seeds([results[(arm, s)]["test_f1"] for s in seeds],
                         [results[(baseline, s)]["test_f1"] for s in seeds]).interval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated")
    parser.add_argument("--arms", default="constant,linear,ema,tail,linear+ema",
                        help=f"comma-separated, of {', '.join(ARMS)}")
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time (one torch thread each)")
    parser.add_argument("--smoke", action="store_true", help="the smoke preset: checks the script in seconds")
    parser.add_argument("--one", nargs=2, metavar=("ARM", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args.one[0], int(args.one[1]), args.smoke)
        return
    arms, seeds = args.arms.split(","), [int(s) for s in args.seeds.split(",")]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        sys.exit(f"unknown arm {unknown[0]}: choose from {', '.join(ARMS)}")
    started = time.perf_counter()
    run_all(arms, seeds, args.parallel, args.smoke)
    results = {(a, s): json.loads((RUNS / f"{a}-seed{s}" / "result.json").read_text()) for a in arms for s in seeds}
    minutes = (time.perf_counter() - started) / 60
    first, last = (str(s) for s in next(iter(results.values()))["steps"])

    rows = []
    for arm in arms:
        runs = [results[(arm, s)] for s in seeds]
        change_obj = [r["objective"][-1] - r["objective"][-2] for r in runs]
        change_dev = [r["dev"][last]["f1"] - r["dev"][first]["f1"] for r in runs]
        rows.append([arm, mean_sd([r["objective"][-1] for r in runs]), mean_sd(change_obj),
                     mean_sd([r["dev"][last]["f1"] for r in runs]), mean_sd(change_dev),
                     f"{max(abs(c) for c in change_dev):.2f}", mean_sd([r["test_f1"] for r in runs]),
                     paired(results, arm, arms[0], seeds)])
    header = ["arm", "objective at the end (200 dev sentences, mean ± seed sd)",
              "its change from the evaluation before", "whole-dev F1 at the end", "its change from the evaluation "
              "before", "largest change, either way", "test F1 of the model at the end",
              f"test F1 minus {arms[0]}'s, same seed: mean [95% CI]"]
    body = table(header, rows)

    rng = random.Random(0)
    gold = next(iter(results.values()))["gold_dev"]
    whole = {key: r["dev"][last]["f1"] for key, r in results.items()}
    per_sentence = statistics.fmean(r["dev"][last]["seconds"] / r["dev"][last]["sentences"]
                                    for r in results.values())
    draws = {n: [rng.sample(range(len(gold)), n) for _ in range(DRAWS)] for n in SAMPLES}
    from pram.stats import f1, sentence_counts

    counts = {key: sentence_counts(gold, r["dev"][last]["pred"]) for key, r in results.items()}
    for key in results:  # the sums give seqeval's F1
        assert abs(float(f1(counts[key].sum(0))) - whole[key]) < 1e-6, key
    curve = []
    for n in (*SAMPLES, len(gold)):
        if n == len(gold):
            curve.append([f"{n} (whole)", "0", "0%", f"{n * per_sentence:.0f}"])
            continue
        sds, flips = [], []
        scores = {key: [float(f1(counts[key][idx].sum(0))) for idx in draws[n]] for key in results}
        for key in results:
            sds.append(statistics.stdev(s - whole[key] for s in scores[key]))
        for a, b in itertools.combinations(results, 2):
            if whole[a] == whole[b]:
                continue
            sign = whole[a] > whole[b]
            flips.append(statistics.fmean((x > y) != sign for x, y in zip(scores[a], scores[b])))
        curve.append([str(n), f"{statistics.fmean(sds):.2f}", f"{statistics.fmean(flips):.1%}",
                      f"{n * per_sentence:.0f}"])
    body += "\n\n" + table(["dev sentences (drawn at random)", "sd the sample adds to one run's F1",
                            f"pairs of the {len(results)} runs ordered otherwise than by the whole dev set",
                            "seconds to tag them (one thread)"], curve)
    body += (f"\n\nRuns: {len(arms)} arms x {len(seeds)} seeds ({', '.join(map(str, seeds))}), the same seeds in "
             f"every arm; {minutes:.0f} minutes for the runs this call made. Swings compare the evaluations at "
             f"steps {first} and {last}; the whole German dev set has {len(gold)} sentences, its test set "
             f"{next(iter(results.values()))['test_sentences']}. The sample rows draw {DRAWS} random samples of "
             f"each size from the dev predictions of every run's last evaluation.")
    if args.smoke:
        print(body)
        return
    write_section("end-of-trial", "The model at the end of a trial: schedule, weight averaging, dev sample", body, 1)


if __name__ == "__main__":
    main()

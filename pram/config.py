"""Training configuration: one frozen dataclass, and the presets `smoke`, `laptop` and `paper`.

A change is `dataclasses.replace(config, field=value)`; checks live in `__post_init__`.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
from dataclasses import dataclass

APC_SIDES = ("both", "source", "target", "none")
GUIDANCE = ("both", "prediction", "similarity")
SELECTIONS = ("target-dev", "source-dev")
SOURCE_SAMPLING = ("balanced", "proportional")
PRECISIONS = ("fp32", "bf16")
PROTO_LAYERS = ("last", "mean4")
PROTO_SPACES = ("hidden", "centered", "projection")
LAM_WEIGHTS = ("old", "new")
LR_SCHEDULES = ("constant", "linear")
AVERAGES = ("none", "ema", "tail")
TEST_LANGUAGES = ("all", "target")


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = "conll"
    """Corpus of every language: `conll` (en, de, es, nl) or `wikiann` (en, ar, hi, zh, ...)."""
    sources: tuple[str, ...] = ("en",)
    """Labelled source languages; more than one is multi-source PRAM (one prototype bank each, §3.5)."""
    target: str = "de"
    """Target language: its training split is used without labels."""
    eval_languages: tuple[str, ...] = ()
    """Further languages whose test sets the final model tags zero-shot (reported, never used to choose)."""
    encoder: str = "me5-small"
    """HuggingFace name or folder, `me5-small` (the offline default) or `tiny` (a random 2-layer BERT)."""
    data_dir: str | None = None
    """Root of the corpora; None: $PRAM_DATA_DIR, then ./data, then ../shared/data."""
    cache_dir: str | None = None
    """Arrow and encoder cache; None: $PRAM_CACHE_DIR, then ~/.cache/pram."""

    # Model (§4.2)
    max_length: int = 128
    """Pieces per sentence, special tokens included; words past it are not seen and tagged O."""
    frozen_layers: int = 3
    """Bottom encoder layers kept frozen (the embeddings too, with freeze_embeddings)."""
    freeze_embeddings: bool = True
    """Keep the encoder's embeddings frozen too (its largest matrix in a multilingual vocabulary)."""
    head_dropout: float | None = None
    """Dropout before the linear classifier; None: the encoder's hidden_dropout_prob (0.1 for me5-small, mBERT)."""

    # Optimisation (Algorithm 1)
    batch_size: int = 32
    """Labelled sentences per step from each source language (see source_sampling)."""
    source_sampling: str = "balanced"
    """Multi-source batches: balanced (batch_size from every source) or proportional (the same total,
    n_sources * batch_size, shared in proportion to each source's training sentences, at least 1 each)."""
    target_batch_size: int | None = None
    """Unlabelled target sentences per step; None: batch_size."""
    lr: float = 5e-5
    """AdamW's learning rate (the peak, with lr_schedule linear)."""
    lr_schedule: str = "constant"
    """constant, or linear: from 0 to lr over the warm-up, then down to 0 at max_steps (HuggingFace Trainer's
    default, get_linear_schedule_with_warmup)."""
    warmup: float = 0.0
    """Fraction of max_steps the linear schedule warms up over."""
    weight_decay: float = 0.01
    """AdamW's decoupled weight decay."""
    average: str = "none"
    """Weight averaging (pram/averaging.py): none; ema (an exponential moving average of the weights, decay
    average_decay after a warm-up); tail (the uniform mean of the weights from average_start on). Evaluation,
    selection and the saved models use the average."""
    average_decay: float = 0.99
    """Decay of the ema average, reached once (1 + n) / (10 + n) passes it (n: updates so far)."""
    average_start: float = 0.5
    """Fraction of max_steps after which the tail average begins."""
    max_steps: int = 400
    """Training steps (Algorithm 1's iterations): a labelled batch per source and, once the target term is on, an
    unlabelled target batch each."""
    eval_every: int = 100
    """Steps between evaluations on the dev sets (and at the last step): where checkpoints are kept and, in a
    search, ASHA's rungs."""
    patience: int | None = None
    """Stop after this many evaluations without a better selection metric; None: never."""
    train_sentences: int | None = None
    """Use a seeded random subset of this many sentences of each training split; None: all."""
    eval_sentences: int | None = None
    """Evaluate on the first N sentences of each dev set; None: all."""
    source_eval_sentences: int | None = None
    """The first N sentences of each source's dev set instead (the source-dev rule and objective read them; the
    target-dev objective reads the target's alone); None: as eval_sentences."""
    test_sentences: int | None = None
    """Score the final model on the first N sentences of each test set; None: all (every reported test F1)."""
    test_languages: str = "all"
    """Test sets the final model is scored on: all (every source, the target and eval_languages) or target (the
    target's alone: what a verdict reads, at a quarter of the tagging on CoNLL)."""
    eval_batch_size: int = 64
    """Sentences a batch when tagging dev and test sets."""

    # PRAM (§3.3-3.5, Appendix A)
    apc: str = "both"
    """Which APC terms are on: both, source (w/o T-C), target (w/o S-C), none (w/o C = BERT-f)."""
    guidance: str = "both"
    """Gradient paths of APC (§4.6): both, prediction (PG: p fixed), similarity (SG: q fixed)."""
    tau: float = 0.2
    """Temperature of the similarity softmax (Eq. 7)."""
    lam: float = 0.9
    """Moving-average coefficient of the prototypes (Eq. 5); which side it weights is lam_weights."""
    lam_weights: str = "old"
    """Which side of Eq. 5 lam weights: old (the prototype, as in Xie et al. 2018: a slow average) or new (the
    batch mean, the printed text read literally)."""
    proto_layers: str = "last"
    """Representation of prototypes and q: last (the last layer, the paper) or mean4 (mean of the last four)."""
    proto_space: str = "hidden"
    """Space of the cosine of Eq. 6: hidden (the paper), centered (after subtracting a running mean of the
    source representations), projection (a small head, L2-normalised, trained by the APC terms only)."""
    proto_dim: int = 128
    """Output size of the projection head (proto_space projection)."""
    alpha: float = 1.0
    """Weight of the source consistency term (Eq. 9)."""
    beta: float = 1.0
    """Weight of the target consistency term (Eq. 9), reached after beta_start and beta_ramp."""
    gamma: float | None = 1.5
    """Non-entity down-sampling rate (Appendix A); None: no down-sampling."""
    beta_start: float = 0.5
    """Fraction of max_steps before which the target term is off (a choice beyond the paper, see README)."""
    beta_ramp: float = 0.0
    """Fraction of max_steps over which the target weight then rises linearly to beta."""
    collapse_ratio: float = 0.25
    """Flag a collapse when the target entity share falls below this fraction of the source's."""

    # Selection and bookkeeping
    selection: str = "target-dev"
    """Metric that picks the kept checkpoint: target-dev (the paper's; uses target labels) or source-dev."""
    seed: int = 0
    """Seed of the initial classifier, the batches, dropout and down-sampling: one seed, one run, bit for bit."""
    device: str = "auto"
    """auto (a GPU where torch sees one, else the CPU), cpu, cuda or cuda:N."""
    precision: str = "fp32"
    """Encoder and classifier forward passes in fp32 or under bf16 autocast (for a GPU from A100 on; a CPU without
    AMX or AVX-512 BF16 runs bf16 far slower); weights, optimizer state, prototypes and the loss stay fp32."""
    threads: int | None = None
    """torch threads; None: leave torch's default (Ray sets 1 per CPU of a trial)."""
    out_dir: str = "runs/train"
    """Where the run writes config.json, metrics.json and checkpoints/."""
    quiet: bool = False
    """No progress bar or tables (inside a search)."""

    def __post_init__(self):
        checks = [
            (self.apc in APC_SIDES, f"apc must be one of {APC_SIDES}"),
            (self.guidance in GUIDANCE, f"guidance must be one of {GUIDANCE}"),
            (self.selection in SELECTIONS, f"selection must be one of {SELECTIONS}"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}"),
            (self.proto_layers in PROTO_LAYERS, f"proto_layers must be one of {PROTO_LAYERS}"),
            (self.proto_space in PROTO_SPACES, f"proto_space must be one of {PROTO_SPACES}"),
            (self.lam_weights in LAM_WEIGHTS, f"lam_weights must be one of {LAM_WEIGHTS}"),
            (self.proto_dim > 0, "proto_dim must be positive"),
            (self.source_sampling in SOURCE_SAMPLING, f"source_sampling must be one of {SOURCE_SAMPLING}"),
            (len(self.sources) >= 1, "give at least one source language"),
            (self.target not in self.sources, f"target {self.target} is also a source"),
            (self.tau > 0, "tau must be positive"),
            (0 <= self.lam < 1, "lam must be in [0, 1)"),
            (self.gamma is None or self.gamma > 0, "gamma must be positive"),
            (0 <= self.beta_start <= 1 and 0 <= self.beta_ramp <= 1, "beta_start and beta_ramp are fractions"),
            (self.max_steps > 0 and self.eval_every > 0 and self.batch_size > 0, "steps and sizes must be positive"),
            (self.target_batch_size is None or self.target_batch_size > 0, "target_batch_size must be positive"),
            (self.frozen_layers >= 0, "frozen_layers must not be negative"),
            (self.lr > 0 and self.weight_decay >= 0, "lr must be positive and weight_decay not negative"),
            (self.lr_schedule in LR_SCHEDULES, f"lr_schedule must be one of {LR_SCHEDULES}"),
            (0 <= self.warmup < 1, "warmup is a fraction of max_steps, in [0, 1)"),
            (self.average in AVERAGES, f"average must be one of {AVERAGES}"),
            (0 < self.average_decay < 1, "average_decay must be in (0, 1)"),
            (0 <= self.average_start < 1, "average_start is a fraction of max_steps, in [0, 1)"),
            (self.test_languages in TEST_LANGUAGES, f"test_languages must be one of {TEST_LANGUAGES}"),
            (self.head_dropout is None or 0 <= self.head_dropout < 1, "head_dropout must be in [0, 1)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def target_batch(self) -> int:
        return self.target_batch_size or self.batch_size

    def source_batch_sizes(self, sentences: list[int]) -> list[int]:
        """Sentences per step from each source, given each source's number of training sentences."""
        if self.source_sampling == "balanced":
            return [self.batch_size] * len(sentences)
        total = self.batch_size * len(sentences)
        return [max(1, round(total * n / sum(sentences))) for n in sentences]

    @property
    def beta_start_step(self) -> int:
        return round(self.beta_start * self.max_steps)

    @property
    def beta_ramp_steps(self) -> int:
        return round(self.beta_ramp * self.max_steps)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names}
        return cls(**values)


CHOICES = {"apc": APC_SIDES, "guidance": GUIDANCE, "selection": SELECTIONS, "source_sampling": SOURCE_SAMPLING,
           "precision": PRECISIONS, "proto_layers": PROTO_LAYERS, "proto_space": PROTO_SPACES,
           "lam_weights": LAM_WEIGHTS, "lr_schedule": LR_SCHEDULES, "average": AVERAGES,
           "test_languages": TEST_LANGUAGES}
"""The fields with a fixed set of values: their flags offer them (`--help` lists them)."""

FIELD_GROUPS = {  # --help's sections, in this order; a field in none is "advanced"
    "data": ("dataset", "sources", "target", "eval_languages", "train_sentences", "data_dir", "cache_dir",
             "max_length"),
    "model": ("encoder", "frozen_layers", "freeze_embeddings", "head_dropout"),
    "APC (the method)": ("apc", "tau", "lam", "alpha", "beta", "gamma", "beta_start", "beta_ramp", "proto_layers",
                         "proto_space", "proto_dim", "guidance", "lam_weights"),
    "schedule": ("batch_size", "target_batch_size", "source_sampling", "lr", "lr_schedule", "warmup",
                 "weight_decay", "max_steps", "average", "average_decay", "average_start", "seed"),
    "evaluation": ("eval_every", "eval_sentences", "source_eval_sentences", "test_sentences", "test_languages",
                   "selection", "patience"),
}
"""`pram train --help`'s argument groups."""

# The settings a search may vary (tune/space.py), in the order a trial suggests them: numbers, drawn from
# ranges (INTEGER ones as whole numbers) or a list, and names, drawn as a choice. Not the step budget
# (max_steps, eval_every): ASHA compares trials at the same evaluation rounds.
SEARCHABLE = ("tau", "lam", "alpha", "beta", "gamma", "beta_start", "beta_ramp", "lr", "warmup", "weight_decay",
              "head_dropout", "batch_size", "target_batch_size", "frozen_layers", "proto_dim", "average_decay",
              "average_start")
INTEGER = ("batch_size", "target_batch_size", "frozen_layers", "proto_dim")
CATEGORICAL = ("proto_layers", "proto_space", "lam_weights", "lr_schedule", "source_sampling", "average")

PRESETS: dict[str, dict] = {
    # Seconds on a CPU: a random 2-layer BERT, a few hundred real sentences. For tests and --smoke-test.
    # A random model must learn its word embeddings: nothing is frozen.
    "smoke": dict(encoder="tiny", batch_size=8, max_steps=60, eval_every=20, train_sentences=200,
                  eval_sentences=40, test_sentences=40, lr=3e-3, max_length=64, frozen_layers=0,
                  freeze_embeddings=False, beta_start=1 / 3),
    # Minutes on a 2-core laptop: the offline multilingual encoder, short schedule, larger learning rate.
    # Dev sets are cut to their first 1,000 sentences for speed; test sets are whole.
    "laptop": dict(encoder="me5-small", batch_size=16, max_steps=400, eval_every=100, lr=5e-5,
                   eval_sentences=1000),
    # The paper's settings (§4.2), for a GPU.
    "paper": dict(encoder="bert-base-multilingual-cased", batch_size=128, max_steps=20000, eval_every=500,
                  patience=10, lr=1e-5, eval_sentences=None),
}


def preset(name: str, **overrides) -> TrainConfig:
    """A preset's config, with any field replaced."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return TrainConfig(**{**PRESETS[name], **overrides})


DEFAULT_PRESET = "laptop"


def field_docs() -> dict[str, str]:
    """The docstring under each field of TrainConfig (for --help), read from the source with `ast`."""
    body = ast.parse(inspect.getsource(TrainConfig)).body[0].body
    docs = {}
    for stmt, nxt in itertools.pairwise(body):
        if isinstance(stmt, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[stmt.target.id] = " ".join(str(nxt.value.value).split())
    return docs

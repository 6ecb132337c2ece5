"""Settings built once: the one road from plain values (dataset, mode, languages, preset, overrides) to a
`TrainConfig`. `pram train`, `pram experiment`, a search's trials and its final stage all come through here."""

from __future__ import annotations

from pram.config import DEFAULT_PRESET, TrainConfig, preset
from pram.errors import UserError

CONLL_LANGS = ("en", "de", "es", "nl")
DEFAULT_TARGET = {"conll": "de", "wikiann": "ar"}


def corpus_languages(dataset: str, data_dir: str | None = None) -> tuple[str, ...]:
    """The languages of a corpus: CoNLL's four, or every WikiAnn folder under the data root."""
    if dataset == "conll":
        return CONLL_LANGS
    from pram.data.corpora import available_languages, resolve_data_dir

    return tuple(available_languages("wikiann", resolve_data_dir(data_dir)))


def train_config(dataset: str = "conll", mode: str = "single", target: str | None = None,
                 sources: tuple[str, ...] | None = None, preset_name: str = DEFAULT_PRESET,
                 eval_languages: tuple[str, ...] | None = None, out_dir: str | None = None,
                 data_dir: str | None = None, cache_dir: str | None = None, **overrides) -> TrainConfig:
    """A preset's TrainConfig with the run's languages and any field overridden.

    mode single: `sources` (default en); multi: every other language of the corpus unless `sources` names them.
    eval_languages None: every language of the corpus that is neither target nor source (tagged zero-shot).
    A value TrainConfig refuses is one UserError line."""
    target = target or DEFAULT_TARGET[dataset]
    langs = corpus_languages(dataset, data_dir)
    if mode == "multi":
        sources = tuple(sources or (lang for lang in langs if lang != target))
    else:
        sources = tuple(sources or ("en",))
        if len(sources) > 1:
            raise UserError(f"--mode single takes one source, got {','.join(sources)}: use --mode multi")
    if eval_languages is None:
        eval_languages = tuple(lang for lang in langs if lang != target and lang not in sources)
    out_dir = out_dir or f"runs/{mode}-{dataset}-{'+'.join(sources)}-to-{target}-{preset_name}"
    try:
        return preset(preset_name, **overrides, dataset=dataset, sources=sources, target=target,
                      eval_languages=tuple(eval_languages), out_dir=out_dir, data_dir=data_dir,
                      cache_dir=cache_dir)
    except (ValueError, TypeError) as e:
        raise UserError(str(e)) from None


def targets_of(dataset: str, mode: str, data_dir: str | None = None) -> tuple[str, ...]:
    """The languages a search may target: single-source, every language but English; multi, every one."""
    return tuple(lang for lang in corpus_languages(dataset, data_dir) if mode == "multi" or lang != "en")


def train_command(config: TrainConfig) -> str:
    """The `pram train` command that trains `config` again: every field that differs from the default preset,
    as its flag (the run's folders, threads and device left to the user)."""
    import shlex

    base = preset(DEFAULT_PRESET)
    words = ["pram", "train", "--dataset", config.dataset]
    if len(config.sources) > 1:
        words += ["--mode", "multi"]
    words += ["--source", ",".join(config.sources), "--target", config.target]
    skip = {"dataset", "sources", "target", "out_dir", "data_dir", "cache_dir", "quiet", "threads", "device"}
    others = tuple(lang for lang in corpus_languages(config.dataset, config.data_dir)
                   if lang != config.target and lang not in config.sources)
    if tuple(config.eval_languages) != others:  # the CLI's default: every other language of the corpus
        words += ["--eval-languages", ",".join(config.eval_languages)]
    for name, value in config.to_dict().items():
        if name in skip or name == "eval_languages" or value == getattr(base, name):
            continue
        text = "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        words += [f"--{name.replace('_', '-')}", text]
    return " ".join(shlex.quote(w) for w in words)

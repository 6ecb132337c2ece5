"""Settings built once: the one road from plain values (dataset, mode, languages, preset, overrides) to a
`TrainConfig`. `pram train`, `pram experiment`, a search's trials and its final stage all come through here."""

from __future__ import annotations

from pathlib import Path

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


def search_config(dataset: str, mode: str, target: str, preset_name: str, train: dict, objective: str, seed: int,
                  **folders) -> TrainConfig:
    """Where every trial of a search for `target` starts: the preset with the search's training overrides, its
    objective as the selection rule, its seed. folders: out_dir, data_dir, cache_dir."""
    from dataclasses import replace

    return replace(train_config(dataset, mode, target, preset_name=preset_name, **folders, **train),
                   selection=objective, seed=seed)


def targets_of(dataset: str, mode: str, data_dir: str | None = None) -> tuple[str, ...]:
    """The languages a search may target: single-source, every language but English; multi, every one."""
    return tuple(lang for lang in corpus_languages(dataset, data_dir) if mode == "multi" or lang != "en")


def train_command(config: TrainConfig) -> str:
    """The `pram train` command that trains `config` again: every field that differs from the default preset,
    as its flag (the run's folders, threads and device left to the user)."""
    import shlex

    from pram.flags import config_flags

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
    words += config_flags({name: value for name, value in config.to_dict().items()
                           if name not in skip and name != "eval_languages" and value != getattr(base, name)})
    return " ".join(shlex.quote(w) for w in words)


def settings_from_file(path: str | Path, target: str | None = None) -> TrainConfig:
    """The TrainConfig a search's best.json holds for `target` (its only target when None): what that target's
    best trial trained with. A best.json from before it recorded `train_config` is rebuilt from the run.json
    beside it (the preset, the search's training overrides, the trial's settings). The folders (out, data, cache)
    are left to the run that reads it."""
    import json
    from dataclasses import replace

    from pram.errors import at
    from pram.results import RUN

    path = Path(path)
    try:
        best = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{at(path)}: no such file: pass the best.json of a search's results folder") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{at(path)}: not a best.json of a search ({e})") from None
    entries = {t: e for t, e in best.items() if isinstance(e, dict) and e.get("config") is not None} \
        if isinstance(best, dict) else {}
    if not entries:
        raise UserError(f"{at(path)}: no target with settings: not the best.json of a search by tune/search.py")
    if target is None and len(entries) > 1:
        raise UserError(f"{at(path)}: settings for {', '.join(entries)}: say which with --target")
    target = target or next(iter(entries))
    if target not in entries:
        raise UserError(f"{at(path)}: no settings for target {target}: it has {', '.join(entries)}")
    entry = entries[target]
    try:
        if "train_config" in entry:
            config = TrainConfig.from_dict(entry["train_config"])
        else:
            run = json.loads((path.parent / RUN).read_text(encoding="utf-8"))
            config = replace(search_config(run["dataset"], run["mode"], target, run["preset"], run.get("train", {}),
                                           run["objective"], run["seed"]), **entry["config"])
    except FileNotFoundError:
        raise UserError(f"{at(path)}: an older best.json (no train_config) without the run.json of its search "
                        "beside it: copy run.json next to it, or give the settings as flags") from None
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as e:
        raise UserError(f"{at(path)}: its settings for {target} are not ones this pram reads ({e})") from None
    return replace(config, out_dir=TrainConfig.out_dir, data_dir=None, cache_dir=None, quiet=False, threads=None)

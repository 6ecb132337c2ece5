"""The flags of TrainConfig's fields, for both command lines (`pram train`, `pram experiment`, tune/search.py):
one builder, so that neither parser imports the other."""

from __future__ import annotations

import argparse
from dataclasses import fields

from pram.config import CHOICES, DEFAULT_PRESET, FIELD_GROUPS, PRESETS, TrainConfig, field_docs


def add_config_flags(parser, skip=frozenset(), dest_prefix: str = "", show_default: bool = True,
                     grouped: bool = False, title: str = "") -> None:
    """One flag per TrainConfig field not in `skip`, its help the field's docstring, the values it takes listed
    where they are a fixed set (config.CHOICES). grouped: in --help sections (config.FIELD_GROUPS, then
    "advanced", each titled `title` + its name); else all on `parser` (which may itself be a group).

    A flag not given is absent from the parsed namespace (argparse.SUPPRESS), so `--gamma none` sets a value
    instead of reading as "not given".
    """
    docs = field_docs()
    groups = {}
    if grouped:
        groups = {name: parser.add_argument_group(title + name) for name in (*FIELD_GROUPS, "advanced")}
    where = {f: name for name, names in FIELD_GROUPS.items() for f in names}
    for f in fields(TrainConfig):
        if f.name in skip:
            continue
        base = f.type.replace(" | None", "")
        kind = {"int": int, "float": float, "bool": _bool, "str": str}[base]
        default = f" (laptop preset: {PRESETS[DEFAULT_PRESET].get(f.name, f.default)})" if show_default else ""
        target = groups.get(where.get(f.name, "advanced"), parser) if grouped else parser
        choices = CHOICES.get(f.name)
        target.add_argument(f"--{f.name.replace('_', '-')}", dest=f"{dest_prefix}{f.name}",
                            default=argparse.SUPPRESS, type=_optional(kind) if "None" in f.type else kind,
                            choices=choices, metavar="{" + ",".join(choices) + "}" if choices else base.upper(),
                            help=docs.get(f.name, "") + default)


def config_flags(values: dict) -> list[str]:
    """The flags that set these TrainConfig fields, as add_config_flags' parsers read them back: `--name value`,
    None as `none` and booleans as `true`/`false`."""
    words = []
    for name, value in values.items():
        text = "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        words += [f"--{name.replace('_', '-')}", text]
    return words


def _bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _optional(kind):
    def parse(value: str):
        return None if value.lower() == "none" else kind(value)
    parse.__name__ = kind.__name__
    return parse

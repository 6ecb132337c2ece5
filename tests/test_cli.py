"""The command lines read: every flag explains itself, and every flag with a fixed set of values lists them."""

import argparse

import pytest

from pram.cli import build_parser as pram_parser
from pram.config import CHOICES
from tune.search import build_parser as search_parser


def actions(parser: argparse.ArgumentParser, name: str):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, subparser in action.choices.items():
                yield from actions(subparser, f"{name} {sub}")
        elif action.dest != "help":
            yield name, action


@pytest.mark.parametrize("parser, name", [(pram_parser(), "pram"), (search_parser(), "tune/search.py")])
def test_every_flag_has_help_and_every_fixed_set_is_listed(parser, name):
    found = list(actions(parser, name))
    assert len(found) > 50
    for where, action in found:
        flag = action.option_strings[-1] if action.option_strings else action.dest
        assert (action.help and action.help != argparse.SUPPRESS) or (where == "pram" and action.dest == "command"), \
            f"{where} {flag}: no help text"
        field = action.dest.removeprefix("train_")
        if field in CHOICES and action.option_strings:
            assert tuple(action.choices) == CHOICES[field], f"{where} {flag}: does not list {CHOICES[field]}"


def test_pram_train_help_is_in_sections():
    text = pram_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for section in ("data:", "model:", "APC (the method):", "schedule:", "evaluation:", "advanced:"):
        assert f"\n{section}\n" in text, section
    assert "--lr-schedule {constant,linear}" in text and "--average {none,ema,tail}" in text

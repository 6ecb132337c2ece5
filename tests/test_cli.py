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


def test_the_search_help_is_in_sections_and_its_training_flags_in_pram_trains():
    text = search_parser().format_help()
    sections = ["what to search:", "where it runs (a laptop's cores by default, or a Ray cluster):",
                "files, checkpoints and --resume:", *(f"every trial's training: {name}:" for name in
                                                      ("data", "model", "schedule", "evaluation", "advanced"))]
    for section in sections:
        assert f"\n{section}\n" in text, section
    assert text.index("\nwhat to search:\n") < text.index("  --dataset") < text.index("\nwhere it runs")
    assert text.index("every trial's training: schedule:") < text.index("  --lr FLOAT")


def test_no_import_circle_and_no_sys_path_edit():
    """Every import between pram/ and tune/ modules, read from the source (those inside functions too): no module
    reaches itself again, and nothing edits sys.path (benchmarks and tests import the installed packages)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    modules = {}
    for package in ("pram", "tune"):
        for path in (root / package).rglob("*.py"):
            name = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found = set()
        for node in ast.walk(tree):  # at module level and inside functions (which import when called) alike
            if isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        # (a module's own packages are being imported already when it runs: not an edge back to them)
        graph[name] = {m for m in found if m in modules and m != name and not name.startswith(m + ".")}

    def reaches(start: str) -> bool:
        seen, todo = set(), list(graph[start])
        while todo:
            m = todo.pop()
            if m == start:
                return True
            if m not in seen:
                seen.add(m)
                todo += graph[m]
        return False

    assert [m for m in graph if reaches(m)] == []
    edits = [str(p.relative_to(root)) for p in root.rglob("*.py") if ".venv" not in p.parts
             and p.name != "test_cli.py" and "sys.path" in p.read_text(encoding="utf-8")]
    assert edits == []


def test_the_search_help_states_each_presets_defaults():
    from tune.settings import SEARCH_DEFAULTS

    text = " ".join(search_parser().format_help().split())
    for name, d in SEARCH_DEFAULTS.items():
        assert f"{name} {d['num_samples']} trials a target, {d['final_seeds']} final seeds" in text
    assert "laptop 4 trials a target, 2 final seeds, FIFO (no early stopping), 150 steps a trial" in text

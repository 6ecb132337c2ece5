"""Fixtures shared by the test files."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from searches import run_search


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real corpora, at ../shared/data from the repository root (never copied into the repository)."""
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    assert path.is_dir(), f"the real corpora are missing: expected them at {path}"
    return path


@pytest.fixture(scope="session")
def docs_dir() -> Path:
    """The paper's text and notes, at ../shared/docs from the repository root."""
    path = Path(__file__).resolve().parents[1].parent / "shared" / "docs"
    assert (path / "PRAM-paper.txt").is_file(), f"the paper's text is missing: expected it at {path}"
    return path


@pytest.fixture(scope="session")
def smoke_search(tmp_path_factory, data_dir) -> SimpleNamespace:
    """One multi-source smoke search on CoNLL (target de, 4 trials, 2 final seeds and the no-APC baseline) with
    tests/spaces/every-kind.yaml (a setting of every kind a space offers), run once for every test that reads its
    results folder: out, the finished process, its cache, seconds."""
    root = tmp_path_factory.mktemp("smoke-search")
    out = root / "results" / "conll-multi-smoke"
    started = time.monotonic()
    space = Path(__file__).parent / "spaces" / "every-kind.yaml"
    run = run_search(out, data_dir, root / "cache", "--final-seeds", "2", "--space", str(space))
    return SimpleNamespace(out=out, run=run, cache=root / "cache", seconds=time.monotonic() - started)


@pytest.fixture
def pram(capsys):
    """The console script in this process (what `pram ARGS` runs): its exit status and what it printed.
    Keyword env_args are appended to the arguments."""
    from pram.cli import main

    def run(*args: str, env_args=()) -> SimpleNamespace:
        capsys.readouterr()
        returncode = main([*args, *env_args])
        out = capsys.readouterr()
        return SimpleNamespace(returncode=returncode, stdout=out.out, stderr=out.err)
    return run


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch) -> Path:
    """An empty cache folder, also set as $PRAM_CACHE_DIR so that nothing lands in ~/.cache/pram."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("PRAM_CACHE_DIR", str(cache))
    return cache

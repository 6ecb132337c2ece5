"""Fixtures shared by the test files."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real corpora, at ../shared/data from the repository root (never copied into the repository)."""
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    assert path.is_dir(), f"the real corpora are missing: expected them at {path}"
    return path


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch) -> Path:
    """An empty cache folder, also set as $PRAM_CACHE_DIR so that nothing lands in ~/.cache/pram."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("PRAM_CACHE_DIR", str(cache))
    return cache

"""Where pram keeps what it rebuilds: parsed corpora (Arrow) and encoders."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """`cache_dir`, else $PRAM_CACHE_DIR, else ~/.cache/pram."""
    return Path(cache_dir or os.environ.get("PRAM_CACHE_DIR") or "~/.cache/pram").expanduser()

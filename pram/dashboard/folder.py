"""A search's results folder as `pram report` reads it (the files tune/search.py writes; results/README.md).

Only the files are read, never Ray: a folder committed to git without its `ray/` still makes a page.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pram.errors import UserError, at

REQUIRED = ("run.json", "best.json", "trials.parquet", "history.parquet")
OBJECTIVE_METRICS = {"target-dev": "target_dev_f1", "source-dev": "source_dev_f1"}


@dataclass
class SearchFolder:
    path: Path
    run: dict
    """run.json: the search's settings (dataset, mode, targets, objective, final_seeds, train, ...)."""
    best: dict
    """best.json: per target, the best Optuna trial, its settings, sources and encoder."""
    trials: list[dict]
    history: list[dict]
    final: list[dict]
    """final.parquet's rows; older folders without `variant`, `selection` or `checkpoints` get PRAM, the
    search's objective and none."""

    @property
    def metric(self) -> str:
        """The column the search maximised."""
        return OBJECTIVE_METRICS.get(self.run.get("objective"), "target_dev_f1")

    @property
    def targets(self) -> list[str]:
        return list(self.run.get("targets") or self.best)

    @property
    def encoder(self) -> str:
        found = [e["encoder"] for e in self.best.values() if e and e.get("encoder")]
        return found[0] if found else self.run.get("train", {}).get("encoder", "unknown encoder")

    @property
    def optuna_db(self) -> Path | None:
        db = self.path / "optuna.db"
        return db if db.is_file() else None

    def final_row(self, target: str, variant: str, selection: str, lang: str) -> dict | None:
        return next((r for r in self.final if (r["target"], r["variant"], r["selection"], r["lang"])
                     == (target, variant, selection, lang)), None)

    def variants(self) -> list[str]:
        """The final stage's variants, PRAM first."""
        found = {r["variant"] for r in self.final}
        return [v for v in ("both", "none") if v in found] + sorted(found - {"both", "none"})


def search_strategy(run: dict) -> str:
    """How a search chose and stopped its trials, in words (run.json's sampler and scheduler; folders from
    before those flags were TPE with ASHA)."""
    seed = run.get("seed")
    chosen = (f"drawn at random (Optuna's RandomSampler, seed {seed})" if run.get("sampler") == "random"
              else f"proposed by Optuna TPE (seed {seed})")
    stopped = "each trained to the end" if run.get("scheduler") == "fifo" else "stopped early by ASHA"
    return f"{chosen} and {stopped}"


def read_folder(path: str | Path) -> SearchFolder:
    """Read a results folder; a folder that is not one is a UserError that names what is missing."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{at(path)}: no such folder: pass the results folder of a search, "
                        "e.g. results/conll-multi-laptop")
    missing = [name for name in REQUIRED if not (path / name).is_file()]
    if missing:
        raise UserError(f"{at(path)}: not the results folder of a search (no {', '.join(missing)}): pass a "
                        "folder that tune/search.py wrote, e.g. results/conll-multi-laptop")
    run, best = _json(path / "run.json"), _json(path / "best.json")
    lacking = [key for key in ("dataset", "mode", "targets", "objective") if key not in run]
    if lacking:
        raise UserError(f"{at(path / 'run.json')}: no {', '.join(lacking)}: not the settings of a search by "
                        "tune/search.py")
    final = _parquet(path / "final.parquet") if (path / "final.parquet").is_file() else []
    for row in final:
        row.setdefault("variant", "both")
        row.setdefault("selection", run.get("objective", "target-dev"))
        row.setdefault("checkpoints", None)
    trials, history = _parquet(path / "trials.parquet"), _parquet(path / "history.parquet")
    return SearchFolder(path, run, best, trials, history, final)


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{at(path)}: not valid JSON ({e}): the search that wrote it may have been cut off; "
                        "`tune/search.py --resume` writes it again") from None
    if not isinstance(value, dict):
        raise UserError(f"{at(path)}: expected a JSON object, found {type(value).__name__}")
    return value


def _parquet(path: Path) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except (OSError, pa.ArrowException) as e:
        raise UserError(f"{at(path)}: not a readable Parquet file ({e}): the search that wrote it may have "
                        "been cut off; `tune/search.py --resume` writes it again") from None


def write_atomically(path: Path, text: str) -> Path:
    """Write a temporary file beside `path`, then rename it: a reader sees the old file or the new one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the page is meant to be read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

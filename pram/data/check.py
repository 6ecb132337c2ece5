"""`pram data check PATH [--json]`: sentences, tokens and entities of one corpus file or of a language folder.

It reads the files directly (never the Arrow cache), so it shows what the reader makes of the files as they
are now.
"""

from __future__ import annotations

import json
from pathlib import Path

from pram.data.corpora import split_files
from pram.data.readers import count_entities, read_file
from pram.errors import UserError, at


def file_counts(path: str | Path) -> dict[str, int]:
    """Sentences (without -DOCSTART-), tokens, and entities after the IOB1-to-BIO repair, of one file."""
    sentences = read_file(path)
    return {"sentences": len(sentences), "tokens": sum(len(s.tokens) for s in sentences),
            "entities": sum(count_entities(s.tags) for s in sentences)}


def path_counts(path: str | Path) -> dict:
    """Counts of a file, or {split: counts} of the train/dev/test/extra files of a folder."""
    path = Path(path)
    if not path.is_dir():
        return file_counts(path)  # read_file says what is wrong with a path that is not a readable file
    files = split_files(path)
    if not files:
        raise UserError(f"{at(path)}: no train, dev, test or extra file (.txt or .tsv) in this folder: "
                        "give a language folder such as conll2003/en, or one corpus file")
    return {split: file_counts(file) for split, file in files.items()}


def data_check_command(path: str, as_json: bool) -> int:
    counts = path_counts(path)
    if as_json:
        print(json.dumps(counts))
        return 0
    from rich.console import Console
    from rich.table import Table

    rows = counts if Path(path).is_dir() else {Path(path).name: counts}
    table = Table(title=str(path), title_justify="left")
    table.add_column("split" if Path(path).is_dir() else "file")
    for column in ("sentences", "tokens", "entities"):
        table.add_column(column, justify="right")
    for name, row in rows.items():
        table.add_row(name, *(f"{row[c]:,}" for c in ("sentences", "tokens", "entities")))
    Console().print(table)
    return 0

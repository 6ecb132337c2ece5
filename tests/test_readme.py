"""The README's figures about the code are checked against the code, so that the two cannot drift apart."""

import re
from pathlib import Path

from pram.config import PRESETS, TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def _number(text: str) -> float | None:
    """`20,000, early stopping` -> 20000; `1e-5` -> 1e-05; `all` -> None."""
    found = re.match(r"[\d,.]+(?:e-?\d+)?", text.strip())
    return None if text.strip() == "all" or not found else float(found.group().replace(",", ""))


def test_the_presets_table_equals_presets_field_by_field():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| preset | encoder |"):].split("\n\n")[0].splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    rows = {}
    for line in table[2:]:
        cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))
        rows[re.sub(r"[`]|\s*\(default\)", "", cells["preset"])] = cells
    assert set(rows) == set(PRESETS)
    default = TrainConfig()
    for name, values in PRESETS.items():
        config = {**default.to_dict(), **values}
        cells = rows[name]
        encoder = {"tiny": "random 2-layer BERT"}.get(config["encoder"], config["encoder"])
        assert encoder in cells["encoder"], name
        assert _number(cells["batch (per source)"]) == config["batch_size"], name
        assert _number(cells["steps"]) == config["max_steps"], name
        assert ("early stopping" in cells["steps"]) == (config["patience"] is not None), name
        assert _number(cells["learning rate"]) == config["lr"], name
        dev, test = cells["dev / test sentences"].split("/")
        assert _number(dev) == config["eval_sentences"] and _number(test) == config["test_sentences"], name

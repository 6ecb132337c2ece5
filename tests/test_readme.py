"""The figures the README and docs/ quote about the code are checked against the code, so that the two cannot
drift apart; and every relative link of the documentation leads to a file."""

import re
from pathlib import Path

from pram.config import PRESETS, TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def docs_text() -> str:
    """README.md and every page of docs/, white space folded (a sentence may wrap anywhere)."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return " ".join(" ".join(p.read_text(encoding="utf-8").split()) for p in pages)


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


def test_the_search_ranges_and_laptop_defaults_the_readme_quotes_are_the_codes():
    from tune.settings import SEARCH_DEFAULTS
    from tune.space import PAPER_RANGES, Choice, Interval

    readme = docs_text()
    conll, wikiann = PAPER_RANGES["conll"], PAPER_RANGES["wikiann"]

    def number(x: float) -> str:  # as the README writes them: 0.15, 0.8, 1.0
        text = f"{x:.2f}".rstrip("0")
        return text + "0" if text.endswith(".") else text

    def span(r: Interval) -> str:
        return f"{number(r.low)}-{number(r.high)}"

    assert conll["alpha"] == conll["beta"] and wikiann["alpha"] == wikiann["beta"]
    assert conll["tau"] == wikiann["tau"] and conll["lam"] == wikiann["lam"] and conll["gamma"] == wikiann["gamma"]
    assert isinstance(conll["gamma"], Choice)
    gammas = ", ".join(f"{v:.1f}" for v in conll["gamma"].values)
    assert (f"The ranges are the paper's (τ {span(conll['tau'])}, λ {span(conll['lam'])}, α and β "
            f"{span(conll['alpha'])} on CoNLL and {span(wikiann['alpha'])} on WikiAnn, γ in {{{gammas}}})") in readme
    laptop = SEARCH_DEFAULTS["laptop"]
    train = laptop["train"]
    assert (f"On its laptop default ({laptop['num_samples']} trials and {laptop['final_seeds']} final seeds per "
            f"target, a shorter schedule than `pram train`'s laptop preset: {train['max_steps']} steps of batch "
            f"{train['batch_size']} on {train['train_sentences']:,} sentences per language, every trial trained "
            "to the end)") in readme
    assert laptop["scheduler"] == "fifo" and "(`--scheduler fifo`; `--scheduler asha` brings ASHA back" in readme


def test_the_wide_space_predict_chunks_and_importance_threshold_the_readme_quotes_are_the_codes():
    from pram.dashboard.importance import MIN_COMPLETE
    from pram.predict import CHUNK
    from tune.space import Choice, load_space, space_path

    readme = docs_text()
    for dataset in ("conll", "wikiann"):
        wide = load_space(space_path("wide", dataset))
        assert (wide["tau"].low, wide["tau"].log) == (0.02, True)
        assert (wide["lr"].low, wide["lr"].high, wide["lr"].log) == (1e-5, 3e-4, True)
        assert (wide["frozen_layers"].low, wide["frozen_layers"].high) == (0, 6)
        assert wide["batch_size"] == Choice((8, 16, 32))
        assert {"weight_decay", "head_dropout", "lr_schedule", "proto_space", "proto_layers"} <= set(wide)
    assert ("`wide` holds the paper's five with τ on a log scale down to 0.02, the learning rate on a log scale "
            "from 1e-5 to 3e-4 with its schedule, weight decay, head dropout, frozen layers 0-6, batch size 8/16/32 "
            "and the representation choices") in readme
    assert f"`pram predict` reads, tags and writes {CHUNK:,} sentences at a time" in readme
    assert f"shown from {MIN_COMPLETE} complete trials a target" in readme


def test_the_apc_verdicts_the_readme_quotes_follow_from_the_committed_runs():
    """The pooled intervals of the two APC verdicts, worked out again from results/*/runs.parquet."""
    import pyarrow.parquet as pq

    from pram.stats import compare_seeds

    root = Path(__file__).resolve().parents[1]
    readme, verdicts = (root / "README.md").read_text(), (root / "results" / "VERDICTS.md").read_text()
    for folder, targets in (("apc-distant", ("ar", "hi", "zh")), ("apc-geometry", ("de", "es", "nl"))):
        a, b = [], []
        for target in targets:
            rows = [r for r in pq.read_table(root / "results" / folder / target / "runs.parquet").to_pylist()
                    if (r["selection"], r["lang"]) == ("target-dev", target)]
            f1 = {(r["variant"], r["seed"]): r["f1"] for r in rows}
            seeds = sorted(s for v, s in f1 if v == "both")
            a += [f1[("both", s)] for s in seeds]
            b += [f1[("none", s)] for s in seeds]
        interval = compare_seeds(a, b).interval()
        assert interval.split(" (n=")[0] in readme and interval in verdicts, (folder, interval)


def test_every_relative_link_of_the_documentation_resolves():
    pages = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", ROOT / "results" / "README.md",
             *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)  # not code
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://|#|mailto:", target):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert broken == []
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 160

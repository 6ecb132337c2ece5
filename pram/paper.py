"""The paper's numbers (Tables 2-6 of PRAM, ACL 2023): test F1 in %, as printed, all with mBERT.

The one place they are written down: `pram experiment`, the search's summary and `pram report` read them
from here, and tests/test_report.py checks every number against the paper's text (../shared/docs).
Averages are transcribed as printed too: the paper's TMP average (49.39) is not the mean of its row.
"""

from __future__ import annotations

from dataclasses import dataclass

PAPER_ENCODER = "mBERT"
"""bert-base-multilingual-cased (§4.2); the baselines of Tables 2-4 are reported on it as well."""


@dataclass(frozen=True)
class PaperTable:
    number: str
    """As the paper numbers it: "2", "5a" (Table 5, part a), "6"."""
    caption: str
    dataset: str
    """conll or wikiann."""
    mode: str
    """single or multi: the sources of every row (Table 6: English, single-source)."""
    columns: tuple[str, ...]
    rows: dict[str, tuple[float | None, ...]]
    """Method -> one value per column; None where the paper's text has no number."""

    def value(self, method: str, column: str) -> float | None:
        row = self.rows.get(method)
        return None if row is None or column not in self.columns else row[self.columns.index(column)]


CONLL_COLUMNS = ("de", "es", "nl", "Avg.")
WIKIANN_COLUMNS = ("ar", "hi", "zh", "Avg.")
TABLE6 = "English (source) test F1 in the single-source settings"

TABLES: tuple[PaperTable, ...] = (
    PaperTable("2", "CoNLL-2002/2003, single-source (en)", "conll", "single", CONLL_COLUMNS, {
        "TMP": (57.33, 57.16, 49.46, 49.39),
        "BERT-f": (69.56, 74.96, 77.57, 74.03),
        "AdvCE": (71.90, 74.30, 77.60, 74.60),
        "BERT-RA": (70.48, 75.84, 79.52, 75.28),
        "TSL": (73.16, 76.75, 80.44, 76.78),
        "Unitrans": (73.61, 81.20, 77.30, 77.37),
        "AdvPicker": (75.01, 79.00, 82.90, 78.97),
        "RIKD": (75.48, 77.84, 82.46, 78.59),
        "MTMT": (76.80, 81.82, 83.41, 80.68),
        "PRAM": (77.64, 82.06, 83.15, 80.95)}),
    PaperTable("3", "WikiAnn, single-source (en)", "wikiann", "single", WIKIANN_COLUMNS, {
        "BERT-f": (42.30, 67.60, 52.90, 54.27),
        "TSL": (43.12, 69.54, 48.12, 53.59),
        "RIKD": (45.96, 70.28, 50.40, 55.55),
        "MTMT": (52.77, 70.76, 52.26, 58.60),
        "PRAM": (57.44, 74.67, 55.46, 62.52)}),
    # The PRAM row of Table 4 is printed without numbers in the paper's text.
    PaperTable("4", "CoNLL, multi-source (every other language)", "conll", "multi", CONLL_COLUMNS, {
        "BERT-f": (73.86, 76.93, 80.12, 76.97),
        "TSL-avg": (74.97, 77.75, 80.39, 77.70),
        "PRAM": (None, None, None, None)}),
    PaperTable("5a", "Ablation study, CoNLL, single-source (en)", "conll", "single", CONLL_COLUMNS, {
        "PRAM": (77.64, 82.06, 83.15, 80.95),
        "PRAM w/o S-C": (76.62, 80.63, 81.57, 79.61),
        "PRAM w/o T-C": (72.38, 75.91, 78.56, 75.62),
        "PRAM w/o C": (70.93, 74.72, 77.74, 74.46)}),
    PaperTable("5b", "Ablation study, WikiAnn, single-source (en)", "wikiann", "single", WIKIANN_COLUMNS, {
        "PRAM": (57.44, 74.67, 55.46, 62.52),
        "PRAM w/o S-C": (54.36, 73.01, 53.29, 60.22),
        "PRAM w/o T-C": (46.67, 68.14, 51.46, 55.43),
        "PRAM w/o C": (44.13, 67.68, 52.37, 54.72)}),
    # Table 6: English test F1. Row `en` is a model trained on English alone; `en-de` is PRAM en -> de.
    PaperTable("6", TABLE6, "conll", "single", ("CoNLL",), {
        "en": (91.45,), "en-de": (91.55,), "en-es": (91.72,), "en-nl": (92.21,)}),
    PaperTable("6", TABLE6, "wikiann", "single", ("WikiAnn",), {
        "en": (85.21,), "en-ar": (85.71,), "en-hi": (85.83,), "en-zh": (85.56,)}),
)

VARIANT_METHODS = {"both": "PRAM", "target": "PRAM w/o S-C", "source": "PRAM w/o T-C", "none": "PRAM w/o C"}
"""`--apc` value -> the row of Table 5 it reproduces (w/o S-C keeps only the target term)."""


def tables(dataset: str | None = None, mode: str | None = None,
           number: str | None = None) -> list[PaperTable]:
    """The tables of a corpus and setting (None: any), in the paper's order."""
    return [t for t in TABLES if dataset in (None, t.dataset) and mode in (None, t.mode)
            and number in (None, t.number, t.number.rstrip("ab"))]


def main_table(dataset: str, mode: str) -> PaperTable | None:
    """The comparison with the baselines in a corpus and setting: Table 2, 3 or 4 (None: not none)."""
    found = [t for t in tables(dataset, mode) if t.number in ("2", "3", "4")]
    return found[0] if found else None


def ablation_table(dataset: str) -> PaperTable | None:
    found = [t for t in tables(dataset, "single") if t.number.startswith("5")]
    return found[0] if found else None


def ablation_by_variant(dataset: str) -> dict[str, dict[str, float]]:
    """Table 5 as `--apc` variant -> target language -> F1 (the average left out)."""
    table = ablation_table(dataset)
    if table is None:
        return {}
    langs = [c for c in table.columns if c != "Avg."]
    return {v: {lang: table.value(method, lang) for lang in langs} for v, method in VARIANT_METHODS.items()}


def paper_f1(dataset: str, mode: str, variant: str, lang: str) -> float | None:
    """The paper's number for an `--apc` variant on a target: PRAM from Table 2-4; the no-APC model from
    Table 5 (w/o C) in the single-source setting and from Table 4's BERT-f (plain multi-source fine-tuning,
    the paper has no multi-source ablation) in the multi-source one."""
    if variant == "both":
        table = main_table(dataset, mode)
        return table.value("PRAM", lang) if table else None
    if mode == "single":
        table = ablation_table(dataset)
        return table.value(VARIANT_METHODS[variant], lang) if table else None
    if variant == "none":
        table = main_table(dataset, mode)
        return table.value("BERT-f", lang) if table else None
    return None


def variant_counterpart(mode: str, variant: str) -> str:
    """The name of the paper's row that `paper_f1` uses for a variant."""
    if variant == "none" and mode == "multi":
        return "BERT-f"
    return VARIANT_METHODS[variant]

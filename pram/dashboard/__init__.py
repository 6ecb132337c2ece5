"""`pram report`: dashboard.html and paper-tables.md for the results folder of a search (tune/search.py runs
it at the end of every search).

The page is one file that opens with no network: learning curves with ASHA's stops, hyper-parameter importance
and parallel coordinates, the best settings and their test F1 beside the paper's, the model-selection gap, and
a t-SNE picture of the best model's token representations beside the no-APC baseline's.
"""

from __future__ import annotations

from pathlib import Path

from pram.dashboard import sections
from pram.dashboard.page import Page
from pram.dashboard.tables import paper_tables_markdown
from pram.errors import UserError
from pram.files import write_atomically
from pram.results import DASHBOARD, PAPER_TABLES, read_folder

TSNE_PER_CLASS = 40


def build_report(results_dir: str | Path, tsne_per_class: int = TSNE_PER_CLASS, data_dir: str | None = None,
                 threads: int = 1) -> list[Path]:
    """Write dashboard.html and paper-tables.md into the folder; return their paths. `threads`: for the
    t-SNE picture's forward passes and projection."""
    folder = read_folder(results_dir)
    run = folder.run
    page = Page(f"PRAM search: {run['dataset']}, {run['mode']}-source, preset {run.get('preset')}")
    sections.overview(page, folder)
    sections.results(page, folder)
    sections.selection(page, folder)
    sections.curves(page, folder)
    sections.diagnostics(page, folder)
    sections.settings(page, folder)
    sections.representations(page, folder, tsne_per_class, data_dir, threads)
    return [write_atomically(folder.path / DASHBOARD, page.html()),
            write_atomically(folder.path / PAPER_TABLES, paper_tables_markdown(folder))]


def report_command(results_dir: str, tsne_per_class: int, data_dir: str | None, threads: int) -> int:
    if threads < 1:
        raise UserError(f"--threads {threads}: must be at least 1")
    for path in build_report(results_dir, tsne_per_class, data_dir, threads):
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0

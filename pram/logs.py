"""What the libraries print: pram's own progress bar and tables are the output."""

from __future__ import annotations


def quiet_libraries() -> None:
    """Silence the per-call progress bars and warnings of datasets and transformers."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()

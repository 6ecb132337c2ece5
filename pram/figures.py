"""Static figures of an experiment (PNG, read on a code host): test F1 per variant and language, mean ± std over
seeds, one panel per checkpoint-selection rule, with the paper's Table 5 marked where it has the number."""

from __future__ import annotations

import statistics
from pathlib import Path

from pram.config import SELECTIONS

ORDER = {"target": 0, "source": 1, "zero-shot": 2}


def as_own_target(rows: list[dict]) -> list[dict]:
    """The rows a bar is drawn from: a language that is the target of some runs only from those runs (as the
    paper's Table 5 reports it), not pooled with the runs that tag it zero-shot; the others from every run."""
    targets = {r["target"] for r in rows}
    return [r for r in rows if r["lang"] == r["target"] or r["lang"] not in targets]


def experiment_figure(rows: list[dict], names: dict[str, str], paper: dict[str, dict[str, float]], path: Path,
                      title: str) -> None:
    """rows: one per (variant, seed, selection, test language) as in runs.parquet. paper: variant -> lang -> F1."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    rows = as_own_target(rows)
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    langs = list(dict.fromkeys(r["lang"] for r in sorted(rows, key=lambda r: ORDER[r["role"]])))
    fig, axes = plt.subplots(1, len(SELECTIONS), figsize=(6 * len(SELECTIONS), 4.2), sharey=True)
    width = 0.8 / len(variants)
    for ax, selection in zip(axes, SELECTIONS):
        for i, variant in enumerate(variants):
            means, sds, xs = [], [], []
            for j, lang in enumerate(langs):
                f1 = [r["f1"] for r in rows if (r["variant"], r["selection"], r["lang"]) == (variant, selection, lang)]
                if f1:
                    xs.append(j + (i - (len(variants) - 1) / 2) * width)
                    means.append(statistics.mean(f1))
                    sds.append(statistics.stdev(f1) if len(f1) > 1 else 0.0)
            bars = ax.bar(xs, means, width, yerr=sds, capsize=3, label=names.get(variant, variant))
            marks = [(x, paper[variant][lang]) for x, lang in zip(xs, langs) if lang in paper.get(variant, {})]
            if marks:
                ax.scatter(*zip(*marks), marker="D", s=22, color=bars.patches[0].get_facecolor(),
                           edgecolors="black", zorder=3)
        ax.set_xticks(range(len(langs)), langs)
        ax.set_xlabel("test language")
        ax.set_title(f"checkpoint chosen on {selection}")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("test F1 (mean ± std over seeds)")
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle(f"{title}\n◆ the paper's Table 5 (mBERT, 20,000 steps, batch 128, each language its own target), same colour as its variant",
                 fontsize=10)
    fig.tight_layout()
    partial = path.with_name(path.name + ".partial.png")
    fig.savefig(partial, dpi=110)
    plt.close(fig)
    partial.replace(path)

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


def save_png(fig, path: Path) -> None:
    """Write a matplotlib figure as a PNG through a temporary file beside `path` (a reader never sees half of
    it), and free it."""
    import matplotlib.pyplot as plt

    from pram.files import atomic_output

    with atomic_output(path) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


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
    fig.suptitle(f"{title}\n◆ the paper's Table 5 (mBERT, 20,000 steps, batch 128, each language its own target), "
                 "same colour as its variant", fontsize=10)
    fig.tight_layout()
    save_png(fig, path)


DIAGNOSTIC_PANELS = (  # (panel title, y label, [(history key, line label)])
    ("entropy of q on target dev (ln 9 = 2.20 is uniform)", "nats", [("q_entropy_target", "")]),
    ("target dev F1: argmax q (dashed) and the head (solid)", "F1 (%)",
     [("proto_f1_target", "q"), ("target_dev_f1", "p")]),
    ("mean cosine between prototypes", "cosine", [("proto_cos_mean", "")]),
    ("gradient on the encoder: APC terms / L_sup", "ratio",
     [("grad_ratio_source", "source"), ("grad_ratio_target", "target")]),
    ("alignment: cos(source prototype, target class mean),\nmean over entity tags", "cosine",
     [("align_cos_target", "")]),
    ("argmax q accuracy on target dev tokens", "accuracy", [("proto_acc_target", "")]),
    ("JS(p, q) on target dev tokens", "nats", [("js_pq_target", "")]),
)


def diagnostics_figure(histories: dict[str, list[list[dict]]], names: dict[str, str], path: Path,
                       title: str) -> None:
    """The diagnostics of q and the alignment per evaluation step, mean over seeds, one colour per variant.

    histories: variant -> one `history` (metrics.json) per seed. Runs from before the diagnostics are skipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pram.metrics import gradient_ratios

    cols = 4
    rows = -(-len(DIAGNOSTIC_PANELS) // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False)
    axes = list(grid.flat)
    for ax in axes[len(DIAGNOSTIC_PANELS):]:
        ax.axis("off")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for colour, (variant, found) in zip(colours, histories.items()):
        runs = [[{**h, **gradient_ratios(h)} for h in run] for run in found if run and "q_entropy_target" in run[-1]]
        if not runs:
            continue
        steps = [h["step"] for h in runs[0]]
        for ax, (_, _, lines) in zip(axes, DIAGNOSTIC_PANELS):
            for key, label in lines:
                if key not in runs[0][-1]:
                    continue  # a run from before this diagnostic was recorded
                means = [statistics.mean(run[i][key] for run in runs if i < len(run)) for i in range(len(steps))]
                style = "--" if label in ("q", "target") else "-"
                ax.plot(steps, means, style, color=colour, marker="o", markersize=3,
                        label=f"{names.get(variant, variant)}{' ' + label if label else ''} ({len(runs)} seeds)")
    for ax, (panel, ylabel, _) in zip(axes, DIAGNOSTIC_PANELS):
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    for at in (1, 3, len(DIAGNOSTIC_PANELS) - 1):  # the panels whose lines differ by more than the variant
        axes[at].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    save_png(fig, path)


def tsne_figure_png(samples: dict, target: str, per_class: int, path: Path) -> None:
    """The paper's Figure 4 as a PNG: one panel per model (name -> pram.dashboard.tsne.Sample), each tag one
    colour, source tokens as circles and target tokens as triangles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(samples), figsize=(6 * len(samples), 5.4), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, (name, sample) in zip(axes[0], samples.items()):
        for k, label in enumerate(sample.label_names):
            for side, marker in (("source", "o"), ("target", "^")):
                idx = [i for i, key in enumerate(zip(sample.labels, sample.sides)) if key == (label, side)]
                if idx:
                    ax.scatter(sample.xy[idx, 0], sample.xy[idx, 1], s=9, marker=marker, color=colours(k % 10),
                               alpha=0.7, label=f"{label} ({side})")
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=1.5)
    fig.suptitle(f"Token representations (last layer), target {target}: t-SNE of up to {per_class} dev tokens "
                 "per tag from each side (● source, ▲ target)", fontsize=10)
    fig.tight_layout()
    save_png(fig, path)

"""Tables a person reads in the terminal: one per evaluation, one at the end of a run."""

from __future__ import annotations

from rich.table import Table

from pram.config import SELECTIONS, TrainConfig


def eval_table(metrics: dict, config: TrainConfig, improved: bool) -> Table:
    mark = " *" if improved else "" if metrics.get("selectable", True) else \
        " (before the target term started: not selectable)"
    table = Table(title=f"step {metrics['step']}{mark}", title_justify="left", show_edge=False)
    for name in ("loss", "sup", "src_c", "tgt_c", "beta"):
        table.add_column(name, justify="right")
    for lang in (*config.sources, config.target):
        table.add_column(f"dev F1 {lang}", justify="right")
    table.add_column(f"{config.target} entity %", justify="right")
    table.add_column(f"argmax q F1 {config.target}", justify="right")
    row = [f"{metrics[k]:.4f}" for k in ("loss", "sup", "src_c", "tgt_c")] + [f"{metrics['beta']:.2f}"]
    row += [f"{metrics[f'dev_f1_{lang}']:.2f}" for lang in (*config.sources, config.target)]
    row.append(f"{100 * metrics['target_entity_share']:.1f}" + (" COLLAPSE" if metrics["collapse"] else ""))
    row.append(f"{metrics['proto_f1_target']:.2f}" if "proto_f1_target" in metrics else "")
    table.add_row(*row)
    return table


def final_table(final: dict, config: TrainConfig) -> Table:
    langs = list(final["test"])
    counts = ", ".join(f"{lang} {final['test'][lang]['sentences']}" for lang in langs
                       if "sentences" in final["test"][lang])
    table = Table(title=f"test F1 (entity-level micro, %; sentences scored: {counts})", title_justify="left")
    table.add_column("chosen on")
    table.add_column("step", justify="right")
    for lang in langs:
        role = "target" if lang == config.target else "source" if lang in config.sources else "zero-shot"
        table.add_column(f"{lang} ({role})", justify="right")
    for selection in SELECTIONS:
        kept = final["selected_by"][selection]
        name = selection + (" (kept)" if selection == config.selection else "")
        table.add_row(name, str(kept["step"]), *(f"{kept['test'][lang]['f1']:.2f}" for lang in langs))
    return table

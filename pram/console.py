"""What a training run shows a person in the terminal: a progress bar, a table per evaluation, one at the end."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
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


class TrainingDisplay:
    """The progress bar of a run and what it prints at each evaluation (nothing with config.quiet)."""

    def __init__(self, config: TrainConfig, console: Console, completed: int):
        self.config, self.console, self.completed = config, console, completed

    def __enter__(self) -> TrainingDisplay:
        if self.config.selection == "target-dev":
            self.console.print("[yellow]model selection on target dev: this uses target labels (the paper's "
                               "protocol); --selection source-dev is strictly zero-resource[/yellow]")
        self.bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                            console=self.console, disable=self.config.quiet)
        self.bar.__enter__()
        self.task = self.bar.add_task("train", total=self.config.max_steps, completed=self.completed, info="")
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def step(self, terms: dict) -> None:
        self.bar.update(self.task, advance=1, info=f"loss {terms['loss']:.3f}")

    def evaluation(self, metrics: dict, improved: bool, source_entity_share: float) -> None:
        self.bar.console.print(eval_table(metrics, self.config, improved))
        if metrics["collapse"]:
            self.bar.console.print(f"[red]collapse: the model tags {100 * metrics['target_entity_share']:.1f}% "
                                   f"of {self.config.target} tokens as entities, against "
                                   f"{100 * source_entity_share:.1f}% of source tokens[/red]")

    def early_stop(self) -> None:
        self.bar.console.print(f"early stop: no better {self.config.selection} F1 in {self.config.patience} "
                               "evaluations")

"""Model selection: which evaluations may be chosen, and the best weights kept by each rule (§4.2).

Both rules (target dev, the paper's; source dev, strictly zero-resource) keep their best weights in every run,
so a run shows what each would have kept; the configured one is `config.selection`.
"""

from __future__ import annotations

from pathlib import Path

from pram.checkpoint import save_checkpoint
from pram.config import SELECTIONS, TrainConfig
from pram.results import OBJECTIVE_METRICS


def empty_best() -> dict:
    return {s: {"score": -1.0, "step": None} for s in SELECTIONS}


def first_selectable_step(config: TrainConfig) -> int:
    """Selection rule (beyond the paper): a checkpoint may be chosen only once every enabled loss term has been
    on. With the target term held back until `beta_start_step`, an evaluation at step s (steps 0..s-1 trained)
    is selectable when s > beta_start_step; before that it scores a model that never saw the target term, which
    is not a PRAM result. Without a target term (apc none or source, beta 0) every evaluation is selectable."""
    target_on = config.apc in ("both", "target") and config.beta > 0 and config.beta_start_step < config.max_steps
    return config.beta_start_step + 1 if target_on else 0


def record_best(state: dict, metrics: dict, config: TrainConfig, model, ckpt_dir: Path, run_info: dict,
                write: tuple[str, ...] = SELECTIONS) -> tuple[bool, bool]:
    """Track the best evaluation by each selection metric, and keep its weights as `best-<rule>` for the rules
    in `write`; return (whether the configured one improved, whether any weights were written).

    Only evaluations from `first_selectable_step` on compete; the ones before it neither win nor count
    toward patience."""
    metrics["selectable"] = metrics["step"] >= first_selectable_step(config)
    if not metrics["selectable"]:
        return False, False
    improved = wrote = False
    for selection in SELECTIONS:
        score = metrics[OBJECTIVE_METRICS[selection]]
        best = state["best"][selection]
        if score > best["score"]:
            state["best"][selection] = {"score": score, "step": metrics["step"]}
            if selection in write:
                save_checkpoint(ckpt_dir / f"best-{selection}", model.trainable_state_dict(),
                                {**run_info, "step": metrics["step"], "selection": selection, "score": score})
                wrote = True
            improved |= selection == config.selection
    state["stale"] = 0 if improved else state["stale"] + 1
    return improved, wrote

"""The sections of dashboard.html, in reading order: what the search found, how models were chosen, how the
trials learnt, which settings mattered, and what the representations look like."""

from __future__ import annotations

from pram.dashboard import figures
from pram.dashboard.page import Page
from pram.paper import PAPER_ENCODER, paper_f1, variant_counterpart
from pram.results import VARIANT_NAMES, SearchFolder, mean_sd, paired_arms, search_strategy, verdict_line


def symbols(params: list[str]) -> list[str]:
    return [figures.SYMBOLS.get(p, p) for p in params]


def overview(page: Page, folder: SearchFolder) -> None:
    run = folder.run
    baseline = ", beside the same runs without APC (--apc none)" if "none" in folder.variants() else ""
    page.text(f"A {run['mode']}-source search on {run['dataset']} (preset {run.get('preset')}): "
              f"{run.get('num_samples')} trials per target ({', '.join(folder.targets)}) "
              f"{search_strategy(run)}, maximising {run.get('objective')} F1; "
              f"each target's best settings retrained with {run.get('final_seeds')} seed(s){baseline}. "
              f"Encoder {folder.encoder} (the paper: {PAPER_ENCODER}). Built by `pram report` from "
              f"{folder.path.name}/.")


def results(page: Page, folder: SearchFolder) -> None:
    page.section("Best settings and test F1 beside the paper", "results")
    run, objective = folder.run, folder.run.get("objective", "target-dev")
    variants = folder.variants() or ["both"]
    params = folder.searched
    header = ["target", "sources", "Optuna trial", "state", f"best {objective} F1", *symbols(params),
              *(f"{VARIANT_NAMES[v]} test F1 here" for v in variants),
              *(f"paper {variant_counterpart(run['mode'], v)} ({PAPER_ENCODER})" for v in variants)]
    rows = []
    for target in folder.targets:
        entry = folder.best.get(target) or {}
        config = entry.get("config", {})
        rows.append([target, ",".join(entry.get("sources", [])), entry.get("optuna_trial"),
                     entry.get("state"), entry.get("value"), *(config.get(p) for p in params),
                     *(mean_sd(folder.final_row(target, v, objective, target)) for v in variants),
                     *(paper_f1(run["dataset"], run["mode"], v, target) for v in variants)])
    page.table(header, rows)
    if not folder.final:
        page.note("No final runs in final.parquet (a search with --final-seeds 0): no test F1 to show.")
        return
    verdicts = [verdict_line(t, c) for t in folder.targets
                if (c := paired_arms(folder.final, t, objective)) is not None]
    for line in verdicts:
        page.text(line)
    if verdicts:
        page.note("Paired by seed: both arms train on the same seeds, batches and data, so their difference per "
                  "seed is the test of APC; the interval is Student's t over those differences. Error bars below "
                  "are 95% intervals of each mean, n seeds on each bar.")
    page.figure(figures.paper_comparison(folder))
    page.figure(figures.final_by_language(folder))
    page.text("paper-tables.md, beside this page, sets the same numbers in the paper's Tables 2-6.")


def selection(page: Page, folder: SearchFolder) -> None:
    page.section("Model selection: target dev against source dev", "selection")
    gap = figures.selection_gap(folder) if folder.final else None
    if gap is not None:
        page.figure(gap)
    elif folder.final:
        page.note("The final runs of this search recorded the test F1 of one selection rule only (searches "
                  "before `pram report` kept both checkpoints but scored only the chosen one).")
    page.text("The trial each rule would pick from the search (best dev F1 over its evaluations). The search "
              "scores no trial on test, and it stopped trials early on its own objective, so the trial the "
              "other rule picks may have been cut short.")
    page.table(["target", "chosen on", "trial", "trial ended", "at step", "target dev F1", "source dev F1"],
               [row for target in folder.targets for row in _picks(folder, target)])


def _picks(folder: SearchFolder, target: str) -> list[list]:
    """The evaluation with the best target dev F1 and the one with the best source dev F1, of any trial."""
    rows = []
    for metric in ("target_dev_f1", "source_dev_f1"):
        scored = [h for h in folder.history if h["target"] == target and h.get(metric) is not None]
        if scored:
            top = max(scored, key=lambda h: h[metric])
            ended = next((t["status"] for t in folder.trials
                          if (t["target"], t["optuna_trial"]) == (target, top["optuna_trial"])), "-")
            rows.append([target, metric.removesuffix("_f1").replace("_", " "), top["optuna_trial"], ended,
                         top["step"], top.get("target_dev_f1"), top.get("source_dev_f1")])
    return rows


def curves(page: Page, folder: SearchFolder) -> None:
    page.section("Learning curves", "curves")
    if folder.trials:
        page.figure(figures.expected_best(folder))
        page.text("Expected best objective of a search of n trials drawn from this one's (Dodge et al. 2019): "
                  "still rising at the right, more trials would likely have found better settings; flat, they "
                  "would not.")
    for target in folder.targets:
        if any(h["target"] == target for h in folder.history):
            page.figure(figures.learning_curves(folder, target))
        else:
            page.note(f"Target {target}: no evaluation in history.parquet.")


def diagnostics(page: Page, folder: SearchFolder) -> None:
    """The diagnostics of q of each target's best trial: entropy, the prototype classifier, gradient norms."""
    page.section("Diagnostics of q", "diagnostics")
    for target in folder.targets:
        number = (folder.best.get(target) or {}).get("optuna_trial")
        rows = [h for h in folder.history if (h["target"], h["optuna_trial"]) == (target, number)]
        if any(h.get("q_entropy_target") is not None for h in rows):
            page.figure(figures.diagnostics(folder, target, number))
        else:
            page.note(f"Target {target}: no diagnostics of q in history.parquet (a search from before they "
                      "were recorded, or no best trial).")


def settings(page: Page, folder: SearchFolder) -> None:
    page.section("Which settings mattered", "settings")
    views = _studies(folder)
    for target, view in views.items():
        why = view if isinstance(view, str) else view.importances
        if isinstance(why, str):
            page.note(f"Target {target}: {why.rstrip('.')}.")
    scored = {t: v.importances for t, v in views.items() if not isinstance(v, str)
              and not isinstance(v.importances, str)}
    if scored:
        page.figure(figures.importance_chart(scored))
    log_scaled = set().union(*(v.log_scaled for v in views.values() if not isinstance(v, str)))
    params = folder.searched
    if any(t.get("best_objective") is not None for t in folder.trials):
        page.figure(figures.parallel_coordinates(folder, params, log_scaled))
    for view in views.values():
        if not isinstance(view, str) and view.slice_plot is not None:
            page.figure(view.slice_plot)
    trials = sorted(folder.trials, key=lambda t: (t["target"], t["optuna_trial"]))
    page.table(["target", "trial", "ended", "at step", "objective", "best objective", *symbols(params),
                "wall s", "restarts"],
               [[t["target"], t["optuna_trial"], t["status"], t.get("stopped_step"), t.get("objective"),
                 t.get("best_objective"), *(t.get(p) for p in params), t.get("wall_s"), t.get("restarts")]
                for t in trials])


def _studies(folder: SearchFolder) -> dict:
    """Each target's StudyView (importance, log scales, slice plot) from optuna.db, or why there is none."""
    from pram.dashboard.importance import study_views

    if folder.optuna_db is None:
        return dict.fromkeys(folder.targets, "no optuna.db (or optuna.journal) in the folder: no importances or "
                                             "slice plots")
    run = folder.run
    names = {t: (folder.best.get(t) or {}).get("study") or f"{run['dataset']}-{run['mode']}-{t}"
             for t in folder.targets}
    return study_views(folder.optuna_db, names)


def representations(page: Page, folder: SearchFolder, per_class: int, data_dir: str | None,
                    threads: int) -> None:
    from pram.dashboard.tsne import tsne_figure

    page.section("Token representations (the paper's Figure 4)", "representations")
    if per_class <= 0:
        page.note("Left out (--tsne-per-class 0).")
        return
    if not folder.final:
        page.note("No final runs, so no trained model to picture.")
        return
    for target in folder.targets:
        fig, note = tsne_figure(folder, target, per_class, data_dir, threads)
        if fig is not None:
            page.figure(fig)
        if note:
            page.note(note)

"""The page's charts, as plotly figures built from a results folder's tables. Every one has a title and named
axes (tests/test_report.py checks them in the rendered page)."""

from __future__ import annotations

import math

import plotly.graph_objects as go

from pram.config import CATEGORICAL, SELECTIONS
from pram.paper import PAPER_ENCODER, main_table, tables
from pram.results import VARIANT_NAMES, SearchFolder

SYMBOLS = {"tau": "τ", "lam": "λ", "alpha": "α", "beta": "β", "gamma": "γ", "beta_start": "β start",
           "beta_ramp": "β ramp"}
SELECTION_NAMES = {"target-dev": "chosen on target dev", "source-dev": "chosen on source dev"}
END_MARKERS = {"TERMINATED": ("circle", "finished"), "PRUNED": ("x", "stopped by ASHA"),
               "ERROR": ("square-open", "failed")}


def titled(fig: go.Figure, title: str, x: str, y: str, height: int = 420) -> go.Figure:
    fig.update_layout(title={"text": title}, xaxis_title={"text": x}, yaxis_title={"text": y}, height=height,
                      template="plotly_white", margin={"t": 60, "b": 50}, legend={"font": {"size": 11}})
    return fig


def learning_curves(folder: SearchFolder, target: str) -> go.Figure:
    """Dev F1 of each trial of one target per evaluation, the end of each marked by how the trial ended."""
    fig = go.Figure()
    best = (folder.best.get(target) or {}).get("optuna_trial")
    for trial in sorted((t for t in folder.trials if t["target"] == target), key=lambda t: t["optuna_trial"]):
        points = _evaluations(folder, target, trial["optuna_trial"])
        if points:  # (a trial that failed before its first evaluation is in the trials table only)
            fig.add_trace(_curve(trial, points, folder.metric, trial["optuna_trial"] == best))
    metric = folder.metric.replace("_", " ").replace("f1", "F1")
    return titled(fig, f"Learning curves, target {target}: {metric} of every trial (× = stopped by ASHA)",
                  "training step", f"{metric} (%)")


DIAGNOSTIC_PANELS = (  # (panel title, y axis, [(history column, line name)])
    ("Entropy of q", "nats", [("q_entropy_source", "source tokens"), ("q_entropy_target", "target tokens")]),
    ("Target dev F1: head against prototypes", "F1 (%)",
     [("target_dev_f1", "head, argmax p"), ("proto_f1_target", "prototypes, argmax q")]),
    ("Mean cosine between prototypes", "cosine", [("proto_cos_mean", "prototypes")]),
    ("Gradient norm on the encoder, per term", "L2 norm", [("grad_norm_sup", "L_sup"),
                                                            ("grad_norm_apc_source", "α·L_c source"),
                                                            ("grad_norm_apc_target", "β·L_c target")]),
    ("Alignment on target dev", "cosine / accuracy / nats",
     [("align_cos_target", "cos(source prototype, target class mean)"),
      ("proto_acc_target", "argmax q accuracy"), ("js_pq_target", "JS(p, q)")]),
)


def diagnostics(folder: SearchFolder, target: str, number: int) -> go.Figure:
    """The diagnostics of q (issue 17) at each evaluation of one trial: what the APC term had to work with."""
    from plotly.subplots import make_subplots

    points = sorted((h for h in folder.history if (h["target"], h["optuna_trial"]) == (target, number)),
                    key=lambda h: h["step"])
    # three panels a row, so that each title has a third of the page (five in one row overlapped)
    cols = 3
    rows = math.ceil(len(DIAGNOSTIC_PANELS) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[p[0] for p in DIAGNOSTIC_PANELS],
                        horizontal_spacing=0.08, vertical_spacing=0.22)
    for i, (_, y_title, lines) in enumerate(DIAGNOSTIC_PANELS):
        row, col = divmod(i, cols)
        for key, name in lines:
            shown = [h for h in points if h.get(key) is not None]
            fig.add_trace(go.Scatter(x=[h["step"] for h in shown], y=[h[key] for h in shown],
                                     mode="lines+markers", name=name), row=row + 1, col=col + 1)
        fig.update_xaxes(title_text="training step", row=row + 1, col=col + 1)
        fig.update_yaxes(title_text=y_title, row=row + 1, col=col + 1)
    fig.update_annotations(font_size=13)
    fig.update_layout(title={"text": f"Diagnostics of q, target {target}, trial {number}"}, height=340 * rows,
                      template="plotly_white", margin={"t": 80, "b": 50}, legend={"font": {"size": 11}})
    return fig  # (each panel names its own axes above; `titled` would set one y title for all)


def _evaluations(folder: SearchFolder, target: str, number: int) -> list[dict]:
    return sorted((h for h in folder.history if (h["target"], h["optuna_trial"]) == (target, number)
                   and h.get(folder.metric) is not None), key=lambda h: h["step"])


def _curve(trial: dict, points: list[dict], metric: str, best: bool) -> go.Scatter:
    symbol, how = END_MARKERS.get(trial["status"], ("circle", trial["status"].lower()))
    inner = len(points) - 1
    return go.Scatter(
        x=[h["step"] for h in points], y=[h[metric] for h in points], mode="lines+markers",
        name=f"trial {trial['optuna_trial']}: {how} at step {points[-1]['step']}{' (best)' if best else ''}",
        line={"width": 4 if best else 2, "dash": "solid" if trial["status"] == "TERMINATED" else "dot"},
        marker={"symbol": ["circle"] * inner + [symbol], "size": [7] * inner + [14], "line": {"width": 2}})


def parallel_coordinates(folder: SearchFolder, params: list[str],
                         log_scaled: set[str] = frozenset()) -> go.Figure:
    """Each scored trial as a line through its settings and its best objective value, across targets. Plotly's
    parallel coordinates have no log axis: a log-scaled setting is drawn as log10 with ticks in its own units."""
    trials = [t for t in folder.trials if t.get("best_objective") is not None]
    targets = sorted({t["target"] for t in trials})
    values = [t["best_objective"] for t in trials]
    dimensions = [{"label": "target", "values": [targets.index(t["target"]) for t in trials],
                   "tickvals": list(range(len(targets))), "ticktext": targets}]
    for p in params:
        label = SYMBOLS.get(p, p)
        if p in CATEGORICAL or any(isinstance(t.get(p), str) for t in trials):  # one axis tick per name
            names = sorted({str(t.get(p)) for t in trials})
            dimensions.append({"label": label, "values": [names.index(str(t.get(p))) for t in trials],
                               "tickvals": list(range(len(names))), "ticktext": names})
        elif p in log_scaled and all(t.get(p) and t[p] > 0 for t in trials):
            logs = [math.log10(t[p]) for t in trials]
            ticks = list(range(math.floor(min(logs)), math.ceil(max(logs)) + 1))
            dimensions.append({"label": f"{label} (log scale)", "values": logs, "tickvals": ticks,
                               "ticktext": [f"{10 ** k:g}" for k in ticks]})
        else:
            dimensions.append({"label": label, "values": [t.get(p) for t in trials]})
    dimensions += [{"label": "evaluations done", "values": [t.get("stopped_round") for t in trials]},
                   {"label": f"best {folder.metric} (%)", "values": values}]
    fig = go.Figure(go.Parcoords(line={"color": values, "colorscale": "Viridis", "showscale": True,
                                       "colorbar": {"title": {"text": "objective"}}}, dimensions=dimensions))
    fig.update_layout(title={"text": f"Settings against the objective: {len(trials)} scored trials "
                                     "(pruned ones with their best value before the stop)"},
                      height=460, margin={"t": 90, "l": 60, "r": 60})
    return fig


def importance_chart(importances: dict[str, tuple[dict[str, float], str]]) -> go.Figure:
    """importances[target] = ({param: importance}, what it was computed on)."""
    fig = go.Figure()
    for target, (values, basis) in importances.items():
        fig.add_trace(go.Bar(x=[SYMBOLS.get(p, p) for p in values], y=list(values.values()),
                             name=f"{target} ({basis})"))
    fig.update_layout(showlegend=True)
    return titled(fig, "Hyper-parameter importance: share of the objective's variance (fANOVA on optuna.db)",
                  "setting", "importance")


def _f1_bar(name: str, rows: list[dict | None], x: list) -> go.Bar:
    """Mean test F1 over seeds with its 95% Student-t interval as error bar (none with one seed), n on the bar;
    each seed's F1 in the hover."""
    from scipy import stats

    seeds = [", ".join(f"{v:.2f}" for v in r["f1_per_seed"]) if r else "" for r in rows]
    half = [stats.t.ppf(0.975, r["seeds"] - 1) * r["f1_std"] / math.sqrt(r["seeds"])
            if r and r["seeds"] > 1 and r.get("f1_std") is not None else 0 for r in rows]
    return go.Bar(name=name, x=x, y=[r and r["f1_mean"] for r in rows], customdata=seeds,
                  text=[f"n={r['seeds']}" if r else "" for r in rows], textposition="inside",
                  error_y={"type": "data", "array": half, "visible": True},
                  hovertemplate="%{y:.2f} ± %{error_y.array:.2f} (95% interval; per seed: %{customdata})")


def expected_best(folder: SearchFolder) -> go.Figure:
    """Each target's expected best objective against the number of trials (Dodge et al. 2019), with ± one
    standard deviation: whether more trials would likely have found better settings."""
    from pram.stats import expected_best as expected

    fig = go.Figure()
    for target in folder.targets:
        values = [t["objective"] for t in folder.trials if t["target"] == target and t["status"] != "ERROR"
                  and t.get("objective") is not None and not math.isnan(t["objective"])]
        if not values:
            continue
        n = list(range(1, len(values) + 1))
        mean, sd = zip(*(expected(values, k) for k in n))
        fig.add_trace(go.Scatter(x=n + n[::-1], y=[m + s for m, s in zip(mean, sd)] +
                                 [m - s for m, s in zip(mean[::-1], sd[::-1])], fill="toself", opacity=0.2,
                                 line={"width": 0}, showlegend=False, hoverinfo="skip", name=f"{target} ± sd"))
        fig.add_trace(go.Scatter(x=n, y=list(mean), mode="lines+markers", name=target,
                                 hovertemplate="%{y:.2f} expected best of %{x} trial(s)"))
    objective = folder.run.get("objective", "target-dev")
    fig.update_xaxes(dtick=1)  # a number of trials is whole
    return titled(fig, f"Expected best {objective} F1 against the number of trials (band: ± 1 sd)",
                  "trials", f"expected best {objective} F1 (%)")


def paper_rows(dataset: str, mode: str) -> list[tuple[str, dict[str, float | None]]]:
    """The paper's rows to set beside ours: its comparison table (2, 3 or 4) and the row of its ablation that
    our no-APC run repeats; the single-source PRAM where the multi-source one is missing from the text."""
    found = []
    table = main_table(dataset, mode)
    if table:
        found += [(f"{m}, paper Table {table.number}", dict(zip(table.columns, values)))
                  for m, values in table.rows.items() if any(v is not None for v in values)]
    for extra in tables(dataset, "single"):
        name = "PRAM" if mode == "multi" and extra.number in ("2", "3") else \
            "PRAM w/o C" if mode == "single" and extra.number.startswith("5") else None
        if name:
            label = f"{name}, paper Table {extra.number}" + (" (single-source)" if mode == "multi" else "")
            found.append((label, dict(zip(extra.columns, extra.rows[name]))))
    return found


def paper_comparison(folder: SearchFolder) -> go.Figure:
    """Test F1 on each target: our final runs (error bars: 95% interval over seeds) and the paper's."""
    run, objective = folder.run, folder.run.get("objective", "target-dev")
    targets = [t for t in folder.targets if any(r["target"] == t for r in folder.final)]
    fig = go.Figure()
    for variant in folder.variants():
        rows = [folder.final_row(t, variant, objective, t) for t in targets]
        seeds = max((r["seeds"] for r in rows if r), default=0)
        name = f"{VARIANT_NAMES.get(variant, variant)}, here ({folder.encoder}, {seeds} seeds)"
        fig.add_trace(_f1_bar(name, rows, targets))
    for name, values in paper_rows(run["dataset"], run["mode"]):
        fig.add_trace(go.Bar(name=f"{name} ({PAPER_ENCODER})", x=targets, y=[values.get(t) for t in targets],
                             marker={"pattern": {"shape": "/"}}, opacity=0.55))
    fig.update_layout(barmode="group")
    return titled(fig, f"Test F1 on each target: here ({folder.encoder}) and in the paper ({PAPER_ENCODER})",
                  "target language", "test F1 (%)", height=480)


def final_by_language(folder: SearchFolder) -> go.Figure:
    """Test F1 of each target's final models on every test set (target, sources, zero-shot languages)."""
    objective = folder.run.get("objective", "target-dev")
    pairs = [(r["target"], r["lang"]) for r in folder.final if r["variant"] == folder.variants()[0]
             and r["selection"] == objective]
    x = [[f"model for {t}" for t, _ in pairs], [lang for _, lang in pairs]]
    fig = go.Figure([_f1_bar(VARIANT_NAMES.get(v, v), [folder.final_row(t, v, objective, lang)
                                                       for t, lang in pairs], x) for v in folder.variants()])
    fig.update_layout(barmode="group")
    return titled(fig, "Test F1 of the final models on every language (mean and 95% interval over seeds)",
                  "model (its target) / test language", "test F1 (%)")


def selection_gap(folder: SearchFolder) -> go.Figure | None:
    """Target test F1 of the checkpoint each selection rule keeps in the same final runs; None where the
    folder recorded one rule only."""
    selections = [s for s in SELECTIONS if any(r["selection"] == s for r in folder.final)]
    if len(selections) < 2:
        return None
    keys = [(v, t) for v in folder.variants() for t in folder.targets
            if folder.final_row(t, v, selections[0], t)]
    x = [[VARIANT_NAMES.get(v, v) for v, _ in keys], [t for _, t in keys]]
    fig = go.Figure([_f1_bar(SELECTION_NAMES[s], [folder.final_row(t, v, s, t) for v, t in keys], x)
                     for s in selections])
    fig.update_layout(barmode="group")
    return titled(fig, "Model selection: target test F1 of the checkpoint chosen on target dev "
                       "(uses target labels) and on source dev (zero-resource)", "variant / target",
                  "target test F1 (%)")


"""`pram report`: dashboard.html and paper-tables.md of a search's results folder, checked in a real browser.

The pages are built from real searches (the session's smoke search, and one with a failed and a pruned trial)
and opened by headless Chromium with every host name unresolvable: no console error, a screenshot that is not
blank, and every plot with a title and named axes, read from the plotly figures the browser drew. The paper's
numbers are checked against its text in ../shared/docs.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from searches import ROOT, run_search

from pram.config import PRESETS
from pram.paper import PAPER_ENCODER, TABLES

FIRST_EVAL = PRESETS["smoke"]["eval_every"]
CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome")
                 if (path := shutil.which(name))), None)
# .ci/run installs Chromium and sets PRAM_REQUIRE_BROWSER: there a missing browser fails instead of skipping.
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("PRAM_REQUIRE_BROWSER"),
    reason="chromium is not installed (.ci/run installs it: apt-get install chromium)")

# Put first in the page's <head>: records console.error, uncaught errors, failed loads and rejected promises,
# and once the page has loaded, what each plotly figure drew; both as JSON in <pre> elements of the DOM.
COLLECTOR = """<script>
(function () {
  var errors = [];
  function show(id, value) {
    var e = document.getElementById(id);
    if (!e) {
      e = document.createElement('pre'); e.id = id;
      (document.body || document.documentElement).appendChild(e);
    }
    e.textContent = JSON.stringify(value);
  }
  function record(message) { errors.push(String(message)); show('__errors', errors); }
  var original = console.error;
  console.error = function () {
    record(Array.prototype.join.call(arguments, ' '));
    return original.apply(console, arguments);
  };
  window.addEventListener('error', function (e) {
    var target = e.target && (e.target.src || e.target.href);
    record(e.message || ('failed to load ' + (target || 'a resource')));
  }, true);
  window.addEventListener('unhandledrejection', function (e) { record('unhandled rejection: ' + e.reason); });
  function title(t) { return t ? (typeof t === 'string' ? t : t.text) : null; }
  window.addEventListener('load', function () { setTimeout(function () {
    var figures = [];
    document.querySelectorAll('.js-plotly-plot').forEach(function (gd) {
      var axes = {};
      (gd._fullLayout._subplots.cartesian || []).forEach(function (xy) {
        var m = xy.match(/^x(\\d*)y(\\d*)$/);
        axes['xaxis' + m[1]] = title((gd.layout['xaxis' + m[1]] || {}).title);
        axes['yaxis' + m[2]] = title((gd.layout['yaxis' + m[2]] || {}).title);
      });
      figures.push({id: gd.id, title: title(gd.layout.title), axes: axes, traces: gd.data.map(function (t) {
        return {type: t.type || 'scatter', name: t.name, y: t.type === 'bar' ? t.y : undefined,
                symbols: t.marker && t.marker.symbol, points: t.x ? t.x.length : 0,
                dimensions: t.dimensions && t.dimensions.map(function (d) { return d.label; })};
      })});
    });
    show('__figures', figures);
    show('__errors', errors);
  }, 300); });
})();
</script>"""


def browser_args(tmp: Path) -> list[str]:
    assert CHROMIUM, "PRAM_REQUIRE_BROWSER is set but chromium is not installed"
    # every host name unresolvable: a page that needs the network shows it as a failed load
    return [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--hide-scrollbars", f"--user-data-dir={tmp / 'chromium-profile'}",
            "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=15000"]


def open_in_browser(page: Path, tmp: Path) -> tuple[list[str], list[dict]]:
    """(console errors, figures drawn) of a copy of the page with the collector in it."""
    copy = tmp / "page-with-collector.html"
    text = page.read_text(encoding="utf-8")
    copy.write_text(text.replace("<head>", "<head>\n" + COLLECTOR, 1), encoding="utf-8")
    run = subprocess.run([*browser_args(tmp), "--dump-dom", copy.as_uri()], capture_output=True, text=True,
                         timeout=180, check=False)
    assert run.returncode == 0, run.stderr[-2000:]

    def read(element: str):
        found = re.search(rf'<pre id="{element}">(.*?)</pre>', run.stdout, re.DOTALL)
        assert found, f"the page's scripts never finished: no {element} in the DOM"
        return json.loads(html.unescape(found.group(1)))

    return read("__errors"), read("__figures")


def screenshot(page: Path, tmp: Path) -> np.ndarray:
    png = tmp / "page.png"
    run = subprocess.run([*browser_args(tmp), "--window-size=1280,3000", f"--screenshot={png}",
                          page.as_uri()], capture_output=True, text=True, timeout=180, check=False)
    assert run.returncode == 0 and png.is_file(), run.stderr[-2000:]
    return np.asarray(Image.open(png).convert("L"), dtype=float)


def check_figures(figures: list[dict]) -> None:
    """Every plot has a title and a title on each of its axes (parallel coordinates: on each dimension)."""
    assert figures
    for fig in figures:
        assert fig["title"], fig["id"]
        for axis, text in fig["axes"].items():
            assert text, f"{fig['id']} ({fig['title']}): {axis} has no title"
        for trace in fig["traces"]:
            if trace["type"] == "parcoords":
                assert all(trace["dimensions"]), fig["title"]
            else:
                assert fig["axes"], f"{fig['title']}: a {trace['type']} trace without axes"


def by_title(figures: list[dict], start: str) -> list[dict]:
    return [f for f in figures if f["title"].startswith(start)]


def pram_report(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pram.cli", "report", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def smoke(smoke_search) -> Path:
    assert smoke_search.run.returncode == 0, smoke_search.run.stderr[-3000:]
    return smoke_search.out


@pytest.fixture(scope="module")
def failed_search(tmp_path_factory, data_dir) -> Path:
    """Three trials: Optuna trial 0 raises after its first evaluation and is not retried (ERROR); with a
    collapse ratio of 100 every other trial counts as collapsed once the target term is on, and is stopped at
    the grace period (PRUNED). Real Ray and Optuna, no final stage."""
    root = tmp_path_factory.mktemp("failed-search")
    out = root / "run"
    run = run_search(out, data_dir, root / "cache", "--num-samples", "3",
                     "--final-seeds", "0", "--max-failures", "0", "--collapse-ratio", "100",
                     env={"PRAM_TUNE_FAIL_AT_STEP": str(FIRST_EVAL), "PRAM_TUNE_FAIL_TRIAL": "0"})
    assert run.returncode == 0, run.stderr[-3000:]
    return out


# The paper's tables, read from its text ---------------------------------------------------------------------

NUMBER = re.compile(r"^\d+\.\d\d$")


def _method(cell: str) -> str:
    return re.sub(r"\s*_\{(.*?)\}", r" \1", cell).strip()  # `PRAM _{w/o S-C}` -> `PRAM w/o S-C`


def _rows(name: str, cells: list[str]) -> list[tuple[str, list[str]]]:
    """A printed row, or several run together (`BERT-f TSL-avg | 73.86 74.97 | ...` in Table 4)."""
    split = [c.split() for c in cells]
    names = name.split()
    k = len(split[0]) if split else 1
    if k > 1 and len(names) == k and all(len(c) == k for c in split):
        return [(names[i], [c[i] for c in split]) for i in range(k)]
    return [(name, cells)]


def printed_tables(text: str) -> dict[tuple[str, tuple[str, ...]], dict[str, list[str]]]:
    """(table number, column headers) -> method -> its cells as printed, from every tab-separated block that
    starts with a `Method` or `Languages` header; a block belongs to the next `Table N:` caption."""
    found, pending, block = {}, [], None
    for line in text.splitlines():
        caption = re.match(r"Table (\d+):", line)
        if caption:
            for columns, rows in pending:
                found.setdefault((caption.group(1), columns), {}).update(rows)
            pending = []
        cells = [c.strip() for c in re.sub(r"</?u>", "", line).split("\t") if c.strip()]
        if "\t" not in line:
            block = None
        elif cells[0] in ("Method", "Languages"):
            halves = [cells] if cells[0] == "Method" else [cells[:2], cells[2:]]  # Table 6: two side by side
            block = [(tuple(h[1:]), {}) for h in halves]
            pending += block
        elif block is not None and not cells[0].startswith("("):  # `(a) CoNLL datasets` names a part
            width = len(cells) // len(block)
            for i, (_, rows) in enumerate(block):
                part = cells[i * width:(i + 1) * width]
                rows.update(_rows(_method(part[0]), part[1:]))
    return found


def test_every_number_of_pram_paper_is_printed_so_in_the_paper(docs_dir):
    printed = printed_tables((docs_dir / "PRAM-paper.txt").read_text(encoding="utf-8"))
    assert len(TABLES) == 7
    for table in TABLES:
        rows = printed[(table.number.rstrip("ab"), table.columns)]
        for method, values in table.rows.items():
            assert rows[method] == [f"{v:.2f}" for v in values if v is not None], (table.number, method)
        # and no printed row was left out (the scan's garbled copy of a row in Table 5b is not numbers)
        readable = {m for m, cells in rows.items() if cells and all(NUMBER.match(c) for c in cells)}
        assert readable <= set(table.rows), (table.number, readable - set(table.rows))
    assert printed[("4", ("de", "es", "nl", "Avg."))]["PRAM"] == []  # printed without numbers
    assert printed[("2", ("de", "es", "nl", "Avg."))]["MTMT"] == ["76.80", "81.82", "83.41", "80.68"]


@pytest.mark.slow
def test_paper_tables_md_prints_the_papers_rows_and_the_searchs_beside_them(smoke):
    text = (smoke / "paper-tables.md").read_text(encoding="utf-8")
    for table in TABLES:
        assert f"## Table {table.number}: {table.caption}" in text
        for method, values in table.rows.items():
            cells = ["(not in the paper's text)" if v is None else f"{v:.2f}" for v in values]
            assert f"| {method} | {PAPER_ENCODER} | " + " | ".join(cells) + " |" in text
    final = {(r["variant"], r["selection"], r["lang"]): r
             for r in pq.read_table(smoke / "final.parquet").to_pylist()}
    for variant, name in (("both", "PRAM"), ("none", "no APC (`--apc none`)")):
        row = final[(variant, "target-dev", "de")]
        assert f"| **{name}, here** | tiny | {row['f1_mean']:.2f} ± {row['f1_std']:.2f} | - | - | - |" in text
    assert text.count(", here**") == 2  # Table 4 only: the smoke search is CoNLL multi-source
    assert "it is a conll multi-source search, the table is conll single-source" in text


@pytest.mark.slow
@needs_chromium
def test_the_searchs_page_renders_offline_with_no_console_error(smoke, tmp_path):
    page = smoke / "dashboard.html"
    assert 1e6 < page.stat().st_size < 10e6  # plotly.js is inlined once
    text = page.read_text(encoding="utf-8")
    tags = re.sub(r"(<script\b[^>]*>).*?(</script>)", r"\1\2", text, flags=re.DOTALL)  # not plotly.js's code
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", tags)  # nothing to fetch
    assert text.count("/** plotly.js") <= 1 and "Plotly.newPlot" in text
    errors, figures = open_in_browser(page, tmp_path)
    assert errors == []
    check_figures(figures)
    titles = [f["title"] for f in figures]
    for start in ("Test F1 on each target", "Test F1 of the final models", "Model selection",
                  "Learning curves, target de", "Slice plot, study conll-multi-de",
                  "Settings against the objective", "Token representations"):
        assert len(by_title(figures, start)) == 1, (start, titles)
    assert not by_title(figures, "Hyper-parameter importance")  # 4 trials: too few for fANOVA to mean anything
    assert "no importance shown: " in text and "fANOVA needs at least 20" in text
    [coordinates] = by_title(figures, "Settings against the objective")
    labels = [d for t in coordinates["traces"] for d in t["dimensions"]]
    assert "τ (log scale)" in labels and "frozen_layers" in labels and "proto_space" in labels

    trials = pq.read_table(smoke / "trials.parquet").to_pylist()
    [curves] = by_title(figures, "Learning curves")
    assert len(curves["traces"]) == len(trials) == 4
    for trial in trials:  # each trial's line ends in the marker of how it ended, at the round it stopped
        [trace] = [t for t in curves["traces"] if t["name"].startswith(f"trial {trial['optuna_trial']}:")]
        assert trace["points"] == trial["stopped_round"]
        assert trace["symbols"][-1] == {"TERMINATED": "circle", "PRUNED": "x"}[trial["status"]]

    final = {(r["variant"], r["selection"]): r for r in pq.read_table(smoke / "final.parquet").to_pylist()
             if r["lang"] == "de"}
    [paper] = by_title(figures, "Test F1 on each target")
    bars = {t["name"]: t["y"][0] for t in paper["traces"]}
    mean = {key: row["f1_mean"] for key, row in final.items()}
    assert bars["PRAM, here (tiny, 2 seeds)"] == pytest.approx(mean[("both", "target-dev")])
    assert bars["no APC (--apc none), here (tiny, 2 seeds)"] == pytest.approx(mean[("none", "target-dev")])
    assert bars["BERT-f, paper Table 4 (mBERT)"] == 73.86 and bars["TSL-avg, paper Table 4 (mBERT)"] == 74.97
    [gap] = by_title(figures, "Model selection")
    assert {t["name"]: t["y"] for t in gap["traces"]} == {
        "chosen on target dev": [mean[("both", "target-dev")], mean[("none", "target-dev")]],
        "chosen on source dev": [mean[("both", "source-dev")], mean[("none", "source-dev")]]}
    # the verdict on APC, paired by seed, and what more trials would have given
    pram_f1, none_f1 = final[("both", "target-dev")]["f1_per_seed"], final[("none", "target-dev")]["f1_per_seed"]
    diffs = [a - b for a, b in zip(pram_f1, none_f1)]
    assert f"de: PRAM minus no APC {sum(diffs) / 2:+.2f} [" in text and "(n=2): " in text
    assert "de: PRAM minus no APC" in (smoke / "summary.md").read_text(encoding="utf-8")
    [expected] = by_title(figures, "Expected best target-dev F1 against the number of trials")
    assert [t["points"] for t in expected["traces"] if t["name"] == "de"] == [len(trials)]
    [tsne] = by_title(figures, "Token representations")
    assert set(tsne["axes"]) == {"xaxis", "yaxis", "xaxis2", "yaxis2"}  # no APC beside PRAM
    assert {t["name"] for t in tsne["traces"]} >= {"B-PER (source)", "B-PER (target)", "O (target)"}

    pixels = screenshot(page, tmp_path)
    assert pixels.std() > 20 and (pixels < 200).mean() > 0.02  # drawn, not a blank page


@pytest.mark.slow
@needs_chromium
def test_a_search_with_a_failed_and_a_pruned_trial_gets_a_page(failed_search, tmp_path):
    trials = pq.read_table(failed_search / "trials.parquet").to_pylist()
    statuses = {t["optuna_trial"]: t["status"] for t in trials}
    assert statuses == {0: "ERROR", 1: "PRUNED", 2: "PRUNED"}
    page = failed_search / "dashboard.html"
    page.unlink()  # written by the search; `pram report` writes it again
    run = pram_report(str(failed_search), "--threads", "1")
    assert run.returncode == 0, run.stderr[-3000:]
    assert not list(failed_search.glob(".*.tmp"))  # written through a temporary file, renamed
    errors, figures = open_in_browser(page, tmp_path)
    assert errors == []
    check_figures(figures)
    [curves] = by_title(figures, "Learning curves")
    ends = {t["name"].split(":")[0]: (t["symbols"][-1], t["name"]) for t in curves["traces"]}
    assert ends["trial 0"] == ("square-open", f"trial 0: failed at step {FIRST_EVAL}")
    assert ends["trial 1"][0] == ends["trial 2"][0] == "x" and "stopped by ASHA" in ends["trial 1"][1]
    text = page.read_text(encoding="utf-8")
    assert "No final runs in final.parquet" in text and "ERROR" in text


@pytest.mark.slow
def test_a_folder_without_its_checkpoints_says_so_in_place_of_the_picture(smoke, tmp_path):
    copy = tmp_path / "committed"
    shutil.copytree(smoke, copy, ignore=shutil.ignore_patterns("ray", "dashboard.html", "paper-tables.md"))
    run = pram_report(str(copy))
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith(f"wrote {copy / 'dashboard.html'}")
    text = (copy / "dashboard.html").read_text(encoding="utf-8")
    assert "No t-SNE picture for target de" in text and "is not here (Ray&#x27;s files under ray/" in text
    assert "Token representations, target de" not in text
    assert (copy / "paper-tables.md").read_text() == (smoke / "paper-tables.md").read_text()


@pytest.mark.slow
def test_the_committed_laptop_search_builds_its_page(tmp_path):
    """results/search-conll-multi-laptop: the README's first command from a fresh clone, committed without ray/
    (so without the checkpoints the t-SNE picture reads)."""
    copy = tmp_path / "conll-multi-laptop"
    shutil.copytree(ROOT / "results" / "search-conll-multi-laptop", copy,
                    ignore=shutil.ignore_patterns("dashboard.html", "paper-tables.md"))
    run = pram_report(str(copy))
    assert run.returncode == 0, run.stderr[-3000:]
    text = (copy / "dashboard.html").read_text(encoding="utf-8")
    assert "is not here (Ray&#x27;s files under ray/ stay out of git)" in text
    final = pq.read_table(copy / "final.parquet").to_pylist()
    pram = {r["target"]: r["f1_mean"] for r in final
            if (r["variant"], r["selection"], r["role"]) == ("both", "target-dev", "target")}
    assert round(sum(pram.values()) / 3, 2) == 54.79  # the average column: (51.89 + 54.36 + 58.11) / 3
    tables = (copy / "paper-tables.md").read_text()
    assert "| **PRAM, here** | me5-small | 51.89 ± 2.16 | 54.36 ± 2.55 | 58.11 ± 4.49 | 54.79 |" in tables


@pytest.mark.slow
def test_a_search_from_before_pram_report_still_builds_its_page(tmp_path):
    """A final.parquet written before the baseline runs and both selection rules: one row per target and
    language, no variant, selection or checkpoints columns (the committed search in its first version)."""
    copy = tmp_path / "conll-multi-laptop"
    shutil.copytree(ROOT / "results" / "search-conll-multi-laptop", copy,
                    ignore=shutil.ignore_patterns("dashboard.html", "paper-tables.md"))
    table = pq.read_table(copy / "final.parquet")
    rows = [r for r in table.to_pylist() if (r["variant"], r["selection"]) == ("both", "target-dev")]
    old = pa.Table.from_pylist(rows).drop_columns(["variant", "selection", "checkpoints"])
    pq.write_table(old, copy / "final.parquet")
    run = pram_report(str(copy))
    assert run.returncode == 0, run.stderr[-3000:]
    text = (copy / "dashboard.html").read_text(encoding="utf-8")
    assert "recorded the test F1 of one selection rule only" in text and "lists no checkpoint" in text
    assert "| **PRAM, here** | me5-small | 51.89 ± 2.16 | 54.36 ± 2.55 | 58.11 ± 4.49 | 54.79 |" in \
        (copy / "paper-tables.md").read_text()


@pytest.mark.parametrize("case, message", [
    ("missing", "no such folder"),
    ("empty", "not the results folder of a search (no run.json, best.json, trials.parquet, history.parquet)"),
    ("bad-json", "best.json: not valid JSON"),
    ("no-settings", "run.json: no dataset, mode, targets, objective"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, case, message):
    folder = tmp_path / case
    if case != "missing":
        folder.mkdir()
    if case in ("bad-json", "no-settings"):
        for name in ("trials.parquet", "history.parquet"):
            (folder / name).write_bytes(b"")
        (folder / "run.json").write_text("{}")
        (folder / "best.json").write_text("{not json" if case == "bad-json" else "{}")
    run = pram_report(str(folder))
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert run.stderr.startswith(f"pram: error: {folder}") and message in run.stderr


def test_help_explains_the_command():
    run = pram_report("--help")
    assert run.returncode == 0
    for words in ("RESULTS_DIR", "dashboard.html", "paper-tables.md", "--tsne-per-class", "--threads",
                  "no network"):
        assert words in run.stdout


@pytest.mark.slow
@needs_chromium
def test_the_browser_check_catches_console_errors(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<html><head><script src="https://cdn.example.org/x.js"></script></head><body>'
                    '<script>console.error("boom"); missing_function();</script></body></html>')
    errors, figures = open_in_browser(page, tmp_path)
    assert figures == []
    assert errors[0].startswith("failed to load https://cdn.example.org/x.js")
    assert "boom" in errors and any("missing_function is not defined" in e for e in errors)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_on(port: int) -> set[str]:
    """The local addresses of the TCP sockets listening on a port (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


@pytest.mark.slow
def test_optuna_dashboard_serves_the_smoke_search_on_localhost(smoke):
    pytest.importorskip("optuna_dashboard",
                        reason="optuna-dashboard is not installed (pip install -e '.[test]')")
    port = free_port()
    command = [str(Path(sys.executable).with_name("optuna-dashboard")), f"sqlite:///{smoke / 'optuna.db'}",
               "--host", "127.0.0.1", "--port", str(port), "--quiet"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        studies = poll_json(f"http://127.0.0.1:{port}/api/studies", server)
        [study] = studies["study_summaries"]
        assert study["study_name"] == "conll-multi-de"
        detail = poll_json(f"http://127.0.0.1:{port}/api/studies/{study['study_id']}", server)
        trials = pq.read_table(smoke / "trials.parquet").to_pylist()
        states = {t["number"]: t["state"] for t in detail["trials"]}
        assert states == {t["optuna_trial"]: {"TERMINATED": "Complete", "PRUNED": "Pruned"}[t["status"]]
                          for t in trials}
        assert listening_on(port) == {"127.0.0.1"}  # bound to this machine only
    finally:
        server.terminate()
        server.wait(timeout=30)


def poll_json(url: str, server: subprocess.Popen, seconds: float = 60) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        assert server.poll() is None, f"optuna-dashboard exited: {server.stderr.read()[-2000:]}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)

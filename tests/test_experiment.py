"""`pram experiment` end to end on the smoke preset, and its paired differences against numbers worked by hand."""

import statistics
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from PIL import Image

from pram.experiment import paired_lines
from pram.experiment_figures import as_own_target


def test_paired_differences_by_hand():
    rows = [{"variant": v, "seed": s, "lang": "de", "f1": f1, "target": "de", "selection": "target-dev"}
            for v, s, f1 in [("both", 0, 60.0), ("both", 1, 55.0), ("none", 0, 58.0), ("none", 1, 56.0)]]
    lines = paired_lines(rows, "de", "target-dev", ["de"])
    # differences +2.0 and -1.0: mean +0.50, sample sd 3 / sqrt 2; t(0.975, 1 df) = 12.7062 (a printed t table),
    # so the interval is 0.5 -/+ 12.7062 * (3 / sqrt 2) / sqrt 2 = 0.5 -/+ 19.06
    assert lines[-2] == "| PRAM | +0.50 [-18.56, +19.56] (n=2): no difference shown at 2 seeds (a verdict needs 3) |"
    assert paired_lines([r for r in rows if r["variant"] == "both"], "de", "target-dev", ["de"]) == []
    # one pair (seed 0: 60 - 58) has no spread: the difference alone, and no verdict it cannot give
    assert paired_lines([r for r in rows if r["seed"] == 0], "de", "target-dev", ["de"])[-2] == \
        "| PRAM | +2.00 (n=1): no difference shown at 1 seed (a verdict needs 3) |"


def test_a_target_language_is_drawn_only_from_the_runs_where_it_is_the_target():
    rows = [{"target": t, "lang": lang, "f1": 1.0} for t in ("de", "nl") for lang in ("de", "nl", "en", "es")]
    kept = {(r["target"], r["lang"]) for r in as_own_target(rows)}
    # de and nl each from their own runs; en (source) and es (zero-shot only) from both
    assert kept == {("de", "de"), ("nl", "nl"), ("de", "en"), ("nl", "en"), ("de", "es"), ("nl", "es")}


@pytest.mark.slow
def test_smoke_experiment_writes_runs_summary_and_figure(data_dir, tmp_path):
    results = tmp_path / "results"
    command = [sys.executable, "-m", "pram.cli", "experiment", "--smoke-test", "--data-dir", str(data_dir),
               "--cache-dir", str(tmp_path / "cache"), "--variants", "both,none", "--seeds", "0,1",
               "--targets", "de", "--parallel", "2", "--runs-dir", str(tmp_path / "runs"), "--results", str(results)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = pq.read_table(results / "runs.parquet").to_pylist()
    # 2 variants x 2 seeds x 2 selection rules x 4 test languages (de target, en source, es and nl zero-shot)
    assert len(rows) == 2 * 2 * 2 * 4
    summary = (results / "summary.md").read_text()
    both = [r["f1"] for r in rows if (r["variant"], r["selection"], r["lang"]) == ("both", "target-dev", "de")]
    assert f"{statistics.mean(both):.2f} ± {statistics.stdev(both):.2f}" in summary
    assert "Paired by seed" in summary and "77.64" in summary  # the paper's Table 5, PRAM on de
    with Image.open(results / "summary.png") as image:
        assert image.size[0] > 600 and len(image.convert("L").getcolors(256)) > 10  # drawn, not blank
    # the diagnostics table has the alignment columns filled for both variants, and its figure is drawn
    lines = summary.splitlines()
    at = next(i for i, line in enumerate(lines) if "cos(source prototype, target class mean)" in line)
    column = lines[at].split(" | ").index("cos(source prototype, target class mean)")
    cells = [line.split(" | ")[column] for line in lines[at + 2:at + 4]]
    assert len(cells) == 2 and all(-1 <= float(c) <= 1 for c in cells), cells
    with Image.open(results / "diagnostics.png") as image:
        assert image.size[1] > 600 and len(image.convert("L").getcolors(256)) > 10
    # the paper's Figure 4 from two of these runs: PRAM beside --apc none, one PNG
    checkpoints = {v: next((tmp_path / "runs").glob(f"*-{v}-seed0")) / "checkpoints" / "best-target-dev"
                   for v in ("both", "none")}
    tsne = [sys.executable, "-m", "pram.cli", "tsne", f"PRAM={checkpoints['both']}",
            f"no APC={checkpoints['none']}", "--per-class", "5", "--data-dir", str(data_dir), "--out",
            str(results / "tsne.png")]
    drawn = subprocess.run(tsne, capture_output=True, text=True, check=False, timeout=300)
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    with Image.open(results / "tsne.png") as image:
        assert image.size[0] > 1000 and len(image.convert("L").getcolors(256)) > 10
    # 5 per tag (9 CoNLL tags) and side at most, and all 5 of O and B-PER on both sides
    assert "PRAM: " in drawn.stdout and 2 * 5 * 2 <= int(drawn.stdout.split("PRAM: ")[1].split()[0]) <= 9 * 5 * 2
    bad = subprocess.run([*tsne[:4], f"PRAM={tmp_path}", "--out", str(tmp_path / "x.png")], capture_output=True,
                         text=True, check=False)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "not a pram checkpoint" in bad.stderr
    # finished runs are read back
    again = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
    assert again.returncode == 0 and pq.read_table(results / "runs.parquet").to_pylist() == rows

    # A later target goes into the same table beside the earlier rows, each row with the command that made it.
    cut, resume = command.index("--variants"), command.index("--parallel")
    later = [*command[:cut], "--variants", "none", "--seeds", "0", "--targets", "nl", *command[resume:]]
    added = subprocess.run(later, check=False, capture_output=True, text=True, timeout=600)
    assert added.returncode == 0, added.stderr[-2000:]
    merged = pq.read_table(results / "runs.parquet").to_pylist()
    assert [r for r in merged if r["target"] == "de"] == rows
    assert len([r for r in merged if r["target"] == "nl"]) == 1 * 1 * 2 * 4
    first, second = {r["command"] for r in rows}, {r["command"] for r in merged if r["target"] == "nl"}
    assert len(first) == len(second) == 1 and "--targets de" in first.pop() and "--targets nl" in second.pop()
    summary = (results / "summary.md").read_text()
    assert "### Target de, checkpoint chosen on target-dev" in summary and "### Target nl" in summary
    assert summary.startswith("Commands (each made the rows of its targets):") and "--targets nl" in summary

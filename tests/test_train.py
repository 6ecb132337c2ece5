"""The trainer end to end on real sentences with a tiny random BERT (the `smoke` preset)."""

import json
import math
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pram.batches import collate
from pram.config import preset
from pram.inputs import prepare_data
from pram.objective import Banks, Weights, objective_parts
from pram.train import build_model, first_pieces, first_selectable_step, train, train_step


@pytest.fixture(scope="module")
def smoke_config(data_dir, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return preset("smoke", data_dir=str(data_dir), cache_dir=str(cache), quiet=True,
                  out_dir=str(tmp_path_factory.mktemp("run")))


@pytest.fixture(scope="module")
def smoke_data(smoke_config):
    return prepare_data(smoke_config)


@pytest.fixture(scope="module")
def smoke_run(smoke_config, smoke_data):
    return train(smoke_config, smoke_data)


def test_smoke_run_lowers_the_loss_and_writes_metrics_and_checkpoints(smoke_config, smoke_run):
    history = smoke_run["history"]
    assert [h["step"] for h in history] == [20, 40, 60]
    assert history[-1]["sup"] < history[0]["sup"]
    out = smoke_config.out_dir
    metrics = json.loads(Path(f"{out}/metrics.json").read_text())
    assert metrics["history"] == json.loads(json.dumps(history))
    assert set(metrics["test"]) == {"en", "de"}
    for lang in ("en", "de"):
        assert 0 <= metrics["test"][lang]["f1"] <= 100
    for name in ("last", "best-target-dev", "best-source-dev"):
        weights = load_file(f"{out}/checkpoints/{name}/model.safetensors")
        assert "classifier.weight" in weights
    assert "banks.prototypes" in load_file(f"{out}/checkpoints/last/trainer.safetensors")
    # The target term is off for the first third of the steps (beta_start), then on.
    assert history[0]["beta"] == 0 and history[0]["tgt_c"] == 0
    assert history[-1]["beta"] == 1.0 and history[-1]["tgt_c"] > 0
    assert not any(h["collapse"] for h in history)  # the guard stays quiet on a normal run
    # the seconds spent tagging: each evaluation's dev sets, and the test sets at the end, within the run's time
    assert all(0 < h["eval_s"] < h["elapsed_s"] for h in history)
    assert smoke_run["test_s"] > 0 and metrics["test_s"] == smoke_run["test_s"]


def test_a_search_trial_writes_only_the_weights_its_search_reads(smoke_config, smoke_data, smoke_run, tmp_path):
    """best_weights=(): `last` alone, yet every rule's best step and dev score, as the run that writes them all."""
    trial = train(replace(smoke_config, out_dir=str(tmp_path)), smoke_data, score_test=False, best_weights=())
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last"]
    for rule, kept in smoke_run["selected_by"].items():
        assert trial["selected_by"][rule] == {"step": kept["step"], "dev_score": kept["dev_score"], "test": {}}
    with pytest.raises(ValueError, match="best_weights"):
        train(replace(smoke_config, out_dir=str(tmp_path / "x")), smoke_data, best_weights=("target-dev",))


def test_last_is_written_only_when_due_and_beside_new_best_weights(smoke_config, smoke_data, smoke_run, tmp_path):
    """save_every longer than the run: `last` is written only with best weights, and `report` gets a checkpoint
    only at those evaluations: the selectable ones that beat every earlier target-dev F1 of the same run."""
    best, improving = -1.0, []
    for h in smoke_run["history"]:
        if h["selectable"] and h["target_dev_f1"] > best:
            best, improving = h["target_dev_f1"], [*improving, h["step"]]
    assert improving  # (the target term is on from step 21: not the evaluation at step 20)
    for weights, expected in (((), []), (("target-dev",), improving)):
        out, handed = tmp_path / f"kept-{len(weights)}", []

        def report(metrics, checkpoint, last, to=handed):
            to.append((metrics["step"], checkpoint, last))

        train(replace(smoke_config, out_dir=str(out)), smoke_data, score_test=False, best_weights=weights,
              save_every=1e9, report=report)
        assert [(step, last) for step, _, last in handed] == [(20, False), (40, False), (60, True)]
        assert [step for step, checkpoint, _ in handed if checkpoint is not None] == expected
        last = out / "checkpoints" / "last"
        assert last.exists() == bool(expected)
        if expected:
            assert json.loads((last / "state.json").read_text())["step"] == expected[-1]


def test_report_says_which_evaluation_is_the_last_when_patience_ends_the_run(smoke_config, smoke_data, tmp_path):
    """With patience 1 the run ends at the first selectable evaluation (from step 21) whose target-dev F1 does
    not beat every earlier one, or at its last step; only that report is told it is the last."""
    handed = []
    config = replace(smoke_config, out_dir=str(tmp_path), eval_every=10, patience=1)
    train(config, smoke_data, score_test=False, best_weights=(),
          report=lambda metrics, checkpoint, last: handed.append((metrics["step"], metrics["target_dev_f1"], last)))
    best, stop = -1.0, config.max_steps
    for step, f1, _ in handed:
        if step > config.beta_start_step:
            if f1 <= best:
                stop = step
                break
            best = f1
    assert [step for step, _, _ in handed] == list(range(10, stop + 1, 10))
    assert [last for _, _, last in handed] == [False] * (len(handed) - 1) + [True]


def test_only_first_pieces_enter_the_loss(smoke_config, smoke_data):
    model = build_model(smoke_config, smoke_data, "cpu")
    rows = smoke_data.source_train["en"][:4]
    batch = collate(rows, smoke_data.pad_token_id)
    h, logits, labels = first_pieces(model, batch, "cpu")
    n_first = sum(sum(w >= 0 for w in r["word_ids"]) for r in rows)
    assert h.shape[0] == logits.shape[0] == labels.shape[0] == n_first
    assert (labels >= 0).all()
    labelled = sum(sum(lab >= 0 for lab in r["labels"]) for r in rows)
    assert labelled == n_first  # a labelled piece is exactly a first piece


class Interrupted(Exception):
    pass


def interrupt_at(step):
    def report(metrics, checkpoint, last):
        if metrics["step"] == step:
            raise Interrupted
    return report


@pytest.mark.slow
def test_resume_reproduces_the_uninterrupted_run(smoke_config, smoke_data, smoke_run, tmp_path):
    cut = replace(smoke_config, out_dir=str(tmp_path / "cut"))
    with pytest.raises(Interrupted):  # killed just after the checkpoint of step 40
        train(cut, smoke_data, report=interrupt_at(40))
    final = train(cut, smoke_data, resume=True)
    assert [h["step"] for h in final["history"]] == [20, 40, 60]
    assert final["history"][-1]["loss"] == pytest.approx(smoke_run["history"][-1]["loss"], rel=1e-5)
    a = load_file(f"{smoke_config.out_dir}/checkpoints/last/model.safetensors")
    b = load_file(f"{tmp_path}/cut/checkpoints/last/model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


@pytest.mark.slow
def test_two_runs_with_one_seed_agree(smoke_config, smoke_data, smoke_run, tmp_path):
    again = train(replace(smoke_config, out_dir=str(tmp_path / "again")), smoke_data)
    assert again["history"][-1]["loss"] == smoke_run["history"][-1]["loss"]
    assert again["test"]["de"]["f1"] == smoke_run["test"]["de"]["f1"]


def test_apc_none_has_no_consistency_terms(smoke_config, smoke_data, tmp_path):
    run = train(replace(smoke_config, apc="none", out_dir=str(tmp_path / "none"), max_steps=20), smoke_data)
    assert run["history"][-1]["src_c"] == 0 and run["history"][-1]["tgt_c"] == 0


@pytest.mark.slow
def test_multi_source_smoke_run(data_dir, tmp_path):
    config = preset("smoke", sources=("en", "es", "nl"), target="de", data_dir=str(data_dir),
                    cache_dir=str(tmp_path / "cache"), out_dir=str(tmp_path / "multi"), quiet=True)
    with pytest.raises(Interrupted):
        train(config, report=interrupt_at(40))
    final = train(config, resume=True)
    assert final["steps"] == 60
    last = final["history"][-1]
    assert last["sup"] < final["history"][0]["sup"]
    assert {k for k in last if k.startswith("bank_updates_")} == {"bank_updates_en", "bank_updates_es",
                                                                  "bank_updates_nl"}
    assert last["bank_updates_en"] == 60
    assert 0 <= last["bank_distance_en_es"] <= 2


@pytest.mark.slow
def test_cli_smoke_and_bad_input(data_dir, tmp_path):
    env_args = ["--data-dir", str(data_dir), "--cache-dir", str(tmp_path / "cache")]
    ok = subprocess.run([sys.executable, "-m", "pram.cli", "train", "--smoke-test", "--max-steps", "20",
                         "--out", str(tmp_path / "cli"), *env_args],
                        capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "test F1" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "pram.cli", "train", "--smoke-test", "--tau", "-1", *env_args],
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 2
    assert "tau must be positive" in bad.stderr and "Traceback" not in bad.stderr
    with pytest.raises(ValueError, match=r"precision must be one of \('fp32', 'bf16'\)"):  # the CLI's one line
        preset("smoke", precision="fp16")
    shutil.rmtree(tmp_path / "cli")


@pytest.mark.slow
def test_collapse_guard_fires_on_a_run_built_to_collapse(smoke_config, smoke_data, tmp_path):
    """Huge consistency weights from step 0 and no down-sampling drive every target prediction to O."""
    config = replace(smoke_config, out_dir=str(tmp_path / "collapse"), alpha=20.0, beta=20.0, beta_start=0.0,
                     gamma=None)
    final = train(config, smoke_data)
    assert final["collapsed"]
    assert all(h["collapse"] for h in final["history"])
    assert final["history"][-1]["target_entity_share"] < 0.25 * final["history"][-1]["source_entity_share"]


def test_evaluate_and_predict_a_checkpoint(smoke_config, smoke_run, data_dir, tmp_path):
    from pram.predict import load_trained

    checkpoint = f"{smoke_config.out_dir}/checkpoints/best-target-dev"
    cli = [sys.executable, "-m", "pram.cli"]
    env_args = ["--data-dir", str(data_dir), "--cache-dir", smoke_config.cache_dir]
    # Scoring the selected checkpoint on the whole German test set (the run itself scored the first 40).
    scored = subprocess.run([*cli, "evaluate", checkpoint, "--lang", "de", "--json", *env_args],
                            capture_output=True, text=True, check=False)
    assert scored.returncode == 0, scored.stderr
    full_test = json.loads(scored.stdout)
    assert full_test["sentences"] == 3005  # the official count of CoNLL-2003 German test
    _model, _tokenizer, info = load_trained(checkpoint)
    assert info["step"] == smoke_run["selected_by"]["target-dev"]["step"]

    text = tmp_path / "sentences.txt"
    text.write_text("Angela Merkel besuchte Paris .\nDer FC Bayern gewann .\n", encoding="utf-8")
    tagged = subprocess.run([*cli, "predict", checkpoint, str(text)], capture_output=True, text=True, check=False)
    assert tagged.returncode == 0, tagged.stderr
    sentences = tagged.stdout.strip().split("\n\n")
    assert [line.split("\t")[0] for line in sentences[0].splitlines()] == ["Angela", "Merkel", "besuchte",
                                                                           "Paris", "."]
    assert all(line.split("\t")[1] in info["label_names"] for s in sentences for line in s.splitlines())

    missing = subprocess.run([*cli, "predict", str(tmp_path), str(text)], capture_output=True, text=True, check=False)
    assert missing.returncode == 2 and "not a pram checkpoint" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_compare_two_predictions_of_the_german_test_set(smoke_config, smoke_data, smoke_run, data_dir, tmp_path,
                                                      pram):
    """`pram compare` of two `pram predict` outputs prints the F1s `pram evaluate` gives the two checkpoints, and
    refuses predictions of other sentences in one line."""
    other = replace(smoke_config, seed=1, max_steps=40, out_dir=str(tmp_path / "other"))
    train(other, smoke_data)
    gold = data_dir / "conll2003" / "de" / "test.txt"
    env_args = ["--data-dir", str(data_dir), "--cache-dir", smoke_config.cache_dir]
    f1s, outputs = [], []
    for name, run in (("a", smoke_config), ("b", other)):
        checkpoint = f"{run.out_dir}/checkpoints/best-target-dev"
        scored = pram("evaluate", checkpoint, "--lang", "de", "--json", env_args=env_args)
        assert scored.returncode == 0, scored.stderr
        f1s.append(json.loads(scored.stdout)["f1"])
        outputs.append(tmp_path / f"{name}.tsv")
        assert pram("predict", checkpoint, str(gold), "--out", str(outputs[-1])).returncode == 0
    compared = pram("compare", *map(str, outputs), "--gold", str(gold), "--json", "--iterations", "300")
    assert compared.returncode == 0, compared.stderr
    found = json.loads(compared.stdout)
    assert found["sentences"] == 3005
    assert (found["f1_a"], found["f1_b"]) == (pytest.approx(f1s[0], abs=1e-9), pytest.approx(f1s[1], abs=1e-9))
    assert f1s[0] != f1s[1] and found["diff"] == pytest.approx(f1s[0] - f1s[1])
    assert found["low"] <= found["diff"] <= found["high"] and 0 < found["p"] <= 1
    assert set(found["per_type"]) == {"LOC", "MISC", "ORG", "PER"}
    table = pram("compare", *map(str, outputs), "--gold", str(gold), "--iterations", "300")
    assert f"{f1s[0]:.2f}" in table.stdout and f"{f1s[1]:.2f}" in table.stdout and "p (randomization)" in table.stdout
    # the same file cut short is not the same sentences
    cut = tmp_path / "cut.tsv"
    cut.write_text("\n\n".join(outputs[1].read_text(encoding="utf-8").split("\n\n")[:100]) + "\n\n",
                   encoding="utf-8")
    refused = pram("compare", str(outputs[0]), str(cut), "--gold", str(gold))
    assert refused.returncode == 2 and "do not cover the same sentences" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr


@pytest.mark.slow
def test_a_conll_model_scored_on_wikiann_uses_the_shared_labels(smoke_config, smoke_run, data_dir):
    """CoNLL has MISC and WikiAnn has not: scoring across them counts PER, ORG and LOC only, and says so."""
    checkpoint = f"{smoke_config.out_dir}/checkpoints/best-target-dev"
    done = subprocess.run([sys.executable, "-m", "pram.cli", "evaluate", checkpoint, "--dataset", "wikiann",
                           "--lang", "hi", "--json", "--data-dir", str(data_dir), "--cache-dir",
                           smoke_config.cache_dir], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "MISC is in conll but not wikiann" in done.stderr
    scores = json.loads(done.stdout)
    assert scores["sentences"] == 1000  # the official count of WikiAnn Hindi test
    assert set(scores["per_type"]) <= {"PER", "ORG", "LOC"}


def test_source_sampling_balanced_or_proportional_to_the_official_train_counts():
    # CoNLL train sentences (the data README's official counts): en 14041, es 8323, nl 15806; 38170 in all.
    counts = [14041, 8323, 15806]
    balanced = preset("smoke", sources=("en", "es", "nl"), batch_size=16)
    assert balanced.source_batch_sizes(counts) == [16, 16, 16]
    # 48 sentences shared by size: 48 * 14041 / 38170 = 17.66, 48 * 8323 / 38170 = 10.47, 48 * 15806 / 38170 = 19.88
    proportional = replace(balanced, source_sampling="proportional")
    assert proportional.source_batch_sizes(counts) == [18, 10, 20]
    assert proportional.source_batch_sizes([100000, 1]) == [32, 1]  # a tiny source still gets a sentence
    with pytest.raises(ValueError, match="source_sampling"):
        replace(balanced, source_sampling="uniform")


@pytest.mark.slow
def test_bf16_runs_the_model_in_bfloat16_and_keeps_losses_banks_and_weights_float32(smoke_config, smoke_data):
    """--precision bf16: the encoder's matrix products run in bf16; what is learnt and summed stays fp32. Three
    steps from the same weights and batches give the same losses as fp32 to within bf16's rounding."""
    config = replace(smoke_config, beta_start=0.0)  # the target pass and term from step 0
    losses = {}
    for precision in ("fp32", "bf16"):
        run = replace(config, precision=precision)
        model = build_model(run, smoke_data, "cpu")
        dtypes = []  # of every linear layer's output (LayerNorm outputs are fp32 under autocast)
        for layer in model.modules():
            if isinstance(layer, torch.nn.Linear):
                layer.register_forward_hook(lambda _m, _i, out, seen=dtypes: seen.append(out.dtype))
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=run.lr)
        banks = Banks.empty(1, len(smoke_data.label_names), model.encoder.config.hidden_size)
        losses[precision] = []
        for step in range(3):
            banks, terms, _ = train_step(model, optimizer, banks, smoke_data, run, step, "cpu")
            losses[precision].append(terms["loss"])
        expected = torch.bfloat16 if precision == "bf16" else torch.float32
        assert len(dtypes) > 20 and set(dtypes) == {expected}  # source and target passes alike
        assert banks.prototypes.dtype == torch.float32 and banks.known.any()
        assert {p.dtype for p in model.parameters()} == {torch.float32}
        assert all(s["exp_avg"].dtype == torch.float32 for s in optimizer.state.values())
        assert terms["tgt_c"] > 0
    # bf16 keeps 8 bits of mantissa: about 0.4% per product; the losses of 3 steps agree to 3%
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.03)
    assert losses["bf16"] != losses["fp32"]  # and bf16 did change the arithmetic


DIAGNOSTICS = ("q_entropy_source", "q_entropy_target", "proto_cos_mean", "proto_f1_target", "grad_norm_sup",
               "grad_norm_apc_source", "grad_norm_apc_target", "align_cos_target", "proto_acc_target",
               "js_pq_target")


def test_every_evaluation_writes_the_diagnostics_of_q(smoke_run):
    for h in smoke_run["history"]:
        for key in DIAGNOSTICS:
            assert math.isfinite(h[key]), (h["step"], key)
        assert 0 <= h["q_entropy_source"] <= math.log(9) + 1e-6 and 0 <= h["q_entropy_target"] <= math.log(9) + 1e-6
        assert -1 <= h["proto_cos_mean"] <= 1 and 0 <= h["proto_f1_target"] <= 100
        assert h["grad_norm_sup"] > 0 and h["grad_norm_apc_source"] > 0
        assert -1 <= h["align_cos_target"] <= 1 and 0 <= h["proto_acc_target"] <= 1
        assert 0 <= h["js_pq_target"] <= math.log(2) + 1e-6
        per_class = [v for k, v in h.items() if k.startswith("align_cos_target_")]
        assert per_class and h["align_cos_target"] == pytest.approx(sum(per_class) / len(per_class))
    # The target term is off at the first evaluation's step (beta_start 1/3 of 60), on at the last.
    assert smoke_run["history"][0]["grad_norm_apc_target"] == 0
    assert smoke_run["history"][-1]["grad_norm_apc_target"] > 0


def test_a_smoke_run_to_chinese_writes_every_alignment_key_at_each_evaluation(smoke_config, tmp_path):
    """WikiAnn en -> zh on real sentences (Chinese split into characters): every evaluation writes the
    alignment of each of the 6 entity tags (B- and I- of PER, ORG, LOC: one prototype each), their mean, argmax
    q accuracy and JS(p, q), all finite."""
    config = replace(smoke_config, dataset="wikiann", target="zh", eval_languages=(), out_dir=str(tmp_path))
    history = train(config)["history"]
    assert [h["step"] for h in history] == [20, 40, 60]
    for h in history:
        per_class = {k: v for k, v in h.items() if k.startswith("align_cos_target_")}
        assert set(per_class) == {f"align_cos_target_{p}-{c}" for p in "BI" for c in ("PER", "ORG", "LOC")}
        for key in (*per_class, "align_cos_target", "proto_acc_target", "js_pq_target"):
            assert math.isfinite(h[key]), (h["step"], key)
        assert h["align_cos_target"] == pytest.approx(sum(per_class.values()) / 6)


def test_selection_skips_evaluations_from_before_the_target_term(smoke_config, smoke_run):
    """smoke: the target term starts at step 20 of 60, so the evaluation at step 20 scored a model that never
    saw it: it is not selectable, and each rule keeps the best of steps 40 and 60 (the earlier on a tie)."""
    assert first_selectable_step(smoke_config) == 21
    assert first_selectable_step(replace(smoke_config, apc="none")) == 0
    assert first_selectable_step(replace(smoke_config, beta_start=0.0, beta_ramp=0.5)) == 1
    history = smoke_run["history"]
    assert [h["selectable"] for h in history] == [False, True, True]
    for selection, key in (("target-dev", "target_dev_f1"), ("source-dev", "source_dev_f1")):
        best = max(history[1:], key=lambda h: (h[key], -h["step"]))
        assert smoke_run["selected_by"][selection]["step"] == best["step"]
        assert smoke_run["selected_by"][selection]["dev_score"] == best[key]


def test_the_projection_head_learns_from_the_apc_terms_only(smoke_config, smoke_data):
    config = replace(smoke_config, proto_space="projection", proto_dim=16)
    model = build_model(config, smoke_data, "cpu")
    head = list(model.projection.parameters())
    batch = collate(smoke_data.source_train["en"][:8], smoke_data.pad_token_id)
    z, logits, labels = first_pieces(model, batch, "cpu")
    assert z.shape[-1] == 16 and torch.allclose(z.norm(dim=-1), torch.ones(len(z)))  # L2-normalised
    target = first_pieces(model, collate(smoke_data.target_train[:8], smoke_data.pad_token_id), "cpu")[:2]
    parts, _, _ = objective_parts([(z, logits, labels)], target, Banks.empty(1, 9, 16),
                                  Weights(0.2, 0.9, 1.0, 1.0, None))
    sup = torch.autograd.grad(parts["sup"], head, retain_graph=True, allow_unused=True)
    assert all(g is None for g in sup)  # L_sup never reaches the head
    for name in ("apc_source", "apc_target"):
        grads = torch.autograd.grad(parts[name], head, retain_graph=True, allow_unused=True)
        assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0, name


@pytest.mark.slow
def test_resume_with_the_projection_head_and_centering_repeats_the_uninterrupted_run(smoke_config, smoke_data,
                                                                                     tmp_path):
    for space in ("projection", "centered"):
        config = replace(smoke_config, proto_space=space, proto_layers="mean4", out_dir=str(tmp_path / space))
        whole = train(config, smoke_data)
        cut = replace(config, out_dir=str(tmp_path / f"{space}-cut"))
        with pytest.raises(Interrupted):
            train(cut, smoke_data, report=interrupt_at(40))
        resumed = train(cut, smoke_data, resume=True)
        assert resumed["history"][-1]["loss"] == pytest.approx(whole["history"][-1]["loss"], rel=1e-5)
        assert resumed["test"]["de"]["f1"] == whole["test"]["de"]["f1"]
        a = load_file(f"{config.out_dir}/checkpoints/last/model.safetensors")
        b = load_file(f"{cut.out_dir}/checkpoints/last/model.safetensors")
        assert (space == "projection") == any(k.startswith("projection.") for k in a)
        assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
        center = load_file(f"{cut.out_dir}/checkpoints/last/trainer.safetensors")["banks.center"]
        assert center.abs().sum() > 0


@pytest.mark.slow
def test_a_laptop_run_scores_the_whole_test_set(data_dir, tmp_path, monkeypatch):
    """The laptop preset scores every sentence of the test sets (the official CoNLL-2003 counts: German 3005,
    English 3453), whatever its dev subset; two steps of the real encoder are enough to see it."""
    config = preset("laptop", data_dir=str(data_dir), out_dir=str(tmp_path / "laptop"), quiet=True,
                    max_steps=2, eval_every=2, batch_size=2, train_sentences=16, eval_sentences=8,
                    eval_languages=(), apc="none", threads=2, max_length=24)  # short pieces: the count is the point
    import pram.metrics
    import pram.train

    scored = []  # one entry per scoring of the test sets
    monkeypatch.setattr(pram.train, "test_metrics", lambda *a: scored.append(1) or pram.metrics.test_metrics(*a))
    final = train(config)
    assert final["test"]["de"]["sentences"] == 3005 and final["test"]["en"]["sentences"] == 3453
    assert final["selected_by"]["source-dev"]["step"] == final["selected_by"]["target-dev"]["step"] == 2
    assert len(scored) == 1 and final["selected_by"]["source-dev"]["test"] == final["test"]  # scored once


def test_the_linear_schedule_is_huggingfaces_warm_up_then_decay():
    """lr_at against transformers' own get_linear_schedule_with_warmup, stepped as the Trainer steps it."""
    from transformers import get_linear_schedule_with_warmup

    from pram.train import lr_at

    config = preset("smoke", lr=3e-3, lr_schedule="linear", warmup=0.1)  # 60 steps, 6 of warm-up
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, 6, config.max_steps)
    theirs = []
    for _ in range(config.max_steps):
        theirs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    ours = [lr_at(config, step) for step in range(config.max_steps)]
    assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-15)
    assert ours[0] == 0 and ours[6] == pytest.approx(3e-3) and ours[33] == pytest.approx(3e-3 * 27 / 54)
    assert {lr_at(preset("smoke"), step) for step in range(60)} == {3e-3}  # constant: the preset's rate
    odd = preset("smoke", lr_schedule="linear", warmup=0.15)  # 9 steps of warm-up: ceil(0.15 * 60), as the Trainer
    assert lr_at(odd, 8) == pytest.approx(3e-3 * 8 / 9) and lr_at(odd, 9) == pytest.approx(3e-3)


@pytest.mark.slow
def test_a_resumed_run_with_the_linear_schedule_and_head_dropout_repeats_the_uninterrupted_run(
        smoke_config, smoke_data, tmp_path):
    config = replace(smoke_config, lr_schedule="linear", warmup=0.2, head_dropout=0.3, out_dir=str(tmp_path / "a"))
    whole = train(config, smoke_data)
    assert [h["lr"] for h in whole["history"]] == pytest.approx([3e-3 * 41 / 48, 3e-3 * 21 / 48, 3e-3 * 1 / 48])
    cut = replace(config, out_dir=str(tmp_path / "b"))
    with pytest.raises(Interrupted):
        train(cut, smoke_data, report=interrupt_at(20))
    resumed = train(cut, smoke_data, resume=True)
    assert resumed["history"][-1]["loss"] == pytest.approx(whole["history"][-1]["loss"], rel=1e-5)
    assert resumed["test"]["de"]["f1"] == whole["test"]["de"]["f1"]
    model = build_model(config, smoke_data, "cpu")
    assert model.dropout.p == 0.3 and build_model(smoke_config, smoke_data, "cpu").dropout.p == 0.1


def test_alignment_scores_on_target_dev_agree_with_the_words_and_the_gold_counts(smoke_config, smoke_data):
    """evaluate()'s prototype diagnostics on the German dev split: the accuracy of argmax q over first pieces
    equals that over the words it tagged, the class counts are the gold tags of those words, and JS(p, q)
    lies in [0, ln 2]."""
    from pram.evaluate import evaluate, predict
    from pram.metrics import similarity_fn

    model = build_model(smoke_config, smoke_data, "cpu")
    banks = Banks.empty(1, len(smoke_data.label_names), model.proto_size)
    source = smoke_data.source_train["en"]
    batch = collate([source[i] for i in range(32)], smoke_data.pad_token_id)
    h, _, labels = first_pieces(model, batch, "cpu")
    banks = banks.updated(0, h, labels, 0.0)
    split, q = smoke_data.dev[smoke_config.target], similarity_fn(banks, smoke_config, None)
    scores = evaluate(model, split, smoke_data.label_names, smoke_data.pad_token_id, similarity=q)
    out = predict(model, split, smoke_data.pad_token_id, similarity=q)
    pairs = [(w, g) for words, gold in zip(out.proto_words, split["ner_tags"]) for w, g in zip(words, gold) if w >= 0]
    assert scores["proto_acc"] == pytest.approx(sum(w == g for w, g in pairs) / len(pairs))
    counts = torch.bincount(torch.tensor([g for _, g in pairs]), minlength=len(smoke_data.label_names))
    assert scores["class_counts"].long().tolist() == counts.tolist()
    assert 0 < scores["js_pq"] < math.log(2)


def test_a_run_and_its_checkpoints_follow_the_users_umask(smoke_config, smoke_data, tmp_path):
    import os
    import stat

    old = os.umask(0o027)  # a group may read, others not
    try:
        train(replace(smoke_config, max_steps=20, out_dir=str(tmp_path / "run")), smoke_data)
    finally:
        os.umask(old)
    run = tmp_path / "run"
    modes = {p.relative_to(run).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in run.rglob("*")}
    assert modes["checkpoints/last"] == modes["checkpoints/best-target-dev"] == 0o750
    assert modes["checkpoints/last/model.safetensors"] == modes["checkpoints/last/state.json"] == 0o640
    assert modes["config.json"] == modes["metrics.json"] == 0o640
    assert set(modes.values()) == {0o750, 0o640}


def test_test_languages_target_scores_the_target_alone(smoke_config, smoke_data):
    assert set(smoke_data.test) == {"en", "de"}  # the smoke run: the source and the target
    only = prepare_data(replace(smoke_config, test_languages="target"))
    assert set(only.test) == {"de"} and set(only.dev) == {"en", "de"}  # dev sets still serve both rules
    assert only.test["de"]["tokens"] == smoke_data.test["de"]["tokens"]

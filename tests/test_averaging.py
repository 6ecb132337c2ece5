"""Weight averaging (pram/averaging.py): the average equals one worked out by hand, a run evaluates and keeps it,
and a resumed run continues it exactly."""

from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from pram.averaging import WeightAverage
from pram.config import TrainConfig, preset
from pram.train import train


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))
        self.frozen = torch.nn.Parameter(torch.zeros(1), requires_grad=False)


def fold(average, model, checkpoints, first_step=1):
    for step, values in enumerate(checkpoints, start=first_step):
        with torch.no_grad():
            model.w.copy_(torch.tensor(values))
        average.update(model, step)


def test_tail_average_is_the_mean_of_the_checkpoints_after_its_start():
    model = Tiny()
    config = TrainConfig(average="tail", average_start=0.25, max_steps=4)  # begins after step 1
    average = WeightAverage(config, model)
    fold(average, model, [[100.0, 100.0], [1.0, 2.0], [3.0, 4.0], [8.0, 0.0]])
    assert average.count == 3 and average.names == ["w"]
    assert average.weights["w"].tolist() == pytest.approx([(1 + 3 + 8) / 3, (2 + 4 + 0) / 3])


def test_ema_average_follows_its_warmed_up_decay_by_hand():
    model = Tiny()
    average = WeightAverage(TrainConfig(average="ema", average_decay=0.2), model)
    fold(average, model, [[1.0, 0.0], [3.0, 6.0], [5.0, 0.0]])
    # Update 1 copies; update 2: decay min(0.2, 2/11) = 2/11; update 3: decay min(0.2, 3/12) = 0.2.
    second = [2 / 11 * 1 + 9 / 11 * 3, 2 / 11 * 0 + 9 / 11 * 6]
    third = [0.2 * second[0] + 0.8 * 5, 0.2 * second[1] + 0.8 * 0]
    assert average.weights["w"].tolist() == pytest.approx(third)


def test_the_average_is_applied_inside_the_block_and_the_live_weights_come_back():
    model = Tiny()
    average = WeightAverage(TrainConfig(average="tail", average_start=0.0, max_steps=2), model)
    with average.applied(model):  # nothing averaged yet: the live weights
        assert model.w.tolist() == [0.0, 0.0]
    fold(average, model, [[2.0, 2.0], [4.0, 0.0]])
    with average.applied(model):
        assert model.w.tolist() == [3.0, 1.0]
    assert model.w.tolist() == [4.0, 0.0]


def test_no_average_keeps_nothing():
    model = Tiny()
    average = WeightAverage(TrainConfig(), model)
    fold(average, model, [[1.0, 1.0]])
    assert not average.active and average.tensors() == {}


def test_a_bad_average_setting_is_refused():
    with pytest.raises(ValueError, match="average must be one of"):
        TrainConfig(average="swa")
    with pytest.raises(ValueError, match="average_decay"):
        TrainConfig(average_decay=1.0)


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("kind", ["ema", "tail"])
def test_a_run_keeps_the_average_and_a_resumed_run_repeats_it(data_dir, tmp_path, kind):
    config = preset("smoke", data_dir=str(data_dir), cache_dir=str(tmp_path / "cache"), quiet=True,
                    max_steps=40, eval_every=10, average=kind, average_start=0.5, out_dir=str(tmp_path / "whole"))
    averages, scored = {}, {}  # step -> the average saved with `last` then; the weights that evaluation scored

    def keep(metrics, checkpoint, last):
        saved = load_file(f"{checkpoint}/trainer.safetensors")
        averages[metrics["step"]] = {k[len("average."):]: v for k, v in saved.items() if k.startswith("average.")}
        scored[metrics["step"]] = averages[metrics["step"]] or load_file(f"{checkpoint}/model.safetensors")

    whole = train(config, report=keep)
    live = load_file(f"{config.out_dir}/checkpoints/last/model.safetensors")
    assert set(averages[40]) == set(live)  # every trainable weight is averaged
    assert any(not torch.equal(averages[40][k], live[k]) for k in live)  # and the average is not the live weights
    if kind == "tail":  # nothing to average before step 20: the evaluations at 10 and 20 score the live weights
        assert averages[10] == {} and averages[20] == {}
    for selection, kept in whole["selected_by"].items():  # the kept weights are the ones scored then
        chosen = load_file(f"{config.out_dir}/checkpoints/best-{selection}/model.safetensors")
        assert all(torch.equal(chosen[k], scored[kept["step"]][k]) for k in chosen)

    cut = replace(config, out_dir=str(tmp_path / "cut"))

    def stop_at_20(metrics, checkpoint, last):
        if metrics["step"] == 20:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(cut, report=stop_at_20)
    resumed = train(cut, resume=True)
    again = load_file(f"{cut.out_dir}/checkpoints/last/trainer.safetensors")
    assert all(torch.equal(again[f"average.{k}"], v) for k, v in averages[40].items())
    assert [h["target_dev_f1"] for h in resumed["history"]] == [h["target_dev_f1"] for h in whole["history"]]
    assert resumed["test"]["de"]["f1"] == whole["test"]["de"]["f1"]

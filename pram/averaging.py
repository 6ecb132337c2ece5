"""Weight averaging: the model a run evaluates, keeps and saves is an average of its recent weights.

On a short schedule the weights at one evaluation swing with the last few batches; an average of the weights
over the end of training is steadier and often better (Polyak averaging; for zero-shot cross-lingual transfer,
Schmidt et al. 2023, arXiv 2305.16834). Two kinds, `TrainConfig.average`:

- `ema`: an exponential moving average, updated after every step from the first. Its decay warms up as in
  TensorFlow's ExponentialMovingAverage with num_updates: after n updates the decay is
  min(average_decay, (1 + n) / (10 + n)), so an early evaluation is not dominated by the first weights.
- `tail`: the uniform mean of the weights after every step from `average_start * max_steps` on (stochastic weight
  averaging with a constant rate, updated at every step). Evaluations before that point score the live weights.

Only the weights training changes are averaged (the frozen encoder does not move); the average is kept in fp32
beside the live weights, saved with `checkpoints/last` (`trainer.safetensors`, names `average.<weight>`, and its
update count in state.json), so a resumed run continues the same average. The prototype banks are not averaged:
they are already a moving average (Eq. 5).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from pram.config import TrainConfig

PREFIX = "average."


class WeightAverage:
    """The running average of a model's trainable weights, as `config.average` asks (`none`: nothing)."""

    def __init__(self, config: TrainConfig, model: torch.nn.Module):
        self.kind, self.decay = config.average, config.average_decay
        self.start = round(config.average_start * config.max_steps) if config.average == "tail" else 0
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.weights: dict[str, torch.Tensor] = {}
        self.count = 0

    @property
    def active(self) -> bool:
        """Whether the average exists yet (it replaces the live weights in evaluation only once it does)."""
        return self.count > 0

    def rate(self) -> float:
        """The weight of the new weights in the next update."""
        if self.count == 0:
            return 1.0
        if self.kind == "tail":
            return 1.0 / (self.count + 1)
        return 1.0 - min(self.decay, (1 + self.count) / (10 + self.count))

    @torch.no_grad()
    def update(self, model: torch.nn.Module, steps_done: int) -> None:
        """Fold in the weights after `steps_done` training steps (1 after the first step)."""
        if self.kind == "none" or steps_done <= self.start:
            return
        rate, params = self.rate(), dict(model.named_parameters())
        for name in self.names:
            live = params[name].detach().float()
            if name in self.weights:
                self.weights[name].lerp_(live, rate)
            else:
                self.weights[name] = live.clone()
        self.count += 1

    @contextmanager
    def applied(self, model: torch.nn.Module):
        """Within the block the model holds the averaged weights (when there is an average yet); after it, its own
        live weights again, bit for bit."""
        if not self.active:
            yield
            return
        params = dict(model.named_parameters())
        live = {name: params[name].detach().clone() for name in self.names}
        with torch.no_grad():
            for name in self.names:
                params[name].copy_(self.weights[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name in self.names:
                    params[name].copy_(live[name])

    def tensors(self) -> dict[str, torch.Tensor]:
        """The average as named tensors, for `checkpoints/last`."""
        return {PREFIX + name: t for name, t in self.weights.items()}

    def state(self) -> dict:
        return {"average_count": self.count}

    def restore(self, tensors: dict[str, torch.Tensor], state: dict, device: str) -> None:
        """Continue the average saved with a checkpoint (tensors() and state() of the run that wrote it)."""
        self.count = int(state.get("average_count", 0))
        self.weights = {k[len(PREFIX):]: t.to(device) for k, t in tensors.items() if k.startswith(PREFIX)}

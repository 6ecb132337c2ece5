"""Checkpoints: safetensors for every tensor, JSON for everything else, written atomically.

A checkpoint folder holds
- `model.safetensors`: the weights training changes (the frozen encoder is rebuilt from `config.json`'s encoder),
- `trainer.safetensors`: optimiser moments and prototype banks (absent in a weights-only checkpoint),
- `state.json`: step, history, early-stopping state, optimiser hyper-parameters and the run's config.
Nothing is unpickled on load, so a checkpoint from elsewhere cannot run code.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from pram.errors import UserError, at
from pram.files import os_errors_of_safetensors, umask_mode


def save_checkpoint(path: Path, model_state: dict[str, torch.Tensor], state: dict,
                    trainer_tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Write a checkpoint folder; an interrupted write leaves the previous one intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    tmp.chmod(umask_mode(0o777))  # mkdtemp makes it private; a checkpoint is read like the rest of its run
    try:
        with os_errors_of_safetensors(path):
            save_file({k: v.detach().contiguous().cpu() for k, v in model_state.items()}, tmp / "model.safetensors")
            if trainer_tensors is not None:
                save_file({k: v.detach().contiguous().cpu() for k, v in trainer_tensors.items()},
                          tmp / "trainer.safetensors")
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
        for file in tmp.iterdir():  # safetensors writes its files 0600
            file.chmod(umask_mode(0o666))
        old = path.with_name(f".{path.name}.old")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


STATE_KEYS = ("config", "encoder_path", "label_names", "step")  # what every pram checkpoint's state.json holds


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict, dict[str, torch.Tensor]]:
    """(model weights, state, trainer tensors) of a checkpoint folder. A missing, truncated or unreadable file,
    or a state.json that is not JSON or not a pram checkpoint's, is one UserError line naming the file."""
    path = Path(path)
    state = _state(path / "state.json")
    model_state = _tensors(path / "model.safetensors")
    trainer_file = path / "trainer.safetensors"
    trainer = _tensors(trainer_file) if trainer_file.exists() else {}
    return model_state, state, trainer


def read_state(path: Path) -> dict:
    """A checkpoint folder's state.json alone (no tensors), checked as load_checkpoint checks it."""
    return _state(Path(path) / "state.json")


def _state(file: Path) -> dict:
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{at(file)}: missing: not a pram checkpoint (pass a folder under <run>/checkpoints/)") \
            from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{at(file)}: cannot be read ({e}): copy the checkpoint again") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{at(file, e.lineno)}: not valid JSON ({e.msg}): the checkpoint is damaged; copy it "
                        "again or train again (`pram train --resume` continues from `last`)") from None
    missing = [key for key in STATE_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise UserError(f"{at(file)}: no {', '.join(missing)}: not the state of a pram checkpoint, or one from an "
                        "incompatible version")
    return state


def _tensors(file: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError

    try:
        return load_file(file)
    except FileNotFoundError:
        raise UserError(f"{at(file)}: missing: the checkpoint is incomplete; copy it again or train again") \
            from None
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{at(file)}: truncated or not a safetensors file ({e}): the checkpoint is damaged; copy "
                        "it again or train again") from None


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimiser's state into named tensors (for safetensors) and the JSON-able rest."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, slots in sd["state"].items():
        for key, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{key}"] = value
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for name, value in meta["scalars"].items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_last(ckpt_dir: Path, model, optimizer: torch.optim.Optimizer, banks, state: dict, run_info: dict,
              average=None) -> None:
    """`last`: everything a resumed run needs (trainable weights, optimiser moments, prototype banks, the weight
    average of pram/averaging.py where there is one, state)."""
    tensors, optim_meta = optimizer_tensors(optimizer)
    tensors.update(banks.tensors())
    extra = {}
    if average is not None:
        tensors.update(average.tensors())
        extra = average.state()
    save_checkpoint(Path(ckpt_dir) / "last", model.trainable_state_dict(),
                    {**run_info, **state, **extra, "optimizer": optim_meta}, tensors)


def restore_last(ckpt_dir: Path, model, optimizer: torch.optim.Optimizer, device: str, average=None):
    """Load `last` into model, optimizer and average; return (state, banks) to continue from."""
    from pram.objective import Banks

    weights, state, tensors = load_checkpoint(Path(ckpt_dir) / "last")
    model.load_state_dict(weights, strict=False)
    restore_optimizer(optimizer, tensors, state.pop("optimizer"))
    if average is not None:
        average.restore(tensors, state, device)
    state.pop("average_count", None)
    return state, Banks.from_tensors(tensors, device)

"""Where and in which precision the model runs."""

from __future__ import annotations

import torch
from rich.console import Console

from pram.config import TrainConfig
from pram.errors import UserError


def pick_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def autocast(config: TrainConfig, device: str):
    """bf16 autocast around forward passes with --precision bf16 (matrix products in bf16, softmax and norms in
    fp32, as torch.autocast decides); a no-op with fp32. Parameters and gradients stay fp32, so no loss scaling."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=config.precision == "bf16")


def check_precision(config: TrainConfig, device: str, console: Console) -> None:
    """bf16 needs the hardware for it: refuse a GPU without it, warn on a CPU (where it is far slower)."""
    if config.precision == "bf16" and device.startswith("cuda") and not torch.cuda.is_bf16_supported(False):
        raise UserError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bf16 arithmetic (it needs "
                        "an A100, H100, L4, A10G or newer); use --precision fp32")
    if config.precision == "bf16" and device == "cpu":
        console.print("[yellow]--precision bf16 on a CPU: without native bf16 units (AMX, AVX-512 BF16) it is "
                      "far slower than fp32 (14x on an AVX2 CPU, results/BENCHMARKS.md)[/yellow]")

"""Where and in which precision the model runs."""

from __future__ import annotations

import torch
from rich.console import Console

from pram.config import TrainConfig
from pram.errors import UserError


def pick_device(name: str) -> str:
    """`auto`: the GPU where torch sees one, else the CPU. A device that is not there is one UserError line."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise UserError(f"--device {name}: not a device torch knows ({e}); use auto, cpu or cuda[:N]") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"a build for CUDA {torch.version.cuda}"
            raise UserError(f"--device {name}: torch sees no GPU here (torch {torch.__version__} is {build}); "
                            "use --device cpu, or install a CUDA build of torch on a machine with a GPU")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s), numbered from 0")
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

"""Devices, seeding and mixed precision, in one visible place.

``resolve_device("auto")`` picks CUDA, then Apple's MPS, then the CPU. The environment variable
``TORCH_DEVICE`` overrides "auto" (the test suite uses it to run on a GPU).
"""
from __future__ import annotations

import contextlib
import os
import platform
import random

import torch
import torch.nn as nn


def resolve_device(device="auto") -> torch.device:
    """``"auto"`` -> cuda, then mps, then cpu (or ``$TORCH_DEVICE`` when set); else as given."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        device = os.environ.get("TORCH_DEVICE") or (
            "cuda" if torch.cuda.is_available()
            else "mps" if torch.backends.mps.is_available()
            else "cpu")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    """Seed Python, PyTorch (CPU and every GPU) for a repeatable run."""
    random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def seeded(seed: int):
    """Run the block with PyTorch's CPU generator seeded to ``seed``, then put the global
    generator back as it was: builders use it, so making a model never changes the random
    numbers the caller draws next."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def autocast_dtype(device) -> torch.dtype | None:
    """The mixed-precision type for ``device``: bf16 where CUDA supports it, else fp16; ``None``
    (full precision) on CPU and MPS, where autocast rarely speeds small models up."""
    device = resolve_device(device)
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device, enabled: bool = True):
    """An autocast context for ``device``, or a no-op context where mixed precision is off."""
    device = resolve_device(device)
    dtype = autocast_dtype(device)
    if not enabled or dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def synchronize(device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously); a no-op elsewhere. For timing."""
    if resolve_device(device).type == "cuda":
        torch.cuda.synchronize()


def describe(device="auto") -> str:
    """One line naming the device, for the top of every lesson."""
    device = resolve_device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
    return device.type


def prefers_channels_last(model: nn.Module, device) -> bool:
    """Whether ``train`` lays ``model`` out channels_last by default on ``device``.

    Only convolutional networks benefit. On CUDA they do (tensor cores want NHWC). On an x86 CPU,
    oneDNN's convolutions and pooling are faster in NHWC too: ``benchmarks/channels_last.py``
    measures the ratio for each of the course's conv nets. Elsewhere (MPS, ARM CPUs) the layout
    stays contiguous, the safe default. On the CPU a net with a convolution of fewer than 8 input or
    output channels stays contiguous too: training lesson 01's ResNet at widths 4 and 6 channels_last
    on one thread corrupts the heap in torch 2.14's CPU kernels (the process dies with "corrupted
    double-linked list"; width 8 and up train normally; ``tests/test_training.py`` keeps it so).
    """
    device = torch.device(device)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        return False
    if device.type == "cuda":
        return True
    if min((min(c.in_channels, c.out_channels) for c in convs if c.in_channels > 3), default=8) < 8:
        return False
    return device.type == "cpu" and platform.machine().lower() in ("x86_64", "amd64")


def cpu_supports_bf16() -> bool:
    """Whether this CPU computes bf16 natively (x86 AVX512-BF16 or AMX-BF16, read from
    /proc/cpuinfo), so that bf16 autocast on the CPU can be fast; ``False`` where unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False

"""Which torch device a run uses: one rule for picking and training.

``auto`` (or nothing) means the GPU when PyTorch sees one, else the CPU; a CUDA device asked for
on a machine without one is refused here, in one line, rather than deep inside torch.
"""

from __future__ import annotations

import torch


def resolve_device(name: str | None) -> torch.device:
    """The :class:`torch.device` for ``name`` (``auto``/None: CUDA when present, else CPU).

    Raises
    ------
    ValueError
        For a CUDA device when no CUDA GPU is available.
    """
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name} was asked for but no CUDA GPU is available")
    return device

"""Attention-gated U-Net of CryoSegNet (paper Fig. 5A).

Five encoder blocks, a bottleneck and five decoder blocks; every skip connection passes an
attention gate driven by the decoder path (Oktay et al. 2018), so clutter such as ice,
carbon edges and aggregates can be suppressed before it reaches the decoder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of the U-Net; stored inside every checkpoint."""

    base_width: int = 16
    depth: int = 5
    in_channels: int = 1

    @property
    def widths(self) -> list[int]:
        return [self.base_width * 2**i for i in range(self.depth + 1)]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> UNetConfig:
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


# The paper's network: 64 channels in the first encoder, 2048 in the bottleneck.
PRESETS: dict[str, UNetConfig] = {
    "paper": UNetConfig(base_width=64),
    "large": UNetConfig(base_width=32),
    "small": UNetConfig(base_width=16),
    "tiny": UNetConfig(base_width=8),
}


def config_from_name(name: str) -> UNetConfig:
    """The architecture a name stands for: a preset, or ``width{W}`` / ``width{W}-depth{D}``.

    The ``width`` forms (any base width, optionally a non-default depth) are what
    :func:`architecture_name` writes for a network that is not a preset.
    """
    if name in PRESETS:
        return PRESETS[name]
    if name.startswith("width"):
        width, _, depth = name[5:].partition("-depth")
        try:
            if depth:
                return UNetConfig(base_width=int(width), depth=int(depth))
            return UNetConfig(base_width=int(width))
        except ValueError:
            pass
    raise ValueError(
        f"unknown U-Net preset '{name}' (choose from {', '.join(PRESETS)}, or widthW[-depthD])"
    )


def architecture_name(config: UNetConfig) -> str:
    """The name :func:`config_from_name` turns back into ``config``: a preset's name if it is
    one, else ``width{W}`` (default depth) or ``width{W}-depth{D}``."""
    for name, preset in PRESETS.items():
        if preset == config:
            return name
    if config.in_channels != UNetConfig.in_channels:
        raise ValueError(f"no architecture name for {config} (in_channels is not 1)")
    if config.depth == UNetConfig.depth:
        return f"width{config.base_width}"
    return f"width{config.base_width}-depth{config.depth}"


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by batch norm and ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class AttentionGate(nn.Module):
    """Weights a skip connection by a per-pixel coefficient computed from the gating signal."""

    def __init__(self, gate_channels: int, skip_channels: int, inter_channels: int) -> None:
        super().__init__()
        self.w_gate = nn.Sequential(
            nn.Conv2d(gate_channels, inter_channels, 1, bias=False), nn.BatchNorm2d(inter_channels)
        )
        self.w_skip = nn.Sequential(
            nn.Conv2d(skip_channels, inter_channels, 1, bias=False), nn.BatchNorm2d(inter_channels)
        )
        self.psi = nn.Sequential(nn.Conv2d(inter_channels, 1, 1), nn.BatchNorm2d(1), nn.Sigmoid())

    def forward(self, gate: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        alpha = self.psi(F.relu(self.w_gate(gate) + self.w_skip(skip)))
        return skip * alpha


class DecoderBlock(nn.Module):
    """Upsample, gate the skip connection, concatenate, convolve."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.gate = AttentionGate(out_channels, out_channels, max(out_channels // 2, 1))
        self.conv = ConvBlock(2 * out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        return self.conv(torch.cat([self.gate(x, skip), x], dim=1))


class AttentionUNet(nn.Module):
    """Maps a (B, 1, H, W) denoised micrograph to (B, 1, H, W) particle logits.

    Any H, W works: the input is reflect-padded to a multiple of 2**depth and cropped back.
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or UNetConfig()
        widths = self.config.widths
        depth = self.config.depth
        self.encoders = nn.ModuleList(
            ConvBlock(self.config.in_channels if i == 0 else widths[i - 1], widths[i])
            for i in range(depth)
        )
        self.bottleneck = ConvBlock(widths[depth - 1], widths[depth])
        self.decoders = nn.ModuleList(
            DecoderBlock(widths[i + 1], widths[i]) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        multiple = 2**self.config.depth
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        if pad_h or pad_w:
            mode = "reflect" if min(height, width) > max(pad_h, pad_w) else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        return self.core(x)[..., :height, :width]

    def core(self, x: torch.Tensor) -> torch.Tensor:
        """The network on an input whose sides are multiples of ``2**depth``: no padding, no
        crop (what :meth:`forward` runs, and what the ONNX export holds)."""
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        for decoder, skip in zip(self.decoders, reversed(skips)):
            x = decoder(x, skip)
        return self.head(x)

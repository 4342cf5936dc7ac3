"""The paper's training loss: binary cross-entropy plus Dice loss on the particle mask.

BCE scores every pixel on its own; Dice scores the overlap of whole masks, which keeps the
sparse particle class from being drowned by background. Dice is computed over the whole
batch so crops without particles do not produce an ill-defined 0/0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft Dice between sigmoid(logits) and the 0/1 target, pooled over the batch.

    Pixels whose target is neither 0 nor 1 (2: ignored, see training/dataset.py) are left out.
    """
    prob = torch.sigmoid(logits.float())
    target = target.float()
    valid = (target <= 1).float()
    positive = (target == 1).float()
    intersection = (prob * positive).sum()
    total = (prob * valid).sum() + positive.sum()
    return 1.0 - (2.0 * intersection + smooth) / (total + smooth)


def bce_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    bce_weight: float = 1.0,
    dice_weight: float = 1.0,
) -> torch.Tensor:
    """``bce_weight * BCE + dice_weight * Dice loss`` (computed in float32 under autocast).

    BCE is averaged over the pixels whose target is 0 or 1; ignored pixels (2) add nothing.
    """
    target = target.float()
    valid = target <= 1
    per_pixel = F.binary_cross_entropy_with_logits(
        logits.float(), torch.where(valid, target, torch.zeros_like(target)), reduction="none"
    )
    bce = (per_pixel * valid).sum() / valid.sum().clamp(min=1)
    return bce_weight * bce + dice_weight * dice_loss(logits, target)


class BCEDiceLoss(nn.Module):
    """Module form of :func:`bce_dice_loss`."""

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0) -> None:
        super().__init__()
        self.bce_weight = bce_weight
        self.dice_weight = dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return bce_dice_loss(logits, target, self.bce_weight, self.dice_weight)

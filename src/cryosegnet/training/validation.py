"""Per-epoch validation: particle-level F1 of the U-Net alone, cheap enough to run every epoch.

Each particle is a peak of the band-passed probability map with non-maximum suppression at half
the labelled diameter (the built-in stage's peak finder, masks/peaks.py, told the true size),
so best F1 and AUPRC here track the picker's without its diameter estimate or Algorithm 1.
The peak scores are the built-in stage's figures of merit, so F1 is reported at the picker's
own default threshold (``DEFAULT_PEAK_THRESHOLD``): the figure ``cryosegnet pick`` would get,
not one at an arbitrary cut. Pixel Dice thresholds the probability map itself, at 0.5.
"""

from __future__ import annotations

import numpy as np
import torch

from cryosegnet.evaluation.metrics import evaluate_picks
from cryosegnet.masks.peaks import find_peaks
from cryosegnet.picking.picker import DEFAULT_PEAK_THRESHOLD
from cryosegnet.training.dataset import TrainingSample
from cryosegnet.training.losses import bce_dice_loss

# Pixel Dice counts a pixel as particle where the U-Net's probability is at least this.
DICE_PROBABILITY_THRESHOLD = 0.5


@torch.inference_mode()
def predict_probability(
    model: torch.nn.Module, image: np.ndarray, device: torch.device, amp: bool = False
) -> tuple[np.ndarray, torch.Tensor]:
    """(probability map, logits) of one uint8 image at working resolution."""
    x = torch.from_numpy(image).to(device).float().div_(255.0)[None, None]
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    with torch.autocast(device.type, dtype=dtype or torch.float16, enabled=amp):
        logits = model(x).float()
    return torch.sigmoid(logits)[0, 0].cpu().numpy(), logits


@torch.inference_mode()
def validate(
    model: torch.nn.Module,
    samples: list[TrainingSample],
    device: torch.device,
    amp: bool = False,
    threshold: float = DEFAULT_PEAK_THRESHOLD,
) -> dict:
    """Validation loss, pixel Dice (mean over micrographs) and particle F1 / best F1 / AUPRC.

    F1 is at peak score >= ``threshold`` (default: the picker's default threshold for the
    built-in stage); best F1 and AUPRC are threshold-free. Picks are matched to labels
    within half the labelled diameter, pooled over micrographs. Pixel Dice is at probability
    >= ``DICE_PROBABILITY_THRESHOLD``.
    """
    was_training = model.training
    model.eval()
    losses, dices = [], []
    picks, labels = {}, {}
    try:
        for sample in samples:
            prob, logits = predict_probability(model, sample.image, device, amp)
            target = torch.from_numpy(sample.target).to(device).float()[None, None]
            losses.append(float(bce_dice_loss(logits, target)))
            predicted = prob >= DICE_PROBABILITY_THRESHOLD
            truth = sample.target.astype(bool)
            total = predicted.sum() + truth.sum()
            dices.append(1.0 if total == 0 else float(2 * (predicted & truth).sum() / total))
            picks[sample.name] = find_peaks(prob, sample.median_diameter)
            labels[sample.name] = sample.labels()
    finally:
        model.train(was_training)
    result = evaluate_picks(picks, labels, threshold=threshold)
    pooled = result.pooled
    return {
        "val_loss": float(np.mean(losses)) if losses else float("nan"),
        "val_dice": float(np.mean(dices)) if dices else float("nan"),
        "val_precision": pooled["precision"],
        "val_recall": pooled["recall"],
        "val_f1": pooled["f1"],
        "val_threshold": float(threshold),
        "val_best_f1": pooled["best_f1"],
        "val_best_threshold": pooled["best_threshold"],
        "val_auprc": pooled["auprc"],
    }

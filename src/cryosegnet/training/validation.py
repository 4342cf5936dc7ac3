"""Per-epoch validation: particle-level F1 of the U-Net alone, cheap enough to run every epoch.

The full picker (instance masks, Algorithm 1) is too slow to run each epoch and would mix its
own tuning into model selection; instead each particle is the peak of the smoothed
probability map, with non-maximum suppression at half a diameter. The ranking this gives is
what the picker's thresholds later cut, so best F1 and AUPRC here track the picker's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from scipy.spatial import cKDTree

from cryosegnet.evaluation.metrics import evaluate_picks
from cryosegnet.training.dataset import TrainingSample
from cryosegnet.training.losses import bce_dice_loss


def find_peaks(
    probability: np.ndarray, diameter: float, min_score: float = 0.05
) -> pd.DataFrame:
    """Particle centres as local maxima of the probability map smoothed at ~1/6 diameter.

    The score is the smoothed probability at the peak (mean confidence over the particle's
    core); peaks closer than half a diameter to a higher one are suppressed.
    """
    d = float(diameter) if np.isfinite(diameter) and diameter > 0 else 16.0
    smooth = ndimage.gaussian_filter(probability.astype(np.float32), sigma=max(d / 6.0, 1.0))
    size = max(3, int(d / 2) | 1)
    peaks = (smooth == ndimage.maximum_filter(smooth, size=size)) & (smooth >= min_score)
    rows, cols = np.nonzero(peaks)
    scores = smooth[rows, cols]
    order = np.argsort(-scores, kind="stable")
    rows, cols, scores = rows[order], cols[order], scores[order]
    keep = np.ones(len(rows), bool)
    if len(rows) > 1:
        tree = cKDTree(np.column_stack([cols, rows]))
        for i, j in sorted(tree.query_pairs(r=d / 2)):  # i < j: j has the lower score
            if keep[i]:
                keep[j] = False
    return pd.DataFrame(
        {
            "x": cols[keep].astype(float),
            "y": rows[keep].astype(float),
            "score": scores[keep].astype(float),
            "diameter": d,
        }
    )


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
    threshold: float = 0.5,
) -> dict:
    """Validation loss, pixel Dice (mean over micrographs) and particle F1 / best F1 / AUPRC.

    F1 is at peak score >= ``threshold``; best F1 and AUPRC are threshold-free. Picks are
    matched to labels within half the labelled diameter, pooled over micrographs.
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
            predicted = prob >= threshold
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
        "val_best_f1": pooled["best_f1"],
        "val_best_threshold": pooled["best_threshold"],
        "val_auprc": pooled["auprc"],
    }

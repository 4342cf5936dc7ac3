"""What the comparisons with other pickers share (``compare_topaz.py``, ``compare_peers.py``).

* ``sweep``: a pick set scored against labels over every score threshold (best F1, AUPRC) and
  at one threshold, pooled and per micrograph;
* ``convention_check``: the same picks as written, with x and y swapped, and with y flipped,
  so a frame or axis mix-up between a tool and the labels shows;
* ``overlay``: labels and each tool's top picks drawn on a low-passed micrograph.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from benchlib import stem_of

CONVENTIONS = ("as written", "x<->y swapped", "y flipped")

# Overlay colour of a tool, by the start of its name (yellow for any other).
TOOL_COLOURS = {
    "Topaz": "red",
    "cryosegnet (built-in)": "deepskyblue",
    "cryosegnet (SAM)": "orange",
    "cryosegnet (built-in, diameter given)": "magenta",
}


def sweep(
    picks: dict[str, pd.DataFrame],
    labels: dict[str, pd.DataFrame],
    threshold: float | None = None,
    radius: float | None = None,
) -> dict:
    """``evaluate_picks`` pooled figures (best F1 and AUPRC over every score threshold; counts,
    precision, recall and F1 at ``threshold``, every pick when None), plus ``per_micrograph``,
    ``labels_without_picks`` and ``warnings``. ``radius``: match distance (default half the
    labels' diameter)."""
    from cryosegnet.evaluation.metrics import evaluate_picks

    result = evaluate_picks(picks, labels, radius=radius, threshold=threshold)
    pooled = dict(result.pooled)
    pooled["per_micrograph"] = [
        {
            "micrograph": m.micrograph,
            "n_picks": m.n_picks,
            "n_labels": m.n_labels,
            "f1": m.f1,
            "best_f1": m.best_f1,
            "auprc": m.auprc,
        }
        for m in result.per_micrograph
    ]
    pooled["labels_without_picks"] = result.labels_without_picks
    pooled["warnings"] = result.warnings
    return pooled


def convention_check(
    picks: dict[str, pd.DataFrame],
    labels: dict[str, pd.DataFrame],
    heights: dict[str, int],
    threshold: float | None = None,
) -> dict[str, dict[str, float]]:
    """Best F1 and AUPRC of the picks as written, with x and y swapped, and with y flipped
    (``heights``: rows per micrograph, 0 where unknown): the written convention should win
    clearly if the coordinates line up with the labels."""
    variants = {}
    for name in CONVENTIONS:
        changed = {}
        for key, table in picks.items():
            table = table.copy()
            if name == "x<->y swapped":
                table[["x", "y"]] = table[["y", "x"]].to_numpy()
            elif name == "y flipped":
                table["y"] = heights.get(key, 0) - 1 - table["y"]
            changed[key] = table
        pooled = sweep(changed, labels, threshold=threshold)
        variants[name] = {"best_f1": pooled["best_f1"], "auprc": pooled["auprc"]}
    return variants


def overlay(
    images: list[Path],
    labels_dir: Path,
    diameters: dict[str, float],
    runs: list[tuple[str, str]],
    out: Path,
    title: str,
    colours: dict[str, str] = TOOL_COLOURS,
) -> str:
    """The most-labelled of ``images`` (a window of ~16 particle diameters around its median
    label), low-pass filtered: labels (green circles) and each tool's top-N picks (N = number
    of labels), ``runs`` = (tool, picks path), coloured by ``colours``. A visual check that
    the coordinate frames line up, independent of where either tool's threshold sits."""
    import cv2
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from cryosegnet.evaluation.pairing import load_coordinate_sets
    from cryosegnet.io.micrographs import read_micrograph

    all_labels = load_coordinate_sets(str(labels_dir))
    image_path = max(images, key=lambda p: len(all_labels.get(stem_of(p), [])))
    key = stem_of(image_path)
    diameter = diameters.get(key, 50.0)
    labels = all_labels.get(key)
    data = read_micrograph(image_path).data.astype(np.float32)
    x0 = y0 = 0
    side = int(16 * diameter)
    if labels is not None and len(labels) and max(data.shape) > side:
        cx, cy = (int(v) for v in labels[["x", "y"]].median())
        x0 = int(np.clip(cx - side // 2, 0, max(0, data.shape[1] - side)))
        y0 = int(np.clip(cy - side // 2, 0, max(0, data.shape[0] - side)))
        data = data[y0 : y0 + side, x0 : x0 + side]
    step = max(1, int(math.ceil(max(data.shape) / 1200)))
    if step > 1:
        h, w = (data.shape[0] // step) * step, (data.shape[1] // step) * step
        data = data[:h, :w].reshape(h // step, step, w // step, step).mean(axis=(1, 3))
    data = cv2.GaussianBlur(data, (0, 0), max(1.0, diameter / step / 10))
    lo, hi = np.percentile(data, [1, 99])
    n_top = len(labels) if labels is not None else 100
    fig, ax = plt.subplots(figsize=(9, 9 * data.shape[0] / data.shape[1]), dpi=110)
    try:
        ax.imshow(
            data,
            cmap="gray",
            vmin=lo,
            vmax=hi,
            extent=(
                x0 - 0.5,
                x0 + data.shape[1] * step - 0.5,
                y0 + data.shape[0] * step - 0.5,
                y0 - 0.5,
            ),
        )
        if labels is not None:
            for x, y in labels[["x", "y"]].to_numpy(float):
                ax.add_patch(plt.Circle((x, y), diameter / 2, fill=False, color="lime", lw=0.8))
        for tool, path in runs:
            picks = load_coordinate_sets(path).get(key)
            if picks is None:
                continue
            picks = picks.sort_values("score", ascending=False).head(n_top)
            colour = next((c for name, c in colours.items() if tool.startswith(name)), "y")
            ax.plot(
                picks["x"],
                picks["y"],
                "+",
                color=colour,
                ms=7,
                mew=1.2,
                label=f"{tool}: top {len(picks)} picks",
            )
        ax.set_xlim(x0 - 0.5, x0 + data.shape[1] * step - 0.5)
        ax.set_ylim(y0 + data.shape[0] * step - 0.5, y0 - 0.5)
        ax.set_title(f"{title}: {key} (low-pass) - green circles: labels")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
    finally:
        plt.close(fig)
    return str(out)

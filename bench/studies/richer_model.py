"""Can a small CNN on patches, richer than a rotational average, re-rank the radial filter's picks?

    python bench/studies/richer_model.py   # writes bench/results/richer_model.{json,md}

Needs the refinement bench's apoferritin ``train`` run of the radial filter (the filter
``pick --refine --refine-model radial`` learnt from the picks ``classify --low-snr --auto``
kept, no label used): ``python bench/refine.py --parts apoferritin --reuse``.

Decided (2026-12-05): not shipped. ``radial_ceiling.py`` showed that the loop's filter equals
the same filter learnt from every label, and said a richer model would be what moves the
loop's figures. This study tries the richest one that a CPU learns in minutes from what the
loop has: a four-layer CNN on 2 x binned patches of 1.7 diameters (rotations and flips as
augmentation, the four rotations averaged when scoring), trained against random places of the
batch, scoring each of the filter's candidates; alone, and added to the filter's score
(each micrograph's CNN logits as a robust z-score, times a weight). Its positives are:

* the picks the 2D classes kept (the filter's own positives, on the real micrographs), no label;
* the filter's own picks above its threshold (self-training on ten times as many), no label;
* every label, 3-fold by micrograph (learnt on 8 micrographs, scored on the other 4): what a
  richer model could do with labels, beside the same filter learnt 3-fold in
  ``radial_ceiling.py`` (0.676 / 0.681).

Also measured: the filter refitted without the positives that the classes kept on the
phase-randomised copies (the micrographs it judges empty), as a second pass of the loop would;
and, from labels, one filter per micrograph against one per batch.

What it showed (bench/results/richer_model.md): on apoferritin ``train`` no variant beats
the loop's filter (best F1 / AUPRC over every candidate 0.677 / 0.679). The label-free CNNs
alone reach 0.590 / 0.574 (kept picks) and 0.583 / 0.552 (the filter's picks), the labelled
one 0.559 / 0.512; added to the filter's score they move best F1 by -0.005 to +0.002 and
lower AUPRC at every weight. The refit without the copies' positives gives 0.671 / 0.678. One
filter per micrograph gives 0.667 / 0.678, against one per batch 0.676 / 0.681 (both from
labels): the profile does not change enough between micrographs to pay for a tenth of the
positives. So the CNN that a CPU learns from this data sees less than the whitened filter
(as Topaz's, trained on the same labels, did on ``test``: 0.615). ``test`` was not measured:
nothing here was chosen.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

import argparse

import numpy as np
import pandas as pd
from benchlib import REPO, RESULTS, apoferritin_labels, command_line, write_results
from refine import DECOYS, apoferritin_refine_folder

LOOP = apoferritin_refine_folder("train")
BIN = 2
HALF = 28  # binned pixels: a patch of 57 binned = 114 micrograph pixels, 1.7 diameters
NEGATIVES = 8000
WEIGHTS = (0.5, 1.0, 2.0)
FOLDS = 3
DIAMETER = 68.0
KEYS = ("best_f1", "auprc", "best_f1_quarter", "auprc_quarter")


class Patches:
    """The batch's micrographs binned, robustly standardised and padded, cut into patches."""

    def __init__(self, images: dict) -> None:
        import cv2

        self.images = {}
        for stem, image in images.items():
            small = cv2.resize(
                image, (image.shape[1] // BIN, image.shape[0] // BIN), interpolation=cv2.INTER_AREA
            )
            centre = np.median(small)
            small = (small - centre) / (1.4826 * np.median(np.abs(small - centre)))
            self.images[stem] = np.pad(small, HALF + 2, mode="reflect")

    def cut(self, stem: str, xy: np.ndarray) -> np.ndarray:
        image = self.images[stem]
        out = []
        for x, y in np.asarray(xy, float).reshape(-1, 2):
            col, row = int(round(x / BIN)) + HALF + 2, int(round(y / BIN)) + HALF + 2
            out.append(image[row - HALF : row + HALF + 1, col - HALF : col + HALF + 1])
        return np.stack(out).astype(np.float32)

    def random(self, stems: list[str], count: int, rng: np.random.Generator) -> np.ndarray:
        out = []
        for _ in range(count):
            stem = stems[rng.integers(len(stems))]
            h, w = (np.array(self.images[stem].shape) - 2 * HALF - 4) * BIN
            out.append(self.cut(stem, [rng.uniform(0, w), rng.uniform(0, h)])[0])
        return np.stack(out)


def train_cnn(patches: Patches, positives: dict, stems: list[str], epochs: int):
    """A four-layer CNN, ``positives`` (stem -> xy) against random places of ``stems``."""
    import torch

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    pos = np.concatenate([patches.cut(s, xy) for s, xy in positives.items() if len(xy)])
    neg = patches.random(stems, NEGATIVES, rng)
    x = torch.tensor(np.concatenate([pos, neg]))[:, None]
    y = torch.tensor(np.r_[np.ones(len(pos)), np.zeros(len(neg))], dtype=torch.float32)
    nn = torch.nn
    net = nn.Sequential(
        *(nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2)),
        *(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        *(nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        *(nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1)),
        *(nn.Flatten(), nn.Linear(32, 1)),
    )
    optimiser = torch.optim.Adam(net.parameters(), 1e-3, weight_decay=1e-4)
    balance = torch.tensor(len(neg) / len(pos))
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            batch = order[i : i + 128]
            xb = torch.rot90(x[batch], int(torch.randint(4, (1,))), (2, 3))
            if torch.rand(1) < 0.5:
                xb = torch.flip(xb, (3,))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                net(xb)[:, 0], y[batch], pos_weight=balance
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return net.eval()


def cnn_scores(net, patches: Patches, stem: str, xy: np.ndarray) -> np.ndarray:
    """The CNN's logit at each place, its four rotations averaged."""
    import torch

    with torch.no_grad():
        cut = torch.tensor(patches.cut(stem, xy))[:, None]
        return sum(net(torch.rot90(cut, k, (2, 3)))[:, 0] for k in range(4)).numpy() / 4


def figures(tables: dict, labels: dict) -> dict:
    from cryosegnet.evaluation import evaluate_picks

    pooled = evaluate_picks(tables, {s: labels[s] for s in tables}).pooled
    return {k: round(float(pooled[k]), 3) for k in KEYS}


def rescored(candidates: dict, cnn: dict, weight: float | None) -> dict:
    """The candidates scored by the CNN alone (``None``) or the filter plus ``weight`` x its
    per-micrograph robust z-score."""
    out = {}
    for stem, table in candidates.items():
        logits = cnn[stem]
        table = table.copy()
        if weight is None:
            table["score"] = logits
        else:
            spread = 1.4826 * np.median(np.abs(logits - np.median(logits))) or 1.0
            table["score"] = table["score"] + weight * (logits - np.median(logits)) / spread
        out[stem] = table
    return out


def cnn_rows(name, candidates, cnn, labels) -> list[dict]:
    rows = [
        {"variant": f"CNN from {name}, alone", **figures(rescored(candidates, cnn, None), labels)}
    ]
    for weight in WEIGHTS:
        what = f"filter + {weight:g} x CNN from {name}"
        rows.append({"variant": what, **figures(rescored(candidates, cnn, weight), labels)})
    return rows


def rows() -> list[dict]:
    from cryosegnet.io.micrographs import read_micrograph
    from cryosegnet.training.radial_filter import RadialFilter

    paths, labels = apoferritin_labels("train")
    images = {p.stem: np.asarray(read_micrograph(p).data, np.float32) for p in paths}
    loop = RadialFilter.load(LOOP / "radial_filter.json")
    candidates = {s: loop.pick(images[s], min_score=-np.inf) for s in images}
    out = [{"variant": "the loop's filter, every candidate", **figures(candidates, labels)}]
    patches = Patches(images)
    stems = sorted(images)

    def scored_by(net, held=stems) -> dict:
        return {s: cnn_scores(net, patches, s, candidates[s][["x", "y"]]) for s in held}

    particles = pd.read_csv(LOOP / "round0" / "classes" / "particles.csv")
    particles["stem"] = [Path(m).stem for m in particles["micrograph"]]
    on_real = particles["stem"].isin(images).to_numpy(bool)
    kept = particles[particles["auto_kept"].to_numpy(bool) & on_real]
    positives = {
        s: r[["recentred_x", "recentred_y"]].to_numpy(float) for s, r in kept.groupby("stem")
    }
    name = f"the kept picks ({len(kept)}, no label)"
    out += cnn_rows(name, candidates, scored_by(train_cnn(patches, positives, stems, 45)), labels)
    own = {
        s: t.loc[t["score"] >= loop.threshold, ["x", "y"]].to_numpy() for s, t in candidates.items()
    }
    name = f"the filter's picks above its threshold ({sum(map(len, own.values()))}, no label)"
    out += cnn_rows(name, candidates, scored_by(train_cnn(patches, own, stems, 12)), labels)
    cnn = {}
    for fold in range(FOLDS):
        held = stems[fold::FOLDS]
        taught = [s for s in stems if s not in held]
        centres = {s: labels[s][["x", "y"]].to_numpy(float) for s in taught}
        cnn.update(scored_by(train_cnn(patches, centres, taught, 12), held))
    out += cnn_rows(f"labels, {FOLDS}-fold by micrograph", candidates, cnn, labels)
    out.append(refit_without_copies(loop, particles, images, labels))
    out += per_micrograph(images, labels)
    return out


def per_micrograph(images: dict, labels: dict) -> list[dict]:
    """The filter learnt from labels, one per batch (3-fold by micrograph) or one per
    micrograph (learnt on the labels of one half, scoring the other half's candidates): does
    the particle's profile change enough between micrographs (their defocus) to pay for
    learning from a tenth as many particles?"""
    from cryosegnet.training.radial_filter import RadialFilter

    centres = {s: t[["x", "y"]].to_numpy(float) for s, t in labels.items()}
    stems = sorted(images)
    batch = {}
    for fold in range(FOLDS):
        held = stems[fold::FOLDS]
        taught = [s for s in stems if s not in held]
        radial = RadialFilter.fit({s: images[s] for s in taught}, centres, DIAMETER)
        batch.update({s: radial.pick(images[s], min_score=-np.inf) for s in held})
    own = {}
    for stem in stems:
        middle = images[stem].shape[1] / 2
        halves = []
        for left in (True, False):  # learnt on the other half
            taught = centres[stem][(centres[stem][:, 0] >= middle) == left]
            radial = RadialFilter.fit({stem: images[stem]}, {stem: taught}, DIAMETER)
            picks = radial.pick(images[stem], min_score=-np.inf)
            halves.append(picks[(picks["x"] < middle) == left])
        own[stem] = pd.concat(halves).sort_values("score", ascending=False, kind="stable")
    return [
        {
            "variant": f"filter from labels, one per batch ({FOLDS}-fold by micrograph)",
            **figures(batch, labels),
        },
        {
            "variant": "filter from labels, one per micrograph "
            "(learnt on one half, scoring the other)",
            **figures(own, labels),
        },
    ]


def refit_without_copies(loop, particles: pd.DataFrame, images: dict, labels: dict) -> dict:
    """The loop's filter refitted on its kept picks (``particles``: round 0's classified picks,
    with their ``stem``) less those on micrographs it judges empty."""
    from cryosegnet.io.micrographs import read_micrograph
    from cryosegnet.training.radial_filter import RadialFilter
    from cryosegnet.training.refine_loop import RefineSettings

    batch = dict(images)
    for stem in particles["stem"].unique():
        if stem not in batch:
            batch[stem] = np.asarray(read_micrograph(DECOYS / f"{stem}.mrc").data, np.float32)
    empty = {
        s for s, image in batch.items() if loop.looks_empty(loop.tail_ratio(loop.response(image)))
    }
    kept = particles[particles["auto_kept"].to_numpy(bool) & ~particles["stem"].isin(empty)]
    positives = {
        s: r[["recentred_x", "recentred_y"]].to_numpy(float) for s, r in kept.groupby("stem")
    }
    refit = RadialFilter.fit(
        batch, positives, loop.diameter, seed=RefineSettings().seed, settings=loop.settings
    )
    candidates = {s: refit.pick(images[s], min_score=-np.inf) for s in images}
    what = f"filter refitted without the positives on the {len(empty)} micrographs it judges empty"
    return {"variant": what, **figures(candidates, labels)}


def markdown(record: dict) -> str:
    lines = [
        f"Generated by `{record['command']}`. Apoferritin `train` (12 micrographs): the loop "
        "filter's every candidate, scored by the filter, by a small CNN, or by both; best F1 "
        "and AUPRC pooled at half a diameter (34 px) and a quarter (17 px).",
        "",
        "| scored by | best F1 d/2 | AUPRC d/2 | best F1 d/4 | AUPRC d/4 |",
        "|---|---|---|---|---|",
    ]
    for row in record["rows"]:
        lines.append(
            f"| {row['variant']} | {row['best_f1']:.3f} | {row['auprc']:.3f} | "
            f"{row['best_f1_quarter']:.3f} | {row['auprc_quarter']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=str(RESULTS / "richer_model.json"))
    args = parser.parse_args()
    if not (LOOP / "radial_filter.json").is_file():
        print(f"missing {LOOP.relative_to(REPO)}: run bench/refine.py --parts apoferritin")
        return 1
    import torch

    torch.set_num_threads(2)
    record = {"command": command_line(), "rows": rows()}
    write_results(args.json, record, markdown(record))
    print(markdown(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

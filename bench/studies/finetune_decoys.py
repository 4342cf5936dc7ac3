"""Phase-randomised decoys: does fine-tuning learn "no particle" from copies with no particles?

    python bench/finetune_decoys.py [--epochs 40]
    python bench/finetune_decoys.py --table-only

A phase-randomised copy of a micrograph keeps its power spectrum (ice, CTF, noise colour and
level) and loses every particle: the Fourier amplitudes stay, the phases are replaced by those
of white noise. Such a copy is the strictest decoy a picker can be shown, and a free one.

Two runs of ``cryosegnet finetune``'s recipe (``FINETUNE_DEFAULTS``, seed 1) from the shipped
model on the 12 apoferritin ``train`` micrographs, with the same 2 held out for validation:

* ``none``: the labelled micrographs only (what ``cryosegnet finetune`` does);
* ``decoys``: plus one phase-randomised, then denoised, copy of each training micrograph as an
  empty sample (no particle: all background).

Each run's best epoch (by validation best F1) is then measured on the 2 validation micrographs
and on phase-randomised copies of them (different random phases from any training decoy):
best F1 and AUPRC pooled within half the labelled diameter, and the number of picks at
several score thresholds on the real micrographs and on their decoys. A figure of merit that
means "particle" gives many more picks on the real micrographs than on the decoys at its
default threshold. The ``test`` split and the quality set are not read.

Results: ``bench/results/finetune_decoys.json`` and ``.md``; runs under
``runs/finetune_decoys/`` (git-ignored). Two CPU fine-tuning runs: about 30 minutes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from benchlib import APOFERRITIN, REPO, RESULTS, command_line, fmt
from few_label import split
from finetune_target import best_epoch

from cryosegnet.evaluation import evaluate_picks
from cryosegnet.io.coordinates import read_coordinates
from cryosegnet.io.micrographs import read_micrograph
from cryosegnet.picking.config import PickerConfig
from cryosegnet.picking.picker import DEFAULT_PEAK_THRESHOLD, Picker
from cryosegnet.preprocessing.denoise import denoise
from cryosegnet.training.data import assemble_training_data
from cryosegnet.training.dataset import TrainingSample
from cryosegnet.training.finetune import finetune, finetune_config, load_starting_model

RUNS = REPO / "runs" / "finetune_decoys"
JSON = RESULTS / "finetune_decoys.json"
RADIUS = 34.0
SEED = 1
TRAIN_DECOY_SEED = 100
EVAL_DECOY_SEED = 200
THRESHOLDS = (DEFAULT_PEAK_THRESHOLD, 0.2, 0.4, 0.6)


def phase_randomised(image: np.ndarray, seed: int) -> np.ndarray:
    """``image`` with its Fourier amplitudes kept and its phases taken from white noise.

    The phases of a real white-noise image are Hermitian-symmetric, so the result is real; the
    mean (zero frequency) is kept.
    """
    data = image.astype(np.float64)
    spectrum = np.fft.rfft2(data - data.mean())
    noise = np.fft.rfft2(np.random.default_rng(seed).standard_normal(data.shape))
    phases = noise / np.maximum(np.abs(noise), 1e-12)
    return (np.fft.irfft2(np.abs(spectrum) * phases, s=data.shape) + data.mean()).astype(np.float32)


def decoy_sample(path: Path, settings, seed: int) -> TrainingSample:
    """A denoised phase-randomised copy of ``path``: a training sample with no particle."""
    image = denoise(phase_randomised(read_micrograph(path).data, seed), settings)
    empty = np.zeros(0)
    return TrainingSample(f"{path.stem}_decoy", image, empty, empty, empty, source="decoy")


def training_data(settings, cache: Path):
    train = split("train")
    return assemble_training_data(
        settings,
        images=[str(APOFERRITIN / "micrographs" / f"{s}.png") for s in train],
        labels=[str(APOFERRITIN / "labels" / f"{s}.csv") for s in train],
        val_fraction=finetune_config().val_fraction,
        seed=SEED,
        cache=cache,
    )


def finished(out: Path, epochs: int) -> bool:
    """Whether the run in ``out`` trained all ``epochs`` (a killed run is trained again)."""
    history = out / "history.json"
    return history.is_file() and len(json.loads(history.read_text())) >= epochs


def run_variant(variant: str, epochs: int) -> Path:
    """Fine-tune one variant (a finished run is reused); its best checkpoint."""
    out = RUNS / variant
    if finished(out, epochs):
        return out / "best.pt"
    _, settings, _, _ = load_starting_model()
    data = training_data(settings, RUNS / "cache")
    samples = list(data.train)
    if variant == "decoys":
        samples += [
            decoy_sample(APOFERRITIN / "micrographs" / f"{s.name}.png", settings, seed)
            for seed, s in enumerate(data.train, start=TRAIN_DECOY_SEED)
        ]
    config = finetune_config(seed=SEED, epochs=epochs, progress=False)
    started = time.perf_counter()
    finetune(samples, data.validation, out, config=config, metadata={"bench": variant})
    (out / "wall_s.txt").write_text(f"{time.perf_counter() - started:.0f}\n")
    return out / "best.pt"


def validation_figures(picks: dict) -> dict:
    """Best F1, AUPRC and F1 at the peak finder's default threshold of picks on apoferritin
    micrographs (by stem), pooled, one-to-one within half the labelled diameter."""
    labels = {stem: read_coordinates(APOFERRITIN / "labels" / f"{stem}.csv") for stem in picks}
    pooled = evaluate_picks(picks, labels, radius=RADIUS, threshold=DEFAULT_PEAK_THRESHOLD).pooled
    return {k: pooled[k] for k in ("best_f1", "auprc", "f1", "best_threshold", "n_labels")}


def measure(checkpoint: Path, validation: list[str]) -> dict:
    """Best F1 / AUPRC on the validation micrographs; pick counts on them and their decoys."""
    picker = Picker(checkpoint, device="cpu", config=PickerConfig(threshold=-1e9))
    real, decoys = {}, {}
    for k, stem in enumerate(validation):
        image = read_micrograph(APOFERRITIN / "micrographs" / f"{stem}.png").data
        real[stem] = picker.pick(image)
        decoys[stem] = picker.pick(phase_randomised(image, EVAL_DECOY_SEED + k))
    counts = {
        f"{t:g}": {
            "real": int(sum((p["score"] >= t).sum() for p in real.values())),
            "decoy": int(sum((p["score"] >= t).sum() for p in decoys.values())),
        }
        for t in THRESHOLDS
    }
    return validation_figures(real) | {"counts": counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=finetune_config().epochs)
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    if args.table_only:
        (RESULTS / "finetune_decoys.md").write_text(table(json.loads(JSON.read_text())))
        return
    _, settings, _, _ = load_starting_model()
    validation = [s.name for s in training_data(settings, RUNS / "cache").validation]
    rows = []
    for variant in ("none", "decoys"):
        checkpoint = run_variant(variant, args.epochs)
        best = best_epoch(checkpoint.parent)
        wall = checkpoint.parent / "wall_s.txt"
        rows.append(
            {
                "variant": variant,
                "best_epoch": best["epoch"],
                "epochs": best["epochs"],
                "train_s": float(wall.read_text()) if wall.is_file() else None,
                **measure(checkpoint, validation),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    record = {"command": command_line(args), "validation": validation, "rows": rows}
    JSON.write_text(json.dumps(record, indent=1))
    (RESULTS / "finetune_decoys.md").write_text(table(record))


def table(record: dict) -> str:
    thresholds = list(record["rows"][0]["counts"])
    lines = [
        "Validation micrographs of the apoferritin `train` split "
        f"({', '.join(record['validation'])}); best epoch of each run; picks counted on them "
        "(real) and on phase-randomised "
        f"copies of them (decoy). Command: `{record['command']}`.",
        "",
        "| training data | best F1 | AUPRC | F1 at 0.05 | "
        + " | ".join(f"picks >= {t}: real / decoy" for t in thresholds)
        + " | best epoch |",
        "|---|---|---|---|" + "---|" * len(thresholds) + "---|",
    ]
    names = {"none": "labelled only (`finetune`)", "decoys": "+ 1 phase-randomised copy each"}
    for row in record["rows"]:
        counts = " | ".join(
            f"{row['counts'][t]['real']} / {row['counts'][t]['decoy']}" for t in thresholds
        )
        lines.append(
            f"| {names[row['variant']]} | {fmt(row['best_f1'])} | {fmt(row['auprc'])} | "
            f"{fmt(row['f1'])} | {counts} | {row['best_epoch']} of {row['epochs']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

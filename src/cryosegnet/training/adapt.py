"""Adapting the U-Net to a user's own micrographs without any label (experimental).

The shipped model learnt from simulations; real micrographs have noise, ice and particles it
never saw. Every dataset carries its own answer, though: the picks the model is sure of are
real particles at the real noise, and the places it is sure are empty are real background.
Self-training uses exactly that. Pick every micrograph with the current model, keep the picks
whose probability is at least ``positive`` as particles, let the loss ignore the unsure
candidates (``unsure`` <= probability < ``positive``), call everything else background, and
fine-tune briefly on these pseudo-labels; ``rounds`` > 1 repeats with the adapted model. No
label is read, so it may run on the very micrographs it will pick, as a user would.

Measured with the shipped model on the apoferritin ``train`` split
(bench/studies/adapt_selftraining.py, BENCHMARKS.md) it does not help: the model's most
confident picks there are only about half right, and training on them teaches the errors. It
is kept as a library function, not a command, until a better pseudo-labeller makes it pay.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cryosegnet.errors import SettingsError
from cryosegnet.io.micrographs import read_micrograph
from cryosegnet.training.dataset import TrainingSample

log = logging.getLogger("cryosegnet")


@dataclass(frozen=True)
class AdaptSettings:
    """How pseudo-labels are made and how long the model trains on them.

    ``positive`` is the probability at or above which a pick counts as a particle: the
    network's own "more likely than not". ``unsure`` is the probability below which a candidate
    is background; the band between is ignored by the loss, so the model is neither taught to
    suppress particles it was unsure of nor to believe its guesses. Training follows the
    fine-tuning recipe (small learning rate, few epochs) because the pseudo-labels are few and
    noisy.
    """

    positive: float = 0.5
    unsure: float = 0.1
    rounds: int = 1
    epochs: int = 10
    steps_per_epoch: int = 25
    lr: float = 1e-4
    batch_size: int = 4
    crop: int = 256
    max_micrographs: int = 40  # enough variety; more only costs time

    def __post_init__(self) -> None:
        if not 0.0 <= self.unsure <= self.positive <= 1.0:
            raise SettingsError(
                f"adapt: need 0 <= unsure ({self.unsure}) <= positive ({self.positive}) <= 1"
            )
        for name in ("rounds", "epochs", "steps_per_epoch", "batch_size", "max_micrographs"):
            if getattr(self, name) < 1:
                raise SettingsError(f"adapt: {name} must be at least 1")
        if not self.lr > 0 or self.crop < 32:
            raise SettingsError("adapt: lr must be positive and crop at least 32 px")

    def to_dict(self) -> dict:
        return asdict(self)


def pseudo_labelled_samples(
    picker, paths: Sequence[str | os.PathLike], settings: AdaptSettings
) -> tuple[list[TrainingSample], dict]:
    """One training sample per micrograph from ``picker``'s own picks (see module docstring).

    ``picker`` must keep every candidate (threshold at or below ``settings.unsure``). Returns
    the samples and counts (micrographs, positives, unsure) for the log and the model record.
    """
    if picker.threshold > settings.unsure:
        raise ValueError("the picker must keep candidates down to settings.unsure")
    samples: list[TrainingSample] = []
    counts = {"micrographs": 0, "positive": 0, "unsure": 0}
    for path in paths:
        micrograph = read_micrograph(path)
        image = micrograph.data
        denoised = picker.preprocess(image)
        probability = picker.probability_maps([denoised])[0]
        result = picker.instances(probability, image.shape, denoised)
        picks = result.picks
        scale = denoised.shape[1] / image.shape[1]  # working px per micrograph px
        score = picks["score"].to_numpy(float)
        sure = score >= settings.positive
        unsure = (score >= settings.unsure) & ~sure
        working = picks[["x", "y", "diameter"]].to_numpy(float) * scale
        samples.append(
            TrainingSample(
                name=Path(path).stem,
                image=denoised,
                x=working[sure, 0],
                y=working[sure, 1],
                diameter=working[sure, 2],
                source="pseudo",
                scale=scale,
                pixel_size=getattr(micrograph, "pixel_size", None),
                unsure_x=working[unsure, 0],
                unsure_y=working[unsure, 1],
                unsure_diameter=working[unsure, 2],
            )
        )
        counts["micrographs"] += 1
        counts["positive"] += int(sure.sum())
        counts["unsure"] += int(unsure.sum())
    return samples, counts


def _probability_picker(model: str | os.PathLike | None, device: str, diameter: float | None):
    """The peak stage scoring by the network's probability (the pseudo-labels' thresholds are
    probabilities), keeping every candidate."""
    from cryosegnet.masks.peaks import PeakMaskGenerator, PeakSettings
    from cryosegnet.model.checkpoint import default_model_path, load_model
    from cryosegnet.model.device import resolve_device
    from cryosegnet.picking.config import PickerConfig
    from cryosegnet.picking.picker import Picker

    device_ = resolve_device(device)
    unet, denoise, checkpoint = load_model(model or default_model_path(), device_)
    return Picker.from_parts(
        unet,
        denoise,
        PeakMaskGenerator(PeakSettings(score="probability")),
        PickerConfig(threshold=-1.0, diameter=diameter),
        device=str(device_),
        checkpoint=checkpoint,
    )


def adapt(
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    model: str | os.PathLike | None = None,
    diameter: float | None = None,
    settings: AdaptSettings | None = None,
    device: str = "auto",
    seed: int = 0,
    log_fn: Callable[[str], None] | None = None,
) -> Path:
    """Self-train ``model`` (default: the shipped one) on ``paths``; returns the adapted
    checkpoint (``out_dir/adapted.pt``).

    Parameters
    ----------
    paths : sequence of paths
        The micrographs to adapt to (at most ``settings.max_micrographs``, evenly spread, are
        used).
    out_dir : path
        Run folder: ``round1/``, ``round2/``... with each round's checkpoints and history, and
        ``adapted.pt``, the last round's model.
    model : path or None
        Starting checkpoint.
    diameter : float or None
        Particle diameter in micrograph pixels for the pseudo-labelling picks (None: the
        picker's estimate per micrograph).
    settings : AdaptSettings or None
        Thresholds and training length.
    device, seed
        Where it trains, and the seed of the crops.
    log_fn : callable or None
        Receives one line per step.

    Returns
    -------
    Path
        The adapted checkpoint (``cryosegnet pick --model`` takes it).

    Raises
    ------
    SettingsError
        When no micrograph gives a single confident pick to learn from.
    """
    from cryosegnet.model.checkpoint import export_model
    from cryosegnet.training.finetune import finetune, round_config

    settings = settings or AdaptSettings()
    say = log_fn or log.info
    paths = list(paths)
    if len(paths) > settings.max_micrographs:
        keep = np.linspace(0, len(paths) - 1, settings.max_micrographs).round().astype(int)
        paths = [paths[i] for i in sorted(set(keep))]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    current: str | os.PathLike | None = model
    for round_ in range(1, settings.rounds + 1):
        picker = _probability_picker(current, device, diameter)
        samples, counts = pseudo_labelled_samples(picker, paths, settings)
        say(
            f"adapt round {round_}: {counts['positive']} confident picks and "
            f"{counts['unsure']} unsure ones on {counts['micrographs']} micrograph(s)"
        )
        if counts["positive"] == 0:
            raise SettingsError(
                f"adapt: no pick reaches probability {settings.positive:g} on these "
                "micrographs, so there is nothing to learn from (lower --positive, or give "
                "--diameter)"
            )
        config = round_config(settings, seed + round_, device, progress=False)
        run = out / f"round{round_}"
        finetune(
            samples,
            [],
            run,
            checkpoint=current,
            config=config,
            metadata={"adapt": {"round": round_, **counts, "settings": settings.to_dict()}},
            log_fn=say,
        )
        current = run / "last.pt"
    adapted = out / "adapted.pt"
    export_model(
        out / f"round{settings.rounds}" / "last.pt",
        adapted,
        note=f"adapted to {len(paths)} micrograph(s) without labels",
    )
    return adapted

"""Self-training without labels (training/adapt.py) and pixels the loss ignores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryosegnet.errors import SettingsError
from cryosegnet.masks.peaks import PeakMaskGenerator, PeakSettings
from cryosegnet.model.checkpoint import load_model
from cryosegnet.picking.config import PickerConfig
from cryosegnet.picking.picker import Picker
from cryosegnet.training.adapt import AdaptSettings, adapt, pseudo_labelled_samples
from cryosegnet.training.augment import AugmentSettings, random_crop
from cryosegnet.training.dataset import IGNORE, TrainingSample
from cryosegnet.training.losses import bce_dice_loss


class DarkIsParticle(torch.nn.Module):
    """Calls dark pixels particles, with a probability that grows with the darkness."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (0.42 - x) * 60.0


def test_ignored_pixels_do_not_change_the_loss():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 32, 32)
    target = (torch.rand(2, 1, 32, 32) > 0.8).float()
    target[:, :, :8, :8] = IGNORE
    changed = logits.clone()
    changed[:, :, :8, :8] = 50.0  # wildly wrong, but where nothing is known
    assert bce_dice_loss(logits, target) == pytest.approx(float(bce_dice_loss(changed, target)))
    plain = target.clone()
    plain[plain == IGNORE] = 0
    assert float(bce_dice_loss(changed, plain)) > float(bce_dice_loss(changed, target))


def test_unsure_disks_are_ignored_in_the_target_and_survive_cropping():
    image = np.full((128, 128), 128, np.uint8)
    sample = TrainingSample(
        name="m",
        image=image,
        x=np.array([30.0]),
        y=np.array([30.0]),
        diameter=np.array([16.0]),
        unsure_x=np.array([90.0]),
        unsure_y=np.array([90.0]),
        unsure_diameter=np.array([16.0]),
    )
    target = sample.target
    assert target[30, 30] == 1 and target[90, 90] == IGNORE and target[60, 60] == 0
    rng = np.random.default_rng(0)
    zoomed = AugmentSettings(scale=(0.5, 0.5), flips=False, contrast=(1, 1), gamma=(1, 1))
    _, crop = random_crop(image, target, 128, rng, zoomed)
    assert set(np.unique(crop)) <= {0.0, 1.0, float(IGNORE)} and (crop == IGNORE).any()


def test_pseudo_labels_split_picks_by_the_networks_probability(tiny_model, blob_image, tmp_path):
    from PIL import Image

    path = tmp_path / "blobs.png"
    scaled = (blob_image - blob_image.min()) / np.ptp(blob_image)
    Image.fromarray((scaled * 255).astype(np.uint8)).save(path)
    _, denoise, checkpoint = load_model(tiny_model, torch.device("cpu"))
    by_probability = PeakMaskGenerator(PeakSettings(score="probability"))
    picker = Picker.from_parts(
        DarkIsParticle(),
        denoise,
        by_probability,
        # blob_image's blobs are black, as dark as ice balls: no bad-region mask here.
        PickerConfig(threshold=-1.0, mask_bad_regions=False),
        checkpoint=checkpoint,
    )
    settings = AdaptSettings(positive=0.9, unsure=0.2)
    samples, counts = pseudo_labelled_samples(picker, [path], settings)
    (sample,) = samples
    assert counts["positive"] == len(sample.x) >= 4  # the four dark blobs
    assert counts["unsure"] == len(sample.unsure_x)
    assert (
        sample.source == "pseudo"
        and sample.image.shape == picker.preprocess(np.asarray(Image.open(path), np.float32)).shape
    )
    with pytest.raises(ValueError, match="keep candidates"):
        strict = Picker.from_parts(
            DarkIsParticle(), denoise, "peaks", PickerConfig(threshold=0.5), checkpoint=checkpoint
        )
        pseudo_labelled_samples(strict, [path], settings)


def test_adapt_writes_a_model_the_picker_loads(tmp_path, tiny_model):
    from cryosegnet.simulation import SimulationConfig, write_dataset

    write_dataset(tmp_path / "mics", SimulationConfig(size=128, difficulty="easy"), 2, seed=3)
    mics = sorted(str(p) for p in (tmp_path / "mics").glob("*.mrc"))
    assert mics
    settings = AdaptSettings(positive=0.0, unsure=0.0, epochs=1, steps_per_epoch=1)
    adapted = adapt(
        mics, tmp_path / "run", model=tiny_model, diameter=12, settings=settings, device="cpu"
    )
    assert adapted == tmp_path / "run" / "adapted.pt" and adapted.is_file()
    picker = Picker(model=adapted, device="cpu")
    assert picker.model_diameter == pytest.approx(12.0)  # the size it adapted to
    assert picker.checkpoint["metadata"]["adapt"]["round"] == 1


def test_adapt_settings_are_checked():
    with pytest.raises(SettingsError, match="unsure"):
        AdaptSettings(positive=0.2, unsure=0.5)
    with pytest.raises(SettingsError, match="epochs"):
        AdaptSettings(epochs=0)

"""Re-centring: a pick on a hollow particle's shell moves to its centre, a centred pick on a
filled particle stays, and with the step off the picker's picks are the stage's own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cryosegnet.cli.main import build_parser
from cryosegnet.model.checkpoint import save_checkpoint
from cryosegnet.model.unet import AttentionUNet, UNetConfig
from cryosegnet.picking.picker import Picker, drop_border_picks
from cryosegnet.picking.results import picker_options
from cryosegnet.postprocessing.algorithm1 import postprocess
from cryosegnet.postprocessing.centring import (
    CentringSettings,
    centre_picks,
    radial_asymmetry,
)
from cryosegnet.preprocessing.denoise import DenoiseSettings
from cryosegnet.simulation import SimulationConfig, simulate_micrograph

DIAMETER = 40.0  # px
SIZE = 256


def particle_field(inner_fraction: float, seed: int = 0) -> tuple[np.ndarray, list[tuple]]:
    """Light ice with weak noise and four dark particles of ``DIAMETER``: rings whose light
    interior spans ``inner_fraction`` of the diameter (0: filled disks). Returns the image and
    the particles' centres (x, y)."""
    rng = np.random.default_rng(seed)
    image = 200.0 + 4.0 * rng.standard_normal((SIZE, SIZE))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    centres = [(64.0, 64.0), (180.0, 70.0), (70.0, 185.0), (185.0, 180.0)]
    for cx, cy in centres:
        radius = np.hypot(xx - cx, yy - cy)
        shell = (radius <= DIAMETER / 2) & (radius >= inner_fraction * DIAMETER / 2)
        image[shell] -= 60.0
    return image.astype(np.float32), centres


def picks_at(points: list[tuple]) -> pd.DataFrame:
    x, y = np.array(points, dtype=float).T
    score = np.linspace(2.0, 1.0, len(x))
    return pd.DataFrame({"x": x, "y": y, "score": score, "diameter": DIAMETER})


def errors(picks: pd.DataFrame, centres: list[tuple]) -> np.ndarray:
    """Distance from each centre to the nearest pick."""
    xy = picks[["x", "y"]].to_numpy(float)
    return np.array([np.hypot(*(xy - c).T).min() for c in centres])


def test_a_pick_on_a_hollow_particles_shell_moves_to_its_centre():
    image, centres = particle_field(inner_fraction=0.7)
    # on the shell, a third of a diameter from the centre, in four directions
    angles = np.deg2rad([0.0, 100.0, 200.0, 300.0])
    offset = DIAMETER / 3
    on_shell = [
        (cx + offset * np.cos(a), cy + offset * np.sin(a))
        for (cx, cy), a in zip(centres, angles, strict=True)
    ]
    moved = centre_picks(picks_at(on_shell), image, DIAMETER, image.shape)
    assert len(moved) == 4
    assert errors(moved, centres).max() <= 2.0
    assert list(moved["score"]) == list(picks_at(on_shell)["score"])  # scores are kept


def test_two_picks_on_one_shell_meet_at_its_centre_and_merge():
    image, centres = particle_field(inner_fraction=0.7)
    (cx, cy), offset = centres[0], DIAMETER / 3
    moved = centre_picks(
        picks_at([(cx - offset, cy), (cx + offset, cy)]), image, DIAMETER, image.shape
    )
    assert len(moved) == 1
    assert moved["score"].iloc[0] == 2.0  # the higher score stays
    assert errors(moved, [(cx, cy)])[0] <= 2.0


def test_a_centred_pick_on_a_filled_particle_stays_put():
    image, centres = particle_field(inner_fraction=0.0)
    moved = centre_picks(picks_at(centres), image, DIAMETER, image.shape)
    assert len(moved) == 4
    # the disk (1.1 diameters) holds the particle anywhere within 0.05 diameter of its centre
    assert errors(moved, centres).max() <= 0.06 * DIAMETER


def small_cores_with_neighbours(seed: int = 0) -> tuple[np.ndarray, list[tuple]]:
    """Filled particles whose dark core spans 0.55 of ``DIAMETER`` (as the simulator's
    globular particles do against their stated size), each with a neighbour 0.9 of a diameter
    to its left, inside the surround the disk contrast compares with."""
    rng = np.random.default_rng(seed)
    image = 200.0 + 4.0 * rng.standard_normal((SIZE, SIZE))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    centres = [(90.0, 64.0), (200.0, 70.0), (95.0, 185.0), (205.0, 180.0)]
    for cx, cy in centres:
        for x in (cx, cx - 0.9 * DIAMETER):
            image[np.hypot(xx - x, yy - cy) <= 0.55 * DIAMETER / 2] -= 60.0
    return image.astype(np.float32), centres


def test_a_centred_pick_on_a_core_smaller_than_the_disk_stays_put():
    image, centres = small_cores_with_neighbours()
    # Unchecked, the disk contrast is flat over the small core and the neighbour in the
    # surround pushes its maximum away: the pick drifts off the centre.
    unchecked = CentringSettings(symmetric_moves_only=False)
    drifted = centre_picks(picks_at(centres), image, DIAMETER, image.shape, unchecked)
    assert errors(drifted, centres).min() > 0.1 * DIAMETER
    # Seen from the drifted place the core is lopsided, so the move is refused.
    kept = centre_picks(picks_at(centres), image, DIAMETER, image.shape)
    assert errors(kept, centres).max() <= 1.0


def test_radial_asymmetry_is_least_at_a_particles_centre():
    image, centres = particle_field(inner_fraction=0.7)
    cx, cy = centres[0]
    offsets = np.array([0.0, 0.1, 0.2, 0.3]) * DIAMETER
    asymmetry = radial_asymmetry(image, cx + offsets, np.full(4, cy), 0.55 * DIAMETER)
    assert asymmetry.shape == (4,)
    assert np.all(np.diff(asymmetry) > 0)


def test_picks_move_in_the_micrographs_pixels_when_the_working_image_is_smaller():
    image, centres = particle_field(inner_fraction=0.7)
    import cv2

    half = cv2.resize(image, (SIZE // 2, SIZE // 2), interpolation=cv2.INTER_AREA)
    cx, cy = centres[1]
    moved = centre_picks(picks_at([(cx + DIAMETER / 3, cy)]), half, DIAMETER, image.shape)
    assert errors(moved, [(cx, cy)])[0] <= 3.0


def test_settings_refuse_a_surround_inside_the_disk():
    with pytest.raises(ValueError, match="surround_fraction"):
        CentringSettings(disk_fraction=0.6, surround_fraction=0.5)
    with pytest.raises(ValueError, match="search_fraction"):
        CentringSettings(search_fraction=0.0)


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    """A very small U-Net (the LoG stage used below does not run it)."""
    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    model = AttentionUNet(UNetConfig(base_width=4, depth=5))
    save_checkpoint(path, model, DenoiseSettings(working_size=512), metadata={"purpose": "test"})
    return path


def test_with_centring_off_the_picks_are_the_stages_own(tiny_model):
    sim = simulate_micrograph(
        SimulationConfig(size=512, difficulty="easy", diameter_px=20.0, density="medium"), rng=2
    )
    options = dict(model=tiny_model, device="cpu", stage="log", diameter=20.0)
    off = Picker(**options, mask_bad_regions=False)
    result = off.pick_result(sim.image)
    # the same steps by hand, without re-centring
    denoised = off.preprocess(sim.image)
    masks = off.mask_generator.generate(denoised, off.postprocess_settings.diameter_override)
    by_hand = postprocess(masks, denoised.shape, sim.image.shape, off.postprocess_settings)
    expected = drop_border_picks(by_hand.picks, sim.image.shape, off.border_fraction)
    pd.testing.assert_frame_equal(result.picks, expected)
    assert "after_centring" not in result.counts
    on = Picker(**options, mask_bad_regions=False, centre_picks=True).pick_result(sim.image)
    assert "after_centring" in on.counts
    assert not on.picks[["x", "y"]].equals(result.picks[["x", "y"]])


def test_pick_option_centre_picks_and_its_record():
    parser = build_parser()
    assert parser.parse_args(["pick", "m.mrc", "-o", "out"]).centre_picks is False
    assert parser.parse_args(["pick", "m.mrc", "-o", "out", "--centre-picks"]).centre_picks

    class Recorded:
        config = type("Config", (), {"centre_picks": True})()

    assert picker_options(Recorded())["settings"]["centre_picks"] is True
    Recorded.config.centre_picks = False
    assert "centre_picks" not in picker_options(Recorded())["settings"]

"""The empty-micrograph test: dark blobs against the micrograph's own bright-blob null."""

from __future__ import annotations

import numpy as np
import pytest

from cryosegnet.cli.main import main
from cryosegnet.io.coordinates import read_coordinates
from cryosegnet.io.layout import coordinate_path
from cryosegnet.picking.picker import Picker
from cryosegnet.postprocessing.empty_micrographs import (
    EmptySettings,
    looks_empty,
    particle_evidence,
    response_asymmetry,
)
from cryosegnet.simulation import SimulatedMicrograph, SimulationConfig, simulate_micrograph

DISK_DIAMETER = 12


def _noise(seed: int, shape=(384, 384)) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _with_dark_disks(image: np.ndarray, contrast: float, spacing: int = 36) -> np.ndarray:
    out = image.copy()
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    r2 = (DISK_DIAMETER / 2) ** 2
    for cy in range(spacing // 2, image.shape[0], spacing):
        for cx in range(spacing // 2, image.shape[1], spacing):
            out[(yy - cy) ** 2 + (xx - cx) ** 2 < r2] -= contrast
    return out


@pytest.mark.parametrize("seed", range(4))
def test_noise_alone_shows_no_excess_of_dark_blobs(seed):
    noise = _noise(seed)
    evidence = particle_evidence(noise, DISK_DIAMETER)
    assert looks_empty(evidence)
    # The test is symmetric: the negated noise is as empty.
    assert looks_empty(particle_evidence(-noise, DISK_DIAMETER))


def test_dark_particles_show_as_evidence_and_bright_ones_do_not():
    noise = _noise(7)
    particles = _with_dark_disks(noise, contrast=1.5)
    assert particle_evidence(particles, DISK_DIAMETER) > EmptySettings().min_evidence
    # The same disks made bright are not particles: they raise the null, not the evidence.
    assert looks_empty(particle_evidence(2 * noise - particles, DISK_DIAMETER))


def test_evidence_grows_with_particle_contrast():
    noise = _noise(11)
    weak, strong = (
        particle_evidence(_with_dark_disks(noise, c), DISK_DIAMETER) for c in (0.5, 2.0)
    )
    assert strong > weak


def test_a_uniform_offset_or_gain_changes_nothing():
    image = _with_dark_disks(_noise(3), contrast=1.0)
    evidence = particle_evidence(image, DISK_DIAMETER)
    assert particle_evidence(3.0 * image + 100.0, DISK_DIAMETER) == pytest.approx(evidence)


def test_an_image_too_small_for_the_scale_has_no_evidence():
    assert particle_evidence(_noise(0, (32, 32)), 40) == 0.0


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"scale_fractions": ()}, "scale_fractions"),
        ({"levels": (0.0,)}, "levels"),
        ({"min_evidence": float("nan")}, "min_evidence"),
    ],
)
def test_settings_are_validated(changes, message):
    with pytest.raises(ValueError, match=message):
        EmptySettings(**changes)


def _simulated(density, seed: int, **settings) -> SimulatedMicrograph:
    config = SimulationConfig(size=1024, difficulty="easy", density=density, **settings)
    return simulate_micrograph(config, rng=seed)


def test_picker_keeps_no_pick_on_a_simulated_empty_micrograph():
    image = _simulated(0.0, seed=5).image
    result = Picker(device="cpu", skip_empty=True).pick_result(image)
    assert result.empty and result.evidence is not None
    assert result.picks.empty
    assert result.counts["after_empty"] == 0
    # Without the option the same micrograph gets picks: every stage finds noise blobs (here
    # on the field's carbon, so the bad-region mask would drop them too: it is off).
    assert len(Picker(device="cpu", mask_bad_regions=False).pick_result(image).picks) > 0


def test_picker_keeps_the_picks_of_a_micrograph_with_particles():
    # A crowded field of clearly visible particles, picked at their size.
    sim = _simulated("dense", seed=3, snr=0.3)
    diameter = float(sim.particles["diameter"].median())
    plain = Picker(device="cpu", diameter=diameter).pick_result(sim.image)
    gated = Picker(device="cpu", diameter=diameter, skip_empty=True).pick_result(sim.image)
    assert not gated.empty and gated.evidence > EmptySettings().min_evidence
    assert gated.picks.equals(plain.picks)
    assert plain.evidence is None  # the test runs only when asked for


def test_cli_skip_empty_writes_an_empty_star_and_says_so(tmp_path, capsys):
    import mrcfile

    path = tmp_path / "empty_hole.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(_simulated(0.0, seed=5).image.astype(np.float32))
    out = tmp_path / "picks"
    code = main(["pick", str(path), "-o", str(out), "--device", "cpu", "--skip-empty"])
    assert code == 0  # an empty micrograph is a finding, not a failure
    err = capsys.readouterr().err
    assert "judged empty" in err and "no picks: 1 micrograph" in err
    assert len(read_coordinates(coordinate_path(out, path))) == 0
    from cryosegnet.io.coordinates import star_header

    assert star_header(coordinate_path(out, path))[1]["judged_empty"] is True  # the report says


@pytest.mark.parametrize("seed", range(3))
def test_a_symmetric_response_has_a_tail_ratio_near_one(seed):
    # Smoothed noise: pixels are correlated, as a filter's response is.
    from scipy.ndimage import gaussian_filter

    response = gaussian_filter(_noise(seed, (512, 512)), 2.0)
    assert 0.6 < response_asymmetry(response) < 1.6


def test_particles_the_filter_matches_lift_only_the_upper_tail():
    from scipy.ndimage import gaussian_filter

    noise = _noise(7, (512, 512))
    particles = -_with_dark_disks(np.zeros_like(noise), 1.0)  # the filter's response: high
    response = gaussian_filter(noise + 2.0 * particles, 2.0)
    assert response_asymmetry(response) > 3
    assert response_asymmetry(-response) < 1 / 3


def test_the_tail_ratio_ignores_the_response_units():
    response = _noise(3, (256, 256)) + _with_dark_disks(np.zeros((256, 256), np.float32), -4.0)
    assert response_asymmetry(response) == pytest.approx(response_asymmetry(5 * response + 2))


@pytest.mark.parametrize("bad", [np.zeros(10), np.zeros((2, 3, 4))])
def test_the_tail_ratio_refuses_a_response_that_is_not_2d(bad):
    with pytest.raises(ValueError, match="2-D"):
        response_asymmetry(bad)


def test_the_tail_ratio_refuses_a_level_that_is_not_positive():
    with pytest.raises(ValueError, match="level"):
        response_asymmetry(_noise(0), level=0.0)

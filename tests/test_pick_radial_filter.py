"""``cryosegnet pick --radial-filter FILE``: a saved radial filter re-picks micrographs without the
loop, in ``pick``'s layout, on the particles; a bad file or an option that cannot apply is one
line of error."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import mrcfile
import numpy as np
import pandas
import pytest
import starfile
from radial_helpers import round_particles

from cryosegnet.cli.main import main
from cryosegnet.io.coordinates import read_coordinates
from cryosegnet.io.layout import COMBINED_STAR, INDEX_STAR, coordinate_path
from cryosegnet.picking.radial_picker import RadialFilterPicker
from cryosegnet.simulation import simulate_micrograph
from cryosegnet.training.radial_filter import RadialFilter

DIAMETER = 24.0


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """A filter learnt from the true centres of two simulated micrographs, saved; two other
    micrographs of the same kind on disk (the new data collection) with their centres."""
    root = tmp_path_factory.mktemp("radial")
    config = round_particles(DIAMETER)
    taught = {f"taught{i}": simulate_micrograph(config, 40 + i) for i in range(2)}
    radial = RadialFilter.fit(
        {name: sim.image for name, sim in taught.items()},
        {name: sim.picks[["x", "y"]].to_numpy(float) for name, sim in taught.items()},
        DIAMETER,
    )
    (root / "refine").mkdir()
    path = radial.save(root / "refine" / "radial_filter.json")
    mics = root / "mics"
    mics.mkdir()
    centres = {}
    for i in (1, 2):
        sim = simulate_micrograph(config, 44 + i)
        with mrcfile.new(mics / f"new{i}.mrc") as mrc:
            mrc.set_data(sim.image.astype(np.float32))
        centres[f"new{i}"] = sim.picks[["x", "y"]].to_numpy(float)
    return path, mics, centres


def _near(picks: np.ndarray, centres: np.ndarray, radius: float) -> np.ndarray:
    distance = np.hypot(*(picks[:, None, :] - centres[None, :, :]).transpose(2, 0, 1))
    return distance.min(axis=1) <= radius


def test_a_saved_filter_picks_the_particles_of_new_micrographs_in_picks_layout(session, tmp_path):
    path, mics, centres = session
    out = tmp_path / "picks"
    assert main(["pick", str(mics), "-o", str(out), "--radial-filter", str(path)]) == 0
    radial = RadialFilter.load(path)
    assert (out / INDEX_STAR).is_file() and (out / COMBINED_STAR).is_file()
    combined = starfile.read(out / COMBINED_STAR)
    assert {Path(str(n)).stem for n in combined["rlnMicrographName"]} == set(centres)
    for stem, truth in centres.items():
        star = next(out.rglob(f"{stem}_autopick.star"))
        table = starfile.read(star).sort_values("rlnAutopickFigureOfMerit", ascending=False)
        xy = table[["rlnCoordinateX", "rlnCoordinateY"]].to_numpy(float)
        assert (table["rlnAutopickFigureOfMerit"] >= radial.threshold).all()
        # its threshold is lenient (nine in ten of its positives pass it): the particles are
        # found, and its best picks, as many as there are particles, are mostly on them
        assert _near(truth, xy, DIAMETER / 2).mean() > 0.8
        assert _near(xy[: len(truth)], truth, DIAMETER / 2).mean() > 0.7


def test_the_cli_picks_as_the_refinement_loop_re_picks_with_the_filter(session, tmp_path):
    """The loop's re-pick and ``--radial-filter`` are one code path: same picks, and with
    ``--keep-bad-regions`` exactly the filter's own."""
    path, mics, _ = session
    radial = RadialFilter.load(path)
    image = mrcfile.read(mics / "new1.mrc")
    masked = RadialFilterPicker.load(path).pick(image).picks
    own = radial.pick(image)
    out = tmp_path / "kept"
    args = ["pick", str(mics / "new1.mrc"), "-o", str(out), "--radial-filter", str(path)]
    assert main([*args, "--keep-bad-regions"]) == 0
    kept = starfile.read(next(out.rglob("new1_autopick.star")))
    assert np.allclose(kept["rlnCoordinateX"], own["x"]) and len(kept) == len(own)
    assert set(zip(masked["x"], masked["y"], strict=True)) <= set(
        zip(own["x"], own["y"], strict=True)
    )


def test_a_threshold_given_is_the_filters_score_cut(session, tmp_path):
    path, mics, _ = session
    out = tmp_path / "strict"
    args = ["pick", str(mics / "new1.mrc"), "-o", str(out), "--radial-filter", str(path)]
    radial = RadialFilter.load(path)
    image = mrcfile.read(mics / "new1.mrc")
    strict = float(radial.pick(image)["score"].median())  # half its own picks pass
    assert main([*args, "--threshold", f"{strict!r}", "--keep-bad-regions"]) == 0
    table = starfile.read(next(out.rglob("new1_autopick.star")))
    expected = radial.pick(image, min_score=strict)
    assert 0 < len(table) == len(expected) < len(radial.pick(image))
    assert (table["rlnAutopickFigureOfMerit"] >= strict - 1e-4).all()


@pytest.mark.parametrize(
    "content", ['{"kind": "something else"}', "{", '{"kind": "cryosegnet radial filter"}']
)
def test_a_bad_filter_file_is_one_line_naming_it(session, tmp_path, capsys, content):
    _, mics, _ = session
    bad = tmp_path / "bad_filter.json"
    bad.write_text(content)
    code = main(["pick", str(mics), "-o", str(tmp_path / "out"), "--radial-filter", str(bad)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert err[-1].startswith("error: ") and "bad_filter.json" in err[-1]
    assert "Traceback" not in "\n".join(err)
    assert not (tmp_path / "out").exists()  # nothing written


def test_a_missing_filter_file_is_one_line_naming_it(session, tmp_path, capsys):
    _, mics, _ = session
    missing = tmp_path / "nowhere.json"
    code = main(["pick", str(mics), "-o", str(tmp_path / "out"), "--radial-filter", str(missing)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and "nowhere.json" in err[-1]


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--model", "other.pt"], "--model"),
        (["--stage", "peaks"], "--stage"),
        (["--centre-picks"], "--centre-picks"),
        (["--refine", "refine"], "--refine"),
        (["--diameter", "120A"], "in pixels"),
        (["--diameter-angstrom", "120"], "--diameter-angstrom"),
        (["--diameter", "40"], "learnt for 24 px"),
    ],
)
def test_options_that_cannot_apply_with_a_filter_are_refused(
    session, tmp_path, capsys, extra, says
):
    path, mics, _ = session
    args = ["pick", str(mics), "-o", str(tmp_path / "out"), "--radial-filter", str(path)]
    assert main([*args, *extra]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert says in err[-1]
    assert not (tmp_path / "out").exists()


def test_the_filters_own_diameter_may_be_given(session, tmp_path):
    path, mics, _ = session
    out = tmp_path / "told"
    args = ["pick", str(mics / "new2.mrc"), "-o", str(out), "--radial-filter", str(path)]
    assert main([*args, "--diameter", f"{DIAMETER:g}"]) == 0
    assert next(out.rglob("new2_autopick.star")).is_file()


def test_a_rerun_with_another_filter_picks_again(session, tmp_path):
    """The filter file is recorded with the picks (as a model is): picks made with one filter
    are not taken as done for another."""
    path, mics, _ = session
    out = tmp_path / "rerun"
    args = ["pick", str(mics / "new1.mrc"), "-o", str(out)]
    assert main([*args, "--radial-filter", str(path)]) == 0
    first = len(starfile.read(next(out.rglob("new1_autopick.star"))))
    radial = RadialFilter.load(path)
    stricter = dataclasses.replace(radial, threshold=radial.threshold + 1.0)
    assert main([*args, "--radial-filter", str(stricter.save(tmp_path / "stricter.json"))]) == 0
    table = starfile.read(next(out.rglob("new1_autopick.star")))
    assert (table["rlnAutopickFigureOfMerit"] >= stricter.threshold).all()
    assert len(table) < first


def _phase_randomised(image: np.ndarray, seed: int) -> np.ndarray:
    """``image``'s power spectrum with white noise's phases: empty ice at its noise."""
    data = image.astype(np.float64)
    spectrum = np.fft.rfft2(data - data.mean())
    noise = np.fft.rfft2(np.random.default_rng(seed).standard_normal(data.shape))
    phases = noise / np.maximum(np.abs(noise), 1e-12)
    return (np.fft.irfft2(np.abs(spectrum) * phases, s=data.shape) + data.mean()).astype(np.float32)


def test_the_filter_sees_particles_where_they_are_and_not_in_a_copy_at_their_noise(session):
    path, mics, _ = session
    radial = RadialFilter.load(path)
    image = mrcfile.read(mics / "new1.mrc")
    real = radial.tail_ratio(radial.response(image))
    copies = [radial.tail_ratio(radial.response(_phase_randomised(image, s))) for s in range(5)]
    assert real > 3 * radial.settings.min_tail_ratio
    assert np.median(copies) < radial.settings.min_tail_ratio
    assert not radial.looks_empty(real)
    # a copy keeps about as many picks above the threshold: the count cannot tell them apart
    assert len(radial.pick(_phase_randomised(image, 0))) > 0.5 * len(radial.pick(image))


def test_skip_empty_leaves_a_copy_at_the_particles_noise_without_picks(session, tmp_path):
    path, mics, centres = session
    batch = tmp_path / "batch"
    batch.mkdir()
    image = mrcfile.read(mics / "new1.mrc")
    for name, data in (("real", image), ("copy", _phase_randomised(image, 0))):
        with mrcfile.new(batch / f"{name}.mrc") as mrc:
            mrc.set_data(data)
    out = tmp_path / "picks"
    args = ["pick", str(batch), "-o", str(out), "--radial-filter", str(path)]
    assert main([*args, "--skip-empty"]) == 0
    real = read_coordinates(coordinate_path(out, batch / "real.mrc"))
    assert len(real) > 0.8 * len(centres["new1"])
    assert len(read_coordinates(coordinate_path(out, batch / "copy.mrc"))) == 0
    # without it the copy is picked as densely as the real micrograph
    plain = tmp_path / "plain"
    assert main(["pick", str(batch), "-o", str(plain), "--radial-filter", str(path)]) == 0
    assert len(read_coordinates(coordinate_path(plain, batch / "copy.mrc"))) > 0


@pytest.mark.parametrize(("field", "value"), [("empty_level", 0.0), ("min_tail_ratio", -1.0)])
def test_the_empty_test_refuses_settings_that_cannot_work(field, value):
    from cryosegnet.errors import SettingsError
    from cryosegnet.training.radial_filter import RadialFilterSettings

    with pytest.raises(SettingsError, match="radial filter"):
        RadialFilterSettings(**{field: value})


def test_a_filter_refuses_micrographs_of_another_pixel_size(session, tmp_path, capsys):
    path, mics, centres = session
    learnt = dataclasses.replace(RadialFilter.load(path), pixel_size=1.0)
    saved = learnt.save(tmp_path / "radial_filter.json")
    assert RadialFilter.load(saved).pixel_size == 1.0
    batch = tmp_path / "batch"
    batch.mkdir()
    image = mrcfile.read(mics / "new1.mrc")
    for name, pixel in (("same", 1.01), ("other", 1.5)):
        with mrcfile.new(batch / f"{name}.mrc") as mrc:
            mrc.set_data(image)
            mrc.voxel_size = pixel
    out = tmp_path / "picks"
    code = main(["pick", str(batch), "-o", str(out), "--radial-filter", str(saved)])
    assert code != 0  # the batch goes on past the refused micrograph and reports it
    err = capsys.readouterr().err
    assert "other.mrc" in err and "learnt at 1 Å/px" in err
    assert len(read_coordinates(coordinate_path(out, batch / "same.mrc"))) > 0
    assert not coordinate_path(out, batch / "other.mrc").exists()
    # --angpix says what the headers do not: then every micrograph is taken at that size
    again = tmp_path / "again"
    args = ["pick", str(batch), "-o", str(again), "--radial-filter", str(saved)]
    assert main([*args, "--angpix", "1.0"]) == 0


@pytest.mark.parametrize(("pixel_size", "refused"), [(None, False), (1.015, False), (1.1, True)])
def test_the_pixel_size_check_refuses_only_a_known_different_size(session, pixel_size, refused):
    from cryosegnet.errors import MicrographError

    path, _, _ = session
    learnt = dataclasses.replace(RadialFilter.load(path), pixel_size=1.0)
    if refused:
        with pytest.raises(MicrographError, match="m.mrc: pixel size 1.1"):
            learnt.check_pixel_size("m.mrc", pixel_size)
    else:
        learnt.check_pixel_size("m.mrc", pixel_size)
    RadialFilter.load(path).check_pixel_size("m.mrc", 3.0)  # learnt at an unknown size


def _checkpoint(path: Path, seed: int) -> Path:
    import torch

    from cryosegnet.model.checkpoint import save_checkpoint
    from cryosegnet.model.unet import AttentionUNet, UNetConfig
    from cryosegnet.preprocessing.denoise import DenoiseSettings

    torch.manual_seed(seed)
    model = AttentionUNet(UNetConfig(base_width=4, depth=5))
    save_checkpoint(path, model, DenoiseSettings(working_size=256), metadata={"purpose": "test"})
    return path


@pytest.fixture
def with_map(session, tmp_path):
    """The session's filter learnt with a U-Net's map, saved with that U-Net beside it."""
    from cryosegnet.model.checkpoint import checkpoint_sha256

    path, _, _ = session
    folder = tmp_path / "refine"
    folder.mkdir()
    unet = _checkpoint(folder / "radial_filter_unet.pt", 0)
    radial = dataclasses.replace(
        RadialFilter.load(path),
        map_weight=0.5,
        map_model=unet.name,
        map_model_sha256=checkpoint_sha256(unet),
    )
    return radial.save(folder / "radial_filter.json"), unet


def test_a_filter_learnt_with_a_unet_map_picks_with_the_unet_beside_it(session, with_map, tmp_path):
    from cryosegnet.picking.radial_picker import map_at_size

    _, mics, _ = session
    saved, _ = with_map
    picker = RadialFilterPicker.load(saved, mask_bad_regions=False)
    radial = picker.radial
    image = mrcfile.read(mics / "new1.mrc")
    working = picker.unet.probability_maps([picker.unet.preprocess(image)])[0]
    probability = map_at_size(working, image.shape)
    expected = radial.pick_response(radial.with_map(radial.response(image), probability))
    result = picker.pick(image)
    pandas.testing.assert_frame_equal(result.picks.drop(columns="diameter"), expected)
    alone = dataclasses.replace(radial, map_weight=0.0)
    plain = RadialFilterPicker(alone, picker.denoise_settings, False).pick(image).picks
    assert not plain["score"].equals(result.picks["score"])  # the map moved the scores
    out = tmp_path / "picks"
    assert main(["pick", str(mics), "-o", str(out), "--radial-filter", str(saved)]) == 0
    assert len(list(out.rglob("*_autopick.star"))) == 2


@pytest.mark.parametrize("change", ["missing", "another", "model given"])
def test_a_filter_learnt_with_a_unet_map_refuses_another_unet_or_none(
    session, with_map, tmp_path, change
):
    from cryosegnet.errors import CryoSegNetError

    saved, unet = with_map
    model = None
    if change == "missing":
        unet.unlink()
    elif change == "another":
        _checkpoint(unet, 1)
    else:
        model = _checkpoint(tmp_path / "other.pt", 0)
    with pytest.raises(CryoSegNetError, match="radial_filter.json"):
        RadialFilterPicker.load(saved, model=model)
    radial = RadialFilter.load(saved)
    with pytest.raises(CryoSegNetError, match="U-Net"):
        RadialFilterPicker(radial, RadialFilterPicker.load(session[0]).denoise_settings)

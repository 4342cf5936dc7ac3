"""2D classification of picks: alignment, determinism, bad input, outputs, RELION import."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
import torch
from relion_helpers import RELION_PREPROCESS, relion_extract, write_micrographs_star
from scipy import ndimage

from cryosegnet.classification.align import Aligner, Band, sample_images, shift_grid
from cryosegnet.classification.classify2d import (
    _soft_shares,
    assignment_temperature,
    classify_particles,
)
from cryosegnet.classification.extract import cut_boxes
from cryosegnet.classification.pipeline import classify_picks, select_classes
from cryosegnet.classification.quality import (
    decoy_threshold,
    evidence_threshold,
    judged_scores,
)
from cryosegnet.classification.selection import keep_particles, parse_classes
from cryosegnet.classification.settings import ClassifySettings, SelectionSettings
from cryosegnet.cli.main import main
from cryosegnet.errors import CryoSegNetError, SettingsError
from cryosegnet.io.coordinates import (
    make_picks,
    read_coordinates,
    write_coordinate_star,
    write_index_star,
)
from cryosegnet.simulation import SimulationConfig, simulate_micrograph

BOX = 48
CENTRE = BOX // 2


def _asymmetric_image() -> np.ndarray:
    yy, xx = np.mgrid[0:BOX, 0:BOX] - CENTRE
    image = np.exp(-((xx - 5) ** 2 / 30 + yy**2 / 8))
    image += 0.7 * np.exp(-((xx + 3) ** 2 + (yy - 6) ** 2) / 6)
    return -image.astype(np.float32)


def _rotated_and_shifted(image: np.ndarray, psi: float, shift: np.ndarray) -> np.ndarray:
    """``out(x) = image(R(-psi)(x - shift))`` about the box centre, by SciPy (independent of
    the code under test)."""
    a = np.deg2rad(-psi)
    matrix_xy = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    matrix_rc = matrix_xy[::-1, ::-1]
    centre = np.array([CENTRE, CENTRE], dtype=float)
    offset = centre - matrix_rc @ (shift[::-1] + centre)
    return ndimage.affine_transform(image, matrix_rc, offset=offset, order=3)


def test_alignment_recovers_a_rotated_and_shifted_copy_within_1px_and_5_degrees():
    reference = _asymmetric_image()
    settings = ClassifySettings()
    band = Band.disk(BOX, 9.0)
    angles = torch.arange(settings.n_rotations, dtype=torch.float32) * settings.angle_step
    aligner = Aligner(torch.from_numpy(reference)[None], band, angles, shift_grid(6.4, 2.0), 2.0)
    rng = np.random.default_rng(0)
    for _ in range(8):
        psi, shift = rng.uniform(0, 360), rng.uniform(-4, 4, 2)
        particle = _rotated_and_shifted(reference, psi, shift) + rng.normal(0, 0.05, (BOX, BOX))
        found, _ = aligner.align(
            band.coefficients(torch.tensor(particle[None], dtype=torch.float32))
        )
        angle_error = (float(found.angle[0]) - psi + 180) % 360 - 180
        assert abs(angle_error) <= 5.0
        assert np.hypot(*(found.shift[0].numpy() - shift)) <= 1.0


def _synthetic_stack(n: int, noise: float, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Two clearly different shapes (a bar, a pair of blobs) at random poses, with noise."""
    yy, xx = np.mgrid[0:BOX, 0:BOX] - CENTRE
    bar = -np.exp(-(xx**2 / (2 * 11**2) + yy**2 / (2 * 3**2)))
    pair = -(np.exp(-((xx - 7) ** 2 + yy**2) / 18) + np.exp(-((xx + 7) ** 2 + (yy - 5) ** 2) / 18))
    shapes = torch.tensor(np.stack([bar, pair]), dtype=torch.float32)
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    angles = torch.tensor(rng.uniform(0, 360, n), dtype=torch.float32)
    images = sample_images(shapes[truth], angles, torch.tensor(rng.uniform(-2, 2, (n, 2))).float())
    images = images.numpy() + rng.normal(0, noise, (n, BOX, BOX)).astype(np.float32)
    return images.astype(np.float32), truth


FAST = ClassifySettings(n_classes=2, iterations=4, full_iterations=1, decoys=300)


def test_classification_separates_two_shapes():
    stack, truth = _synthetic_stack(200, noise=0.5)
    result = classify_particles(stack, FAST, progress=False)
    table = pd.crosstab(truth, result.classes)
    purity = table.max(axis=0).sum() / len(truth)
    assert purity >= 0.9
    assert result.averages.shape == (2, BOX, BOX)
    assert sorted(result.sizes.tolist()) == sorted(np.bincount(result.classes, minlength=2))


def test_soft_assignment_separates_two_shapes_and_anneals_to_hard():
    settings = replace(FAST, soft_temperature=2.0, iterations=3, full_iterations=1)
    temperatures = [assignment_temperature(settings, i) for i in range(settings.iterations)]
    assert temperatures[0] == 2.0 and temperatures[-1] == 0.0
    assert all(a > b for a, b in zip(temperatures[:-1], temperatures[1:], strict=False))
    assert all(assignment_temperature(FAST, i) == 0.0 for i in range(FAST.iterations))
    stack, truth = _synthetic_stack(120, noise=0.5)
    result = classify_particles(stack, settings, progress=False)
    purity = pd.crosstab(truth, result.classes).max(axis=0).sum() / len(truth)
    assert purity >= 0.9


def test_soft_shares_follow_the_class_likelihoods_and_sum_to_one():
    stack, _ = _synthetic_stack(40, noise=1.0)
    band = Band.disk(BOX, 6.0)
    coefficients = band.coefficients(torch.from_numpy(stack))
    references = torch.from_numpy(np.stack([_asymmetric_image(), np.zeros((BOX, BOX))]))
    references[1] = torch.from_numpy(_asymmetric_image()).flip(0)
    angles = torch.arange(36, dtype=torch.float32) * 10.0
    noise_power = float(band.power(coefficients).median() / band.weight.sum())
    aligner = Aligner(references.float(), band, angles, shift_grid(6.0, 3.0), 3.0, noise_power)
    alignment, per_class = aligner.align(coefficients)
    likelihood = aligner.class_log_likelihoods(coefficients, per_class)
    warm = _soft_shares(aligner, coefficients, per_class, alignment, 100.0, 2)
    cold = _soft_shares(aligner, coefficients, per_class, alignment, 0.01, 2)
    assert torch.allclose(warm.weights.sum(dim=1), torch.ones(40))
    assert (warm.classes[:, 0] == alignment.reference).all()
    flatness = [(share.weights[:, 0] - 0.5).abs().mean() for share in (warm, cold)]
    assert flatness[0] < flatness[1]  # a hotter share is flatter
    chosen = likelihood.gather(1, cold.classes)
    assert (cold.weights.argmax(dim=1) == chosen.argmax(dim=1)).all()  # cold: the likeliest
    with pytest.raises(ValueError, match="noise power"):
        Aligner(references.float(), band, angles, shift_grid(6.0, 3.0), 3.0).class_log_likelihoods(
            coefficients, per_class
        )
    with pytest.raises(SettingsError, match="temperature"):
        ClassifySettings(soft_temperature=-1.0)


def test_same_seed_gives_identical_results():
    stack, _ = _synthetic_stack(120, noise=1.0)
    settings = replace(FAST, n_classes=3)
    first = classify_particles(stack, settings, progress=False)
    second = classify_particles(stack, settings, progress=False)
    for name in ("averages", "classes", "scores", "angles", "shifts"):
        assert np.array_equal(getattr(first, name), getattr(second, name)), name


def test_one_class_works():
    stack, _ = _synthetic_stack(30, noise=0.5)
    result = classify_particles(stack, replace(FAST, n_classes=1), progress=False)
    assert (result.classes == 0).all() and result.sizes.tolist() == [30]


def test_too_few_particles_for_the_classes_is_refused():
    stack, _ = _synthetic_stack(5, noise=0.5)
    with pytest.raises(SettingsError, match="too few for 3 classes"):
        classify_particles(stack, replace(FAST, n_classes=3), progress=False)


def test_boxes_over_the_micrograph_edge_are_padded_with_the_background():
    rng = np.random.default_rng(0)
    image = rng.normal(5.0, 2.0, (200, 200)).astype(np.float32)
    settings = ClassifySettings(working_box=32)
    boxes, box_x, box_y, padded, scale = cut_boxes(
        image, np.array([2.0, 100.0]), np.array([100.0, 100.0]), 20.0, settings
    )
    assert padded.tolist() == [True, False]
    assert np.isfinite(boxes).all()
    assert np.all(boxes[0][:, :10] == 0.0)  # the part left of the micrograph
    assert abs(box_x[1] - 100) <= scale[0] / 2 and abs(box_y[1] - 100) <= scale[1] / 2
    inside = boxes[1][np.hypot(*np.mgrid[-16:16, -16:16]) > settings.mask_radius_px]
    assert abs(inside.mean()) < 1e-4 and abs(inside.std() - 1) < 1e-3


def _disk_session(root: Path, offset=(3.0, -2.0), n_mics: int = 2, diameter: float = 20.0):
    """Micrographs of dark disks on noise at known centres; picks off by ``offset``; written
    in ``pick``'s layout (``picks/Movies/<stem>_autopick.star``, ``autopick.star``)."""
    rng = np.random.default_rng(5)
    movies, picks_dir = root / "Movies", root / "picks"
    (picks_dir / "Movies").mkdir(parents=True)
    movies.mkdir()
    truth, entries = {}, []
    yy, xx = np.mgrid[0:256, 0:256]
    for m in range(n_mics):
        centres = np.array([(x, y) for x in range(30, 230, 40) for y in range(30, 230, 40)], float)
        centres += rng.uniform(-4, 4, centres.shape)
        image = rng.normal(0, 1, (256, 256))
        for cx, cy in centres:
            image -= 1.5 * (np.hypot(xx - cx, yy - cy) < diameter / 2)
        mic = movies / f"mic{m}.mrc"
        with mrcfile.new(mic) as mrc:
            mrc.set_data(image.astype(np.float32))
        star = picks_dir / "Movies" / f"mic{m}_autopick.star"
        picks = make_picks(centres[:, 0] + offset[0], centres[:, 1] + offset[1], 1.0)
        write_coordinate_star(star, picks, manifest={"diameter_px": diameter})
        entries.append((f"Movies/{mic.name}", str(star)))
        truth[f"Movies/{mic.name}"] = centres
    write_index_star(picks_dir / "autopick.star", entries)
    return movies, picks_dir, truth


SMALL = ClassifySettings(n_classes=2, iterations=3, full_iterations=1, working_box=32, decoys=200)


def test_recentring_moves_picks_onto_the_particles_and_star_files_read_back(tmp_path):
    movies, picks_dir, truth = _disk_session(tmp_path)
    summary = classify_picks(picks_dir, [str(movies)], tmp_path / "classes", SMALL, recentre=True)
    assert summary.n_particles == 50 and not summary.failures
    out = tmp_path / "classes"
    combined = starfile.read(out / "particles.star")
    assert {
        "rlnMicrographName",
        "rlnCoordinateX",
        "rlnCoordinateY",
        "rlnClassNumber",
        "rlnAnglePsi",
    } <= set(combined.columns)
    assert set(combined["rlnClassNumber"]) <= {1, 2}
    before, after = [], []
    for name, centres in truth.items():
        stem = Path(name).stem
        written = read_coordinates(out / "Movies" / f"{stem}_autopick.star")
        assert len(written) == len(centres)
        rows = combined[combined["rlnMicrographName"] == name]
        for x, y in zip(rows["rlnCoordinateX"], rows["rlnCoordinateY"]):
            after.append(np.hypot(centres[:, 0] - x, centres[:, 1] - y).min())
        before += [np.hypot(3.0, -2.0)] * len(centres)
    assert np.median(after) < 0.5 * np.median(before)
    with mrcfile.open(out / "class_averages.mrcs") as mrc:
        assert mrc.data.shape == (2, 32, 32)
    table = pd.read_csv(out / "particles.csv")
    assert {"class", "correlation", "psi", "shift_x", "shift_y"} <= set(table.columns)


def test_select_writes_only_the_chosen_classes_and_records_the_choice(tmp_path):
    movies, picks_dir, _ = _disk_session(tmp_path)
    classify_picks(picks_dir, [str(movies)], tmp_path / "classes", SMALL)
    table = pd.read_csv(tmp_path / "classes" / "particles.csv")
    assert (
        main(["select", str(tmp_path / "classes"), "--classes", "2", "-o", str(tmp_path / "s")])
        == 0
    )
    kept = starfile.read(tmp_path / "s" / "particles.star")
    assert len(kept) == int((table["class"] == 2).sum())
    assert set(kept["rlnClassNumber"]) <= {2}
    record = json.loads((tmp_path / "s" / "selection.json").read_text())
    assert record["classes"] == [2] and record["mode"] == "manual"
    assert (tmp_path / "s" / "Movies" / "mic0_autopick.star").is_file()
    auto = select_classes(tmp_path / "classes", auto=True)
    assert auto.output == tmp_path / "classes" / "selected"
    quality = pd.read_csv(tmp_path / "classes" / "classes.csv")
    assert auto.classes == sorted(quality.loc[quality["auto_selected"], "class"].tolist())


def test_class_list_parsing_checks_numbers():
    assert parse_classes("1,4, 2-3", 5) == [1, 2, 3, 4]
    with pytest.raises(SettingsError, match="class 7 does not exist"):
        parse_classes("1,7", 5)
    with pytest.raises(SettingsError, match="not a class number"):
        parse_classes("one", 5)


def test_zero_picks_is_a_one_line_error_naming_the_picks(tmp_path, capsys):
    movies, picks_dir, _ = _disk_session(tmp_path, n_mics=1)
    star = picks_dir / "Movies" / "mic0_autopick.star"
    write_coordinate_star(star, make_picks([], []), manifest={"diameter_px": 20.0})
    code = main(["classify", str(picks_dir), str(movies), "-o", str(tmp_path / "c"), "-k", "2"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and str(picks_dir) in err and "too few" in err


def test_output_inside_the_picks_folder_is_refused(tmp_path):
    movies, picks_dir, _ = _disk_session(tmp_path, n_mics=1)
    with pytest.raises(CryoSegNetError, match="must not be"):
        classify_picks(picks_dir, [str(movies)], picks_dir / "classes", SMALL)


def test_simulated_micrograph_picks_classify_end_to_end(tmp_path):
    """Real simulator output (not only disks) goes through extraction and classification."""
    sim = simulate_micrograph(SimulationConfig(size=256, difficulty="easy", diameter_px=24), 3)
    mic = tmp_path / "a.mrc"
    with mrcfile.new(mic) as mrc:
        mrc.set_data(sim.image.astype(np.float32))
    picks = make_picks(sim.picks["x"], sim.picks["y"], 1.0, sim.picks["diameter"])
    (tmp_path / "picks").mkdir()
    write_coordinate_star(tmp_path / "picks" / "a_autopick.star", picks, {"diameter_px": 24.0})
    summary = classify_picks(tmp_path / "picks", [str(mic)], tmp_path / "c", SMALL)
    assert summary.n_particles == len(picks)


@pytest.mark.skipif(RELION_PREPROCESS is None, reason="RELION is not installed")
def test_relion_extracts_the_recentred_picks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    movies, picks_dir, _ = _disk_session(Path("."))
    job = Path("MotionCorr/job002/Movies")
    job.mkdir(parents=True)
    names = []
    for mic in sorted(movies.glob("*.mrc")):
        shutil.copy(mic, job / mic.name)
        names.append(str(job / mic.name))
    classify_picks(picks_dir, [str(movies)], Path("classes"), SMALL, recentre=True)
    write_micrographs_star(Path("mics.star"), names, 2.0)
    particles = relion_extract("mics.star", "classes/")
    written = starfile.read("classes/particles.star")
    inside = written["rlnCoordinateX"].between(16, 240) & written["rlnCoordinateY"].between(16, 240)
    assert len(particles) >= int(inside.sum()) > 0


def test_particles_beat_the_noise_decoys_and_empty_boxes_do_not():
    particles, _ = _synthetic_stack(80, noise=1.0)
    rng = np.random.default_rng(2)
    empty = rng.normal(0, 1, (80, BOX, BOX)).astype(np.float32)
    stack = np.concatenate([particles, empty])
    result = classify_particles(stack, replace(FAST, n_classes=3), progress=False)
    judged, _ = judged_scores(result)
    above = judged > decoy_threshold(result, 0.99)
    assert above[:80].mean() >= 0.9
    assert above[80:].mean() <= 0.1
    # the particles beat the decoys' evidence too (what --auto's evidence test asks)
    assert (result.evidence > evidence_threshold(result, 0.99))[:80].mean() >= 0.9


def test_a_particle_with_a_neighbour_leaves_a_smoother_residual_than_a_lone_one():
    lone, _ = _synthetic_stack(60, noise=1.0)
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:BOX, 0:BOX] - CENTRE
    neighbour = -1.5 * np.exp(-((xx - 13) ** 2 + (yy - 9) ** 2) / (2 * 4**2))
    crowded = lone[:20] + neighbour.astype(np.float32)
    crowded += rng.normal(0, 0.1, crowded.shape).astype(np.float32)
    result = classify_particles(np.concatenate([lone, crowded]), FAST, progress=False)
    residual = result.residual_lowpass
    assert residual.shape == (80,)
    assert np.median(residual[60:]) > np.percentile(residual[:60], 90)


def _selection_table() -> pd.DataFrame:
    """Six particles of class 1 (one picked twice, one an outlier residual) and one of class 2."""
    return pd.DataFrame(
        {
            "micrograph": ["a.mrc"] * 6 + ["b.mrc"],
            "class": [1, 1, 1, 1, 1, 1, 2],
            "correlation": [0.8, 0.6, 0.7, 0.7, 0.7, 0.7, 0.9],
            "above_decoys": [True, True, True, True, True, False, True],
            "recentred_x": [100.0, 104.0, 300.0, 500.0, 700.0, 900.0, 100.0],
            "recentred_y": [100.0, 101.0, 300.0, 500.0, 700.0, 900.0, 100.0],
            "residual_lowpass": [0.07, 0.07, 0.071, 0.069, 0.3, 0.07, 0.07],
        }
    )


def test_auto_keeps_one_of_two_picks_of_a_particle_and_drops_residual_outliers():
    table = _selection_table()
    keep = keep_particles(table, [1], SelectionSettings(), diameter_px=40.0)
    # the second pick (within half a diameter, lower correlation), the outlier residual,
    # the member below the decoys and the class not chosen are all left out
    assert keep.tolist() == [True, False, True, True, False, False, False]
    lenient = SelectionSettings(max_residual_z=float("inf"), duplicate_distance=0.0)
    assert keep_particles(table, [1], lenient, diameter_px=40.0).tolist() == [
        True, True, True, True, True, False, False,
    ]  # fmt: skip


def test_auto_drops_a_member_whose_evidence_does_not_beat_the_decoys():
    table = _selection_table().assign(evidence_above_decoys=[True, True, False] + [True] * 4)
    keep = keep_particles(table, [1], SelectionSettings(), diameter_px=40.0)
    assert keep.tolist() == [True, False, False, True, False, False, False]
    without = SelectionSettings(evidence_test=False)
    assert keep_particles(table, [1], without, diameter_px=40.0)[2]


def test_selection_without_a_residual_column_still_works():
    table = _selection_table().drop(columns="residual_lowpass")
    keep = keep_particles(table, [1, 2], SelectionSettings(), diameter_px=40.0)
    assert keep.tolist() == [True, False, True, True, True, False, True]


def test_classify_command_with_auto_writes_classes_and_selection(tmp_path, capsys):
    movies, picks_dir, _ = _disk_session(tmp_path, n_mics=1)
    out = tmp_path / "c"
    args = ["classify", str(picks_dir), str(movies), "-o", str(out), "-k", "2"]
    args += ["--iterations", "2", "--working-box", "32", "--auto", "--recentre"]
    assert main(args) == 0
    assert "classified 25 particles into 2 classes" in capsys.readouterr().out
    for name in ("class_averages.mrcs", "class_averages.png", "classes.csv", "particles.csv"):
        assert (out / name).is_file(), name
    record = json.loads((out / "selected" / "selection.json").read_text())
    assert record["mode"] == "auto" and record["recentre"] is True
    classification = json.loads((out / "classification.json").read_text())
    assert len(classification["decoy_evidence"]) == len(classification["decoy_scores"])
    assert "evidence_above_decoys" in pd.read_csv(out / "particles.csv")


def test_pick_classify_writes_the_classes_of_its_picks(tmp_path, tiny_model):
    config = SimulationConfig(size=512, difficulty="easy", diameter_px=24, density="dense")
    mics = tmp_path / "mics"
    mics.mkdir()
    for i in range(2):
        with mrcfile.new(mics / f"m{i}.mrc") as mrc:
            mrc.set_data(simulate_micrograph(config, 40 + i).image.astype(np.float32))
    out, classes = tmp_path / "picks", tmp_path / "classes"
    common = ["pick", str(mics), "-o", str(out), "--model", str(tiny_model), "--device", "cpu"]
    code = main([*common, "--diameter", "24", "--threshold", "0", "--classify", str(classes)])
    assert code == 0
    assert (classes / "class_averages.mrcs").is_file()
    assert (classes / "selected" / "particles.star").is_file()
    assert main([*common, "--watch", str(mics), "--classify", str(classes)]) != 0


def _faint_rings(n: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Hollow rings (as apoferritin) 10x fainter than the noise, a little off centre."""
    yy, xx = np.mgrid[0:BOX, 0:BOX] - CENTRE
    ring = -np.exp(-((np.hypot(xx, yy) - 12) ** 2) / 8).astype(np.float32)
    rng = np.random.default_rng(seed)
    shifts = torch.tensor(rng.uniform(-1.5, 1.5, (n, 2))).float()
    images = sample_images(torch.tensor(ring)[None].expand(n, BOX, BOX), torch.zeros(n), shifts)
    noisy = 0.15 * images.numpy() + rng.normal(0, 1, (n, BOX, BOX)).astype(np.float32)
    return noisy.astype(np.float32), ring


def _ring_correlation(average: np.ndarray, ring: np.ndarray) -> float:
    inside = np.hypot(*(np.mgrid[0:BOX, 0:BOX] - CENTRE)) <= 18
    return float(np.corrcoef(average[inside], ring[inside])[0, 1])


def test_faint_rings_average_to_rings_not_to_aligned_noise():
    stack, ring = _faint_rings(300)
    settings = replace(FAST, n_classes=2)
    marginal = classify_particles(stack, replace(settings, low_snr=True), progress=False)
    maximal = classify_particles(stack, settings, progress=False)
    new = min(_ring_correlation(a, ring) for a in marginal.raw_averages)
    old = max(_ring_correlation(a, ring) for a in maximal.raw_averages)
    assert new >= 0.8 > old
    assert marginal.low_snr and not maximal.low_snr
    assert np.median(marginal.certainty) < 0.5  # the noise leaves the rotation undecided


def test_clear_asymmetric_particles_keep_a_certain_pose_at_low_snr_settings():
    rng = np.random.default_rng(5)
    shape = torch.from_numpy(_asymmetric_image())[None].expand(120, BOX, BOX)
    angles = torch.tensor(rng.uniform(0, 360, 120)).float()
    stack = sample_images(shape, angles, torch.tensor(rng.uniform(-2, 2, (120, 2))).float())
    # Normalised as extracted boxes are: unit noise SD.
    stack = stack.numpy() / 0.2 + rng.normal(0, 1, stack.shape).astype(np.float32)
    settings = replace(FAST, n_classes=1, low_snr=True)
    result = classify_particles(stack, settings, progress=False)
    assert result.low_snr and np.median(result.certainty) > 0.9
    assert len(result.evidence) == len(stack) and len(result.decoy_evidence) == FAST.decoys
    hard = classify_particles(stack, replace(settings, low_snr=False), progress=False)
    assert not hard.low_snr and (hard.certainty == 1).all()


def test_faint_rings_beat_noise_by_evidence():
    stack, _ = _faint_rings(200)
    rng = np.random.default_rng(4)
    empty = rng.normal(0, 1, (200, BOX, BOX)).astype(np.float32)
    result = classify_particles(
        np.concatenate([stack, empty]), replace(FAST, n_classes=2, low_snr=True), progress=False
    )
    evidence = result.evidence
    assert np.median(evidence[:200]) > np.quantile(evidence[200:], 0.9)

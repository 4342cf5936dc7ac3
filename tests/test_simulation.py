"""Simulator: determinism, ground-truth consistency, SNR, CTF physics, user densities, CLI."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from cryosegnet.simulation import SimulationConfig, simulate_micrograph, stream, write_dataset
from cryosegnet.simulation.ctf import CTFParams, ctf_values, ctf_zeros, electron_wavelength
from cryosegnet.simulation.densities import (
    PROCEDURAL_KINDS,
    load_atomic_model,
    load_mrc_density,
    procedural_density,
)
from cryosegnet.simulation.micrograph import disk_mask, micrograph_seed
from cryosegnet.simulation.projection import make_bank, project, random_rotations
from cryosegnet.simulation.writer import output_paths, write_micrograph

SMALL = dict(size=256, pixel_size=4.0, diameter=(60.0, 120.0))


def test_deterministic_per_seed_and_stream_matches():
    cfg = SimulationConfig(difficulty="hard", **SMALL)
    a = simulate_micrograph(cfg, 7)
    b = simulate_micrograph(cfg, 7)
    c = simulate_micrograph(cfg, 8)
    assert a.image.dtype == np.float32 and a.image.shape == (256, 256)
    np.testing.assert_array_equal(a.image, b.image)
    pd.testing.assert_frame_equal(a.particles, b.particles)
    assert not np.array_equal(a.image, c.image)
    gen = stream(cfg, seed=3)
    first, second = next(gen), next(gen)
    again = simulate_micrograph(cfg, np.random.default_rng(micrograph_seed(3, 1)))
    np.testing.assert_array_equal(second.image, again.image)
    assert not np.array_equal(first.image, second.image)


def test_particle_table_and_disk_mask_agree():
    cfg = SimulationConfig(difficulty="medium", density="dense", aggregates=2, **SMALL)
    sim = simulate_micrograph(cfg, 1)
    t = sim.particles
    assert list(t.columns[:5]) == ["x", "y", "diameter", "pickable", "reason"]
    assert t["pickable"].dtype == bool
    assert set(t["reason"]) <= {"ok", "edge", "contamination", "carbon", "aggregate", "overlap"}
    assert ((t["reason"] == "ok") == t["pickable"]).all()
    assert (t.loc[t["reason"] == "aggregate", "pickable"] == False).all()  # noqa: E712
    picks = sim.picks
    assert len(picks) > 0
    expected = disk_mask(sim.image.shape, picks["x"], picks["y"], picks["diameter"])
    np.testing.assert_array_equal(sim.disk_mask, expected)
    # The footprint covers the particles' centres (ring-shaped particles excepted: use a disk).
    assert sim.footprint_mask.any()


def test_edge_cut_particles_flagged():
    cfg = SimulationConfig(difficulty="easy", density="crowded", **SMALL)
    t = simulate_micrograph(cfg, 2).particles
    h = w = 256
    outside = (t["x"] < 0) | (t["y"] < 0) | (t["x"] > w - 1) | (t["y"] > h - 1)
    assert outside.any()
    assert (t.loc[outside, "reason"] == "edge").all()


def test_no_argument_to_starfile_write_is_swallowed(tmp_path: Path, monkeypatch):
    """starfile.write takes **kwargs and ignores what it does not know (overwrite=...)."""
    import inspect

    real = starfile.write
    signature = inspect.signature(real)
    strict = signature.replace(
        parameters=[
            p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD
        ]
    )

    def checked(*args, **kwargs):
        strict.bind(*args, **kwargs)  # TypeError for an argument starfile would drop
        return real(*args, **kwargs)

    monkeypatch.setattr(starfile, "write", checked)
    cfg = SimulationConfig(difficulty="easy", density="sparse", **SMALL)
    paths = write_micrograph(tmp_path, "mic", simulate_micrograph(cfg, 1))
    assert len(starfile.read(paths[".star"])) > 0


def test_written_files_agree(tmp_path: Path):
    cfg = SimulationConfig(difficulty="medium", density="medium", **SMALL)
    sim = simulate_micrograph(cfg, 4)
    paths = write_micrograph(tmp_path, "mic", sim)
    assert set(paths) == {".csv", ".star", "_mask.png", "_footprint.png", "_all.csv", ".mrc"}
    header = paths[".csv"].read_text().splitlines()[0]
    assert header == "X-Coordinate,Y-Coordinate,Diameter"
    csv = pd.read_csv(paths[".csv"])
    star = starfile.read(paths[".star"])
    star = star if isinstance(star, pd.DataFrame) else next(iter(star.values()))
    np.testing.assert_allclose(star["rlnCoordinateX"], csv["X-Coordinate"])
    np.testing.assert_allclose(star["rlnCoordinateY"], csv["Y-Coordinate"])
    mask = cv2.imread(str(paths["_mask.png"]), cv2.IMREAD_UNCHANGED)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    redrawn = disk_mask(mask.shape, csv["X-Coordinate"], csv["Y-Coordinate"], sim.picks["diameter"])
    np.testing.assert_array_equal(mask > 0, redrawn)
    everything = pd.read_csv(paths["_all.csv"])
    assert everything["pickable"].sum() == len(csv)
    with mrcfile.open(paths[".mrc"]) as mrc:
        assert mrc.data.dtype == np.float32
        np.testing.assert_array_equal(mrc.data, sim.image)
        assert mrc.voxel_size.x == pytest.approx(4.0)
    assert not list(tmp_path.glob(".*"))  # no temp files left behind


@pytest.mark.parametrize("snr_range", [(0.01, 0.02), (0.05, 0.1)])
def test_measured_snr_in_requested_range(snr_range):
    cfg = SimulationConfig(
        difficulty="medium", snr=snr_range, keep_components=True, density="dense", **SMALL
    )
    for seed in range(3):
        sim = simulate_micrograph(cfg, seed)
        region = sim.footprint_mask & ~sim.contamination_mask
        signal = sim.components["particle_signal"][region]
        noise = (sim.image - sim.components["expected"])[region]
        measured = float(np.mean(signal.astype(np.float64) ** 2) / np.var(noise))
        assert snr_range[0] * 0.9 <= measured <= snr_range[1] * 1.1, (seed, measured)
        assert snr_range[0] * 0.99 <= sim.info["snr"] <= snr_range[1] * 1.01


def test_snr_is_measured_at_the_working_scale():
    """A 2048² micrograph's SNR refers to its 2x-binned (1024²) version, like the picker sees."""
    from cryosegnet.simulation.micrograph import _binned, snr_binning

    cfg = SimulationConfig(
        size=2048,
        pixel_size=2.0,
        difficulty="medium",
        snr=(0.03, 0.03),
        diameter=(80.0, 120.0),
        density="dense",
        contamination=0,
        noise_correlation=0.0,
        keep_components=True,
    )
    assert snr_binning(cfg.shape, cfg.snr_reference_size) == 2
    sim = simulate_micrograph(cfg, 0)
    region = _binned(sim.footprint_mask, 2) > 0.5
    signal = _binned(sim.components["particle_signal"], 2)[region]
    noise = _binned(sim.image - sim.components["expected"], 2)[region]
    measured = float(np.mean(signal.astype(np.float64) ** 2) / np.var(noise))
    assert measured == pytest.approx(0.03, rel=0.1)
    assert sim.info["snr"] == pytest.approx(0.03, rel=0.01)


def test_ctf_zeros_match_formula():
    params = CTFParams(
        defocus_u=2.0,
        defocus_v=1.6,
        astig_angle=30.0,
        voltage=300.0,
        cs=2.7,
        amplitude_contrast=0.1,
        bfactor=0.0,
    )
    assert electron_wavelength(300.0) == pytest.approx(0.019687, rel=1e-3)
    for theta in (np.deg2rad(30.0), np.deg2rad(120.0)):
        k = np.linspace(1e-4, 0.25, 200001)
        values = ctf_values(k, theta, params, envelope=False).astype(np.float64)
        crossings = k[1:][np.signbit(values[1:]) != np.signbit(values[:-1])]
        zeros = ctf_zeros(params, len(crossings), theta=theta)
        np.testing.assert_allclose(crossings, zeros, atol=2e-6)
    # Along the major axis the defocus is defocus_u: the first zero is at the larger defocus'.
    z_u = ctf_zeros(params, 1, theta=np.deg2rad(30.0))[0]
    z_v = ctf_zeros(params, 1, theta=np.deg2rad(120.0))[0]
    assert z_u < z_v


def test_simulated_thon_rings_at_ctf_zeros():
    """Power spectrum minima of the simulated (noise-free) particle image sit at CTF zeros."""
    cfg = SimulationConfig(
        size=512,
        pixel_size=2.0,
        diameter=(40.0, 60.0),
        density="crowded",
        defocus=2.0,
        astigmatism=0.0,
        bfactor=20.0,
        mtf=False,
        carbon=False,
        contamination=0,
        aggregates=0,
        keep_components=True,
    )
    sim = simulate_micrograph(cfg, 0)
    ctf = sim.info["ctf"]
    params = CTFParams(**ctf)
    signal = sim.components["particle_signal"].astype(np.float64)
    power = np.abs(np.fft.fftshift(np.fft.fft2(signal - signal.mean()))) ** 2
    yy, xx = np.indices(power.shape)
    r = np.hypot(yy - 256, xx - 256)
    rbin = np.round(r).astype(int)
    radial = np.bincount(rbin.ravel(), power.ravel()) / np.bincount(rbin.ravel())
    freq = np.arange(len(radial)) / (512 * 2.0)  # 1/Å
    zeros = ctf_zeros(params, 4)
    for z in zeros:
        idx = int(round(z * 512 * 2.0))
        if idx + 3 >= 256:
            break
        window = slice(idx - 3, idx + 4)
        local_min = int(np.argmin(radial[window])) + idx - 3
        assert abs(freq[local_min] - z) <= 1.5 / (512 * 2.0), (z, freq[local_min])
        # A real minimum: well below the neighbouring maxima.
        assert radial[local_min] < 0.2 * radial[idx - 8 : idx + 9].max()


def test_no_pickable_particles_on_carbon():
    cfg = SimulationConfig(
        difficulty="medium", carbon=True, carbon_fraction=(0.4, 0.5), density="crowded", **SMALL
    )
    n_on_carbon = 0
    for seed in range(3):
        sim = simulate_micrograph(cfg, seed)
        t = sim.particles
        assert sim.carbon_mask.mean() > 0.2
        xi = np.clip(t["x"], 0, 255).astype(int)
        yi = np.clip(t["y"], 0, 255).astype(int)
        on_carbon = sim.carbon_mask[yi, xi]
        assert not (on_carbon & t["pickable"]).any()
        assert not (sim.disk_mask & sim.carbon_mask).sum() > 0.1 * sim.disk_mask.sum()
        n_on_carbon += int(on_carbon.sum())
        # Carbon is sparse: far fewer single particles per area than the hole.
        single = (t["group"] == "single").to_numpy()
        dens_carbon = (on_carbon & single).sum() / sim.carbon_mask.sum()
        dens_hole = (~on_carbon & single).sum() / (~sim.carbon_mask).sum()
        assert dens_carbon < 0.5 * dens_hole
    allowed = SimulationConfig(
        difficulty="easy",
        carbon=True,
        pick_on_carbon=True,
        carbon_fraction=(0.4, 0.5),
        density="crowded",
        **SMALL,
    )
    t = simulate_micrograph(allowed, 0).particles
    assert not (t["reason"] == "carbon").any()


@pytest.mark.parametrize("kind", PROCEDURAL_KINDS)
def test_procedural_densities(kind):
    rng = np.random.default_rng(0)
    dens = procedural_density(rng, 150.0, kind=kind)
    assert dens.name == kind
    assert dens.diameter == pytest.approx(150.0, rel=1e-6)
    assert np.allclose(
        (dens.points * dens.weights[:, None]).sum(0) / dens.weights.sum(), 0, atol=1.0
    )
    img = project(dens, random_rotations(rng, 1)[0], pixel_size=5.0)
    assert img.shape[0] % 2 == 1
    assert img.sum() == pytest.approx(dens.weights.sum(), rel=0.02)


def _write_tiny_map(path: Path, voxel: float = 5.0) -> None:
    zz, yy, xx = np.mgrid[0:24, 0:24, 0:24].astype(np.float32)
    vol = np.exp(-((xx - 10) ** 2 + (yy - 12) ** 2 + (zz - 12) ** 2) / 18.0)
    vol += 0.7 * np.exp(-((xx - 15) ** 2 + (yy - 12) ** 2 + (zz - 13) ** 2) / 8.0)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(vol.astype(np.float32))
        mrc.voxel_size = voxel


def test_user_mrc_map(tmp_path: Path):
    path = tmp_path / "blob.mrc"
    _write_tiny_map(path)
    dens = load_mrc_density(path)
    assert 30 < dens.diameter < 120  # two blobs ~5-8 voxels of 5 Å apart
    bank = make_bank(dens, 4.0, 4, np.random.default_rng(0))
    assert bank.views.shape[0] == 4 and bank.footprints.any()
    cfg = SimulationConfig(size=256, pixel_size=4.0, maps=(str(path),), difficulty="easy")
    sim = simulate_micrograph(cfg, 0)
    assert sim.info["species"][0]["name"] == "blob"
    assert len(sim.picks) > 0
    assert sim.picks["diameter"].iloc[0] == pytest.approx(dens.diameter / 4.0)


def test_user_pdb_model(tmp_path: Path):
    lines = []
    for i in range(60):  # an alpha-helix-like spiral of CA/N/O atoms
        t = i * 100 / 180 * np.pi
        x, y, z = 2.3 * np.cos(t), 2.3 * np.sin(t), 1.5 * i
        for j, (name, el) in enumerate((("N", "N"), ("CA", "C"), ("O", "O"))):
            lines.append(
                f"ATOM  {3 * i + j + 1:5d}  {name:<3s} ALA A{i + 1:4d}    "
                f"{x + j:8.3f}{y:8.3f}{z:8.3f}  1.00 20.00          {el:>2s}"
            )
    lines.append("HETATM  999  O   HOH A 999       0.000   0.000   0.000  1.00 20.00           O")
    lines.append("END")
    path = tmp_path / "helix.pdb"
    path.write_text("\n".join(lines) + "\n")
    dens = load_atomic_model(path)
    assert len(dens.points) == 180  # the water is dropped
    assert 80 < dens.diameter < 100
    cfg = SimulationConfig(size=256, pixel_size=2.0, maps=(str(path),), difficulty="easy")
    sim = simulate_micrograph(cfg, 0)
    assert sim.info["species"][0]["name"] == "helix"
    assert len(sim.picks) > 0


def test_shared_maps_when_present(shared_dir: Path):
    maps = shared_dir / "data" / "maps"
    files = [maps / "trpv1_volume.mrc", maps / "8zpm.cif", maps / "clean70SRibosome_vol_65p.mrc"]
    for f in files:
        if not f.exists():
            pytest.skip(f"{f} missing")
    assert load_mrc_density(files[0]).diameter == pytest.approx(171, abs=10)  # 4.88 Å voxels
    # The ribosome map has no voxel size: it is marked unscaled and resized to the wanted range.
    assert load_mrc_density(files[2]).name.endswith("-unscaled")
    cfg = SimulationConfig(
        size=256, pixel_size=3.0, maps=tuple(map(str, files)), n_views=4, diameter=(200.0, 260.0)
    )
    seen = set()
    for seed in range(6):
        sim = simulate_micrograph(cfg, seed)
        species = sim.info["species"][0]
        seen.add(species["name"])
        if species["name"].endswith("-unscaled"):
            assert 200 <= species["diameter_a"] <= 260
        else:
            assert 100 < species["diameter_a"] < 200
    assert len(seen) >= 2


def _cli_args(argv: list[str]) -> argparse.Namespace:
    from cryosegnet.cli.simulate import add_parser

    parser = argparse.ArgumentParser(prog="cryosegnet")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_writes_expected_files(tmp_path: Path):
    from cryosegnet.cli.simulate import run

    out = tmp_path / "sim"
    args = _cli_args(
        [
            "simulate",
            "-n",
            "2",
            "-o",
            str(out),
            "--size",
            "192",
            "--seed",
            "5",
            "--difficulty",
            "hard",
            "--diameter-px",
            "12",
            "20",
            "--no-carbon",
            "-q",
        ]
    )
    assert args.func is run
    assert run(args) == 0
    for i in range(2):
        for p in output_paths(out, f"sim_{i:05d}").values():
            assert p.exists(), p
    assert (out / "simulation.json").exists()
    summary = pd.read_csv(out / "micrographs.csv")
    assert list(summary["stem"]) == ["sim_00000", "sim_00001"]
    assert not summary["carbon"].any()
    # Any single micrograph can be regenerated from (seed, index).
    cfg = SimulationConfig(size=192, difficulty="hard", diameter_px=(12.0, 20.0), carbon=False)
    again = simulate_micrograph(cfg, np.random.default_rng(micrograph_seed(5, 1)))
    with mrcfile.open(out / "sim_00001.mrc") as mrc:
        np.testing.assert_array_equal(mrc.data, again.image)
    # Resume: a second run over the same folder keeps finished micrographs and adds new ones.
    before = (out / "sim_00000.mrc").stat().st_mtime_ns
    assert (
        run(
            _cli_args(
                [
                    "simulate",
                    "-n",
                    "3",
                    "-o",
                    str(out),
                    "--size",
                    "192",
                    "--seed",
                    "5",
                    "--difficulty",
                    "hard",
                    "--diameter-px",
                    "12",
                    "20",
                    "--no-carbon",
                    "-q",
                ]
            )
        )
        == 0
    )
    assert (out / "sim_00000.mrc").stat().st_mtime_ns == before
    assert len(pd.read_csv(out / "micrographs.csv")) == 3


def test_cli_main_dispatches(tmp_path: Path):
    main_mod = pytest.importorskip("cryosegnet.cli.main")
    rc = main_mod.main(["simulate", "-n", "1", "-o", str(tmp_path), "--size", "128", "-q"])
    assert rc == 0
    assert (tmp_path / "sim_00000.mrc").exists()


def test_write_dataset_api(tmp_path: Path):
    cfg = SimulationConfig(size=128, difficulty="easy")
    summary = write_dataset(tmp_path, cfg, n=2, seed=1)
    assert len(summary) == 2
    assert 0 < summary["snr"].min() and summary["snr"].max() < 0.2


def test_config_round_trip_and_cli_errors(tmp_path: Path):
    from cryosegnet.cli.simulate import run
    from cryosegnet.simulation.micrograph import SIMULATOR_VERSION

    cfg = SimulationConfig(size=(96, 128), difficulty="hard", snr=(0.01, 0.02), maps=("a.mrc",))
    record = cfg.to_dict()
    assert record["simulator_version"] == SIMULATOR_VERSION
    assert SimulationConfig.from_dict(record) == cfg
    with pytest.raises(ValueError):
        SimulationConfig(difficulty="impossible")
    bad = _cli_args(["simulate", "-o", str(tmp_path), "--snr", "0.03", "0.01", "-q"])
    assert run(bad) == 2
    sim = simulate_micrograph(SimulationConfig(size=(96, 128), difficulty="easy"), 0)
    assert sim.image.shape == (96, 128) and sim.disk_mask.shape == (96, 128)


def test_empty_fields_hold_no_pickable_particle_and_keep_other_images_unchanged():
    empty = SimulationConfig(difficulty="medium", empty_probability=1.0, aggregates=0, **SMALL)
    sim = simulate_micrograph(empty, 4)
    assert sim.info["density"] == "empty"
    assert len(sim.picks) == 0 and not sim.disk_mask.any()
    assert np.isfinite(sim.image).all() and sim.image.std() > 0  # ice and shot noise remain
    # A configuration that never asks for empty fields draws exactly the images it drew before.
    plain = SimulationConfig(difficulty="medium", **SMALL)
    never = SimulationConfig(difficulty="medium", empty_probability=0.0, **SMALL)
    np.testing.assert_array_equal(
        simulate_micrograph(plain, 5).image, simulate_micrograph(never, 5).image
    )
    # Some, not all, fields are empty at an intermediate probability.
    half = SimulationConfig(difficulty="easy", empty_probability=0.5, **SMALL)
    kinds = {simulate_micrograph(half, seed).info["density"] == "empty" for seed in range(8)}
    assert kinds == {True, False}


def test_crystalline_ice_is_a_mosaic_of_dark_grains_without_particles():
    bare = dict(aggregates=0, carbon=False, contamination=0, **SMALL)
    sim = simulate_micrograph(
        SimulationConfig(difficulty="easy", crystalline_probability=1.0, **bare), 2
    )
    vitreous = simulate_micrograph(SimulationConfig(difficulty="easy", density=0.0, **bare), 2)
    assert sim.info["crystalline"] and len(sim.picks) == 0
    # Grains change the local mean on scales far above the pixel: the smoothed image varies
    # much more than vitreous ice of the same dose does.
    smooth = cv2.GaussianBlur(sim.image, (0, 0), 4) / sim.image.mean()
    plain = cv2.GaussianBlur(vitreous.image, (0, 0), 4) / vitreous.image.mean()
    assert smooth.std() > 2 * plain.std()
    with pytest.raises(ValueError, match="crystalline_probability"):
        SimulationConfig(crystalline_probability=1.5)

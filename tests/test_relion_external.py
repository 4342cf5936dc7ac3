"""RELION as a host: micrographs STAR inputs, Å diameters, and the External job end to end.

The project tree is what RELION writes (MotionCorr/job002/Movies/*.mrc, CtfFind/job003/
micrographs_ctf.star with an optics table, default_pipeline.star); the External job is run
exactly as RELION calls it, and its outputs are read back with ``starfile`` (and, when RELION
is installed, extracted by relion_preprocess).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from cryosegnet.cli.main import main
from cryosegnet.errors import CryoSegNetError
from cryosegnet.io.coordinates import make_picks
from cryosegnet.io.relion import (
    COORDINATES_NODE_LABELS,
    JOB_ABORT_NOW,
    JOB_EXIT_ABORTED,
    JOB_EXIT_FAILURE,
    JOB_EXIT_SUCCESS,
    OUTPUT_NODES_STAR,
)
from cryosegnet.picking.batch import pick_batch
from cryosegnet.picking.picker import PickResult
from cryosegnet.picking.units import Diameter, PixelSizes, parse_diameter
from cryosegnet.simulation import SimulationConfig, simulate_micrograph

STAR_PIXEL_SIZE = 3.0  # Å/px in the optics table; the MRC headers say 1.0 (the STAR wins)
DIAMETER_PX = 20.0
PIPELINE = {
    4: "\n# version 30001\n\ndata_pipeline_general\n\n_rlnPipeLineJobCounter 4\n\n\n"
    "# version 30001\n\ndata_pipeline_processes\n\nloop_ \n_rlnPipeLineProcessName #1 \n"
    "_rlnPipeLineProcessAlias #2 \n_rlnPipeLineProcessTypeLabel #3 \n"
    "_rlnPipeLineProcessStatusLabel #4 \n"
    "CtfFind/job003/ None relion.ctffind.ctffind4 Succeeded \n\n\n"
    "# version 30001\n\ndata_pipeline_nodes\n\nloop_ \n_rlnPipeLineNodeName #1 \n"
    "_rlnPipeLineNodeTypeLabel #2 \n"
    "CtfFind/job003/micrographs_ctf.star MicrographsData.star.relion.ctf \n\n",
    3: "\n# version 30001\n\ndata_pipeline_general\n\n_rlnPipeLineJobCounter 4\n\n\n"
    "# version 30001\n\ndata_pipeline_processes\n\nloop_ \n_rlnPipeLineProcessName #1 \n"
    "_rlnPipeLineProcessAlias #2 \n_rlnPipeLineProcessType #3 \n"
    "_rlnPipeLineProcessStatus #4 \nCtfFind/job003/ None 2 2 \n\n\n"
    "# version 30001\n\ndata_pipeline_nodes\n\nloop_ \n_rlnPipeLineNodeName #1 \n"
    "_rlnPipeLineNodeType #2 \nCtfFind/job003/micrographs_ctf.star 1 \n\n",
}


def _micrograph(path: Path, seed: int, pixel_size: float | None = 1.0) -> None:
    sim = simulate_micrograph(
        SimulationConfig(size=256, difficulty="easy", diameter_px=DIAMETER_PX), rng=seed
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(sim.image.astype(np.float32))
        if pixel_size:
            mrc.voxel_size = pixel_size


def _ctf_star(names: list[str]) -> str:
    """micrographs_ctf.star as RELION 3.1/4 CtfFind writes it (labels end with a blank)."""
    rows = "".join(
        f"{name} 1 CtfFind/job003/Movies/{Path(name).stem}.ctf:mrc 10864.146484 10575.793945 "
        "288.352539 77.995003 0.131144 4.809192 \n"
        for name in names
    )
    return (
        "\n# version 30001\n\ndata_optics\n\nloop_ \n_rlnOpticsGroupName #1 \n"
        "_rlnOpticsGroup #2 \n_rlnMicrographOriginalPixelSize #3 \n_rlnVoltage #4 \n"
        "_rlnSphericalAberration #5 \n_rlnAmplitudeContrast #6 \n_rlnMicrographPixelSize #7 \n"
        f"opticsGroup1 1 1.500000 300.000000 2.700000 0.100000 {STAR_PIXEL_SIZE:f} \n \n\n"
        "# version 30001\n\ndata_micrographs\n\nloop_ \n_rlnMicrographName #1 \n"
        "_rlnOpticsGroup #2 \n_rlnCtfImage #3 \n_rlnDefocusU #4 \n_rlnDefocusV #5 \n"
        "_rlnCtfAstigmatism #6 \n_rlnDefocusAngle #7 \n_rlnCtfFigureOfMerit #8 \n"
        f"_rlnCtfMaxResolution #9 \n{rows} \n"
    )


NAMES = ["MotionCorr/job002/Movies/mic_001.mrc", "MotionCorr/job002/Movies/day2/mic_002.mrc"]
CTF_STAR = "CtfFind/job003/micrographs_ctf.star"


def _project(root: Path, names: list[str] = NAMES, version: int | None = 4) -> Path:
    for seed, name in enumerate(names):
        if not (root / name).exists():
            _micrograph(root / name, seed)
    star = root / CTF_STAR
    star.parent.mkdir(parents=True, exist_ok=True)
    star.write_text(_ctf_star(names))
    if version:
        (root / "default_pipeline.star").write_text(PIPELINE[version])
    return star


def _external_executable() -> list[str]:
    """What RELION's 'External executable' field names: the installed console script."""
    script = shutil.which("cryosegnet-relion-external")
    if script is None:  # not installed (a checkout on PYTHONPATH): the same entry point
        return [sys.executable, "-m", "cryosegnet.cli.relion_external"]
    return [script]


def _as_relion_calls(root: Path, *params: str, job: str = "External/job004/"):
    """RELION's command: EXE --o JOB --in_mics STAR [--label value ...] --j N, in the project."""
    command = [*_external_executable(), "--o", job, "--in_mics", CTF_STAR, *params, "--j", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=600, env=env)


# ------------------------------------------------------------------ units


def test_parse_diameter_units():
    assert parse_diameter("120A") == Diameter(120.0, "A")
    assert parse_diameter("120 Å") == Diameter(120.0, "A")
    assert parse_diameter("120\u212b") == Diameter(120.0, "A")  # the Ångström sign
    assert parse_diameter("120a") == Diameter(120.0, "A")
    assert parse_diameter("45") == Diameter(45.0, "px")
    assert parse_diameter("45.5px") == Diameter(45.5, "px")
    assert parse_diameter(45) == Diameter(45.0, "px")
    for bad in ("120nm", "A", "", "12 0A"):
        with pytest.raises(CryoSegNetError, match="--diameter"):
            parse_diameter(bad)


def test_pixel_size_precedence():
    sizes = PixelSizes(by_micrograph={"a.mrc": 2.0})
    assert sizes.resolve("a.mrc", 1.0) == 2.0  # the STAR over the header
    assert sizes.resolve("b.mrc", 1.0) == 1.0  # the header
    assert sizes.resolve("b.mrc", 0.0) is None  # an MRC header's 0: unknown
    assert PixelSizes(given=4.0, by_micrograph={"a.mrc": 2.0}).resolve("a.mrc", 1.0) == 4.0
    assert sizes.uniform == 2.0 and PixelSizes().uniform is None


# ------------------------------------------------------------------ pick on a RELION STAR


def _coordinates(out: Path) -> pd.DataFrame:
    return starfile.read(out / "autopick.star", always_dict=True)["coordinate_files"]


def test_pick_reads_a_relion_star_with_its_names_and_pixel_size(tmp_path, monkeypatch, caplog):
    _project(tmp_path)
    monkeypatch.chdir(tmp_path)
    caplog.set_level("INFO", logger="cryosegnet")
    code = main(
        ["pick", CTF_STAR, "-o", "picks", "--stage", "log", "--diameter", "60A", "--no-progress"]
    )
    assert code == 0
    index = _coordinates(Path("picks"))
    pairs = dict(zip(index["rlnMicrographName"], index["rlnMicrographCoordinates"], strict=True))
    assert pairs == {
        NAMES[0]: "picks/Movies/mic_001_autopick.star",  # names as RELION's
        NAMES[1]: "picks/Movies/day2/mic_002_autopick.star",
    }
    # 60 Å at the optics group's 3 Å/px is 20 px (the MRC headers' 1 Å/px would give 60)
    assert "60 Å (given; 20.0 px at 3 Å/px)" in caplog.text
    assert "diameter 20.0 px (60 Å)" in caplog.text
    picks = starfile.read("picks/Movies/mic_001_autopick.star")
    assert len(picks) > 5 and {"rlnCoordinateX", "rlnCoordinateY"} <= set(picks.columns)
    particles = starfile.read("picks/particles.star")
    assert set(particles["rlnMicrographName"]) == set(NAMES)


def test_pick_a_relion_star_from_another_folder(tmp_path, monkeypatch):
    project = tmp_path / "project"
    _project(project)
    monkeypatch.chdir(tmp_path)
    assert (
        main(
            [
                "pick",
                f"project/{CTF_STAR}",
                "-o",
                "picks",
                "--stage",
                "log",
                "--diameter-angstrom",
                "60",
                "--no-progress",
            ]
        )
        == 0
    )
    index = _coordinates(Path("picks"))
    assert sorted(index["rlnMicrographName"]) == sorted(NAMES)  # relative to the project
    assert Path("picks/Movies/day2/mic_002_autopick.star").is_file()


def test_angstrom_diameter_from_header_angpix_and_none(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.chdir(tmp_path)
    caplog.set_level("INFO", logger="cryosegnet")
    _micrograph(Path("mics/a.mrc"), 1, pixel_size=2.0)
    assert (
        main(
            [
                "pick",
                "mics/a.mrc",
                "-o",
                "hdr",
                "--stage",
                "log",
                "--diameter",
                "40A",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "diameter 20.0 px (40 Å)" in caplog.text  # 40 Å at the header's 2 Å/px
    caplog.clear()
    assert (
        main(
            [
                "pick",
                "mics/a.mrc",
                "-o",
                "given",
                "--stage",
                "log",
                "--diameter",
                "40A",
                "--angpix",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "40.0 px at 1 Å/px" in caplog.text  # --angpix wins over the header
    # a pixel diameter is reported in Å too when the pixel size is known
    caplog.clear()
    assert (
        main(
            [
                "pick",
                "mics/a.mrc",
                "-o",
                "px",
                "--stage",
                "log",
                "--diameter",
                "20",
                "--angpix",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "20 px (given; 40 Å at 2 Å/px)" in caplog.text
    _micrograph(Path("bare/b.mrc"), 2, pixel_size=None)
    capsys.readouterr()
    assert (
        main(
            [
                "pick",
                "bare/b.mrc",
                "-o",
                "none",
                "--stage",
                "log",
                "--diameter",
                "40A",
                "--no-progress",
            ]
        )
        == 1
    )
    errors = [line for line in capsys.readouterr().err.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "needs the pixel size" in errors[0] and "--angpix" in errors[0]
    with pytest.raises(CryoSegNetError, match="not both"):
        main(
            [
                "pick",
                "mics/a.mrc",
                "-o",
                "x",
                "--diameter",
                "40A",
                "--diameter-angstrom",
                "4",
                "--debug",
            ]
        )
    assert main(["pick", "mics/a.mrc", "-o", "x", "--diameter", "40nm"]) == 1


def test_resume_with_an_angstrom_diameter_and_a_changed_pixel_size(tmp_path, monkeypatch, capsys):
    _project(tmp_path, version=None)
    monkeypatch.chdir(tmp_path)
    args = ["pick", CTF_STAR, "-o", "picks", "--stage", "log", "--diameter", "60A", "--no-progress"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0
    assert "skipped, already done: 2" in capsys.readouterr().err
    assert main([*args, "--angpix", "2"]) == 0  # another pixel size: other picks
    assert "micrographs picked: 2" in capsys.readouterr().err


# ------------------------------------------------------------------ stop between micrographs


class _Stub:
    threshold = 0.5

    def preprocess(self, image):
        return image

    def pick_denoised(self, denoised, shapes):
        return [
            PickResult(
                picks=make_picks([30.0], [30.0], 0.9, 10.0),
                diameter=10.0,
                working_shape=d.shape,
                original_shape=tuple(s),
                stage="stub",
            )
            for d, s in zip(denoised, shapes, strict=True)
        ]


def test_should_stop_is_asked_between_micrographs(tmp_path):
    mics = []
    for i in range(3):
        mics.append(tmp_path / f"m{i}.mrc")
        _micrograph(mics[-1], i)
    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 1  # after the first micrograph

    summary = pick_batch(_Stub(), mics, tmp_path / "out", progress=False, should_stop=stop)
    assert summary.interrupted and len(summary.done) == 1
    assert len(starfile.read(tmp_path / "out" / "autopick.star")) == 1


# ------------------------------------------------------------------ the External job


RELION_PREPROCESS = shutil.which("relion_preprocess")


def test_external_job_as_relion_calls_it_and_continue(tmp_path):
    _project(tmp_path, NAMES[:1])
    done = _as_relion_calls(tmp_path, "--diameter", "60A", "--stage", "log")
    assert done.returncode == 0, done.stderr[-3000:]
    job = tmp_path / "External" / "job004"
    assert (job / JOB_EXIT_SUCCESS).is_file() and not (job / JOB_EXIT_FAILURE).exists()
    nodes = starfile.read(job / OUTPUT_NODES_STAR, always_dict=True)["output_nodes"]
    assert list(nodes["rlnPipeLineNodeName"]) == ["External/job004/autopick.star"]
    assert list(nodes["rlnPipeLineNodeTypeLabel"]) == [COORDINATES_NODE_LABELS[4]]
    index = _coordinates(job)
    assert list(index["rlnMicrographName"]) == NAMES[:1]
    assert list(index["rlnMicrographCoordinates"]) == [
        "External/job004/Movies/mic_001_autopick.star"
    ]
    assert "[1/1] MotionCorr/job002/Movies/mic_001.mrc" in done.stderr

    # "Continue" after CtfFind added a micrograph: RELION runs the same command again
    _project(tmp_path, NAMES)
    again = _as_relion_calls(tmp_path, "--diameter", "60A", "--stage", "log")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "micrographs picked: 1  (skipped, already done: 1)" in again.stderr
    assert (job / JOB_EXIT_SUCCESS).is_file()
    index = _coordinates(job)
    assert sorted(index["rlnMicrographName"]) == sorted(NAMES)
    n_picks = sum(len(starfile.read(tmp_path / f)) for f in index["rlnMicrographCoordinates"])
    assert n_picks > 10

    if RELION_PREPROCESS is None:
        pytest.skip("RELION is not installed: extraction not checked")
    extract = subprocess.run(
        [
            "relion_preprocess",
            "--i",
            CTF_STAR,
            "--coord_dir",
            "External/job004/",
            "--coord_suffix",
            "_autopick.star",
            "--extract",
            "--extract_size",
            "32",
            "--part_star",
            "out.star",
            "--part_dir",
            "Extract/job005/",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert extract.returncode == 0, extract.stdout[-2000:] + extract.stderr[-2000:]
    particles = starfile.read(tmp_path / "out.star", always_dict=True)["particles"]
    assert len(particles) == n_picks
    assert sorted(set(particles["rlnMicrographName"])) == sorted(NAMES)


def test_external_job_for_relion_31_declares_the_coords_suffix_node(tmp_path, monkeypatch):
    _project(tmp_path, NAMES[:1], version=3)
    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "relion-external",
            "--o",
            "External/job004/",
            "--in_mics",
            CTF_STAR,
            "--diameter",
            "60A",
            "--stage",
            "log",
            "--j",
            "1",
        ]
    )
    assert code == 0
    nodes = starfile.read("External/job004/" + OUTPUT_NODES_STAR, always_dict=True)
    assert list(nodes["output_nodes"]["rlnPipeLineNodeName"]) == [
        "External/job004/coords_suffix_autopick.star"
    ]
    assert list(nodes["output_nodes"]["rlnPipeLineNodeType"]) == [2]
    suffix = Path("External/job004/coords_suffix_autopick.star").read_text().strip()
    assert suffix == CTF_STAR


def test_external_job_abort_and_failure_markers(tmp_path, monkeypatch, capsys):
    _project(tmp_path, NAMES[:1])
    monkeypatch.chdir(tmp_path)
    job = Path("External/job004")
    job.mkdir(parents=True)
    (job / JOB_ABORT_NOW).touch()  # the user pressed Abort
    relion = [
        "relion-external",
        "--o",
        "External/job004/",
        "--in_mics",
        CTF_STAR,
        "--stage",
        "log",
        "--j",
        "1",
    ]
    assert main([*relion, "--diameter", "60A"]) == 130
    assert sorted(p.name for p in job.iterdir() if p.name.startswith("RELION_JOB")) == [
        JOB_EXIT_ABORTED
    ]
    assert not (job / "Movies" / "mic_001_autopick.star").exists()
    # an option pick does not know: the job fails, with the marker RELION waits for
    with pytest.raises(SystemExit):
        main([*relion, "--diameter", "60A", "--no-such-option", "1"])
    assert (job / JOB_EXIT_FAILURE).is_file() and not (job / JOB_EXIT_ABORTED).exists()
    # run again once fixed: success replaces the failure marker
    assert main([*relion, "--diameter", "60A"]) == 0
    assert (job / JOB_EXIT_SUCCESS).is_file() and not (job / JOB_EXIT_FAILURE).exists()
    # a value with a blank ('120 A') reaches us as two words: failed, with the marker
    assert (
        main(
            [
                "relion-external",
                "--o",
                "External/job005/",
                "--in_mics",
                CTF_STAR,
                "--diameter",
                "120",
                "A",
                "--j",
                "1",
            ]
        )
        == 1
    )
    assert "unexpected argument 'A'" in capsys.readouterr().err
    assert (Path("External/job005") / JOB_EXIT_FAILURE).is_file()
    assert main(["relion-external", "--o", "External/job006/", "--diameter", "60A"]) == 1
    assert "Input micrographs" in capsys.readouterr().err
    assert (Path("External/job006") / JOB_EXIT_FAILURE).is_file()

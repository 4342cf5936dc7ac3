# ruff: noqa: E501  (STAR lines as RELION writes them, unwrapped)
"""io.relion: a fake RELION project tree as RELION writes it, read and written back."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import starfile

from cryosegnet.io.relion import (
    COORDINATES_NODE_LABELS,
    JOB_ABORT_NOW,
    JOB_EXIT_ABORTED,
    JOB_EXIT_FAILURE,
    JOB_EXIT_SUCCESS,
    RelionError,
    abort_requested,
    coordinate_file,
    detect_relion_version,
    find_project_dir,
    mark_job_finished,
    parse_external_job_args,
    read_micrographs_star,
    write_coordinates_node,
)

# As RELION 4's CtfFind writes it (two optics groups, one binned by 2 in MotionCorr).
CTF_STAR_31 = """
# version 30001

data_optics

loop_
_rlnOpticsGroupName #1
_rlnOpticsGroup #2
_rlnMicrographOriginalPixelSize #3
_rlnVoltage #4
_rlnSphericalAberration #5
_rlnAmplitudeContrast #6
_rlnMicrographPixelSize #7
opticsGroup1            1     0.885000   200.000000     1.400000     0.100000     0.885000
opticsGroup2            2     0.885000   200.000000     1.400000     0.100000     1.770000


# version 30001

data_micrographs

loop_
_rlnMicrographName #1
_rlnMicrographMetadata #2
_rlnOpticsGroup #3
_rlnCtfImage #4
_rlnDefocusU #5
_rlnDefocusV #6
_rlnCtfAstigmatism #7
_rlnDefocusAngle #8
_rlnCtfFigureOfMerit #9
_rlnCtfMaxResolution #10
MotionCorr/job002/Movies/20170629_00021_frameImage.mrc MotionCorr/job002/Movies/20170629_00021_frameImage.star            1 CtfFind/job003/Movies/20170629_00021_frameImage.ctf:mrc 10864.146484 10575.793945   288.352539    77.995003     0.131144     4.809192
MotionCorr/job002/Movies/20170629_00022_frameImage.mrc MotionCorr/job002/Movies/20170629_00022_frameImage.star            1 CtfFind/job003/Movies/20170629_00022_frameImage.ctf:mrc 10145.253906 9832.011719   313.242188    78.144928     0.154212     3.922308
MotionCorr/job002/Movies/day2/20170630_00001_frameImage.mrc MotionCorr/job002/Movies/day2/20170630_00001_frameImage.star            2 CtfFind/job003/Movies/day2/20170630_00001_frameImage.ctf:mrc 9838.166016 9596.611328   241.554688    80.101021     0.141133     3.990000

"""

# RELION 3.0: one table, pixel size from the detector pixel (µm) and the magnification.
CTF_STAR_30 = """
data_

loop_
_rlnMicrographName #1
_rlnCtfImage #2
_rlnDefocusU #3
_rlnDefocusV #4
_rlnDefocusAngle #5
_rlnVoltage #6
_rlnSphericalAberration #7
_rlnAmplitudeContrast #8
_rlnMagnification #9
_rlnDetectorPixelSize #10
_rlnCtfFigureOfMerit #11
MotionCorr/job002/Movies/mic_001.mrc CtfFind/job003/Movies/mic_001.ctf:mrc 10864.1 10575.7 77.9 300.0 2.7 0.1 100000.0 14.0 0.13
MotionCorr/job002/Movies/mic_002.mrc CtfFind/job003/Movies/mic_002.ctf:mrc 10145.2 9832.0 78.1 300.0 2.7 0.1 100000.0 14.0 0.15
"""

PIPELINE_4 = """
# version 30001

data_pipeline_general

_rlnPipeLineJobCounter                       4


# version 30001

data_pipeline_processes

loop_
_rlnPipeLineProcessName #1
_rlnPipeLineProcessAlias #2
_rlnPipeLineProcessTypeLabel #3
_rlnPipeLineProcessStatusLabel #4
MotionCorr/job002/       None relion.motioncorr.own  Succeeded
CtfFind/job003/       None relion.ctffind.ctffind4  Succeeded


# version 30001

data_pipeline_nodes

loop_
_rlnPipeLineNodeName #1
_rlnPipeLineNodeTypeLabel #2
_rlnPipeLineNodeTypeLabelDepth #3
MotionCorr/job002/corrected_micrographs.star MicrographsData.star.relion.motioncorr            1
CtfFind/job003/micrographs_ctf.star MicrographsData.star.relion.ctf            1
"""


def _as_relion_writes(text: str) -> str:
    """RELION ends 'loop_' and label lines with a blank (kept out of the source for the linter)."""
    return re.sub(r"^(loop_|_rln\S+ #\d+)$", r"\1 ", text, flags=re.M)


def _project(root: Path, ctf_star: str = CTF_STAR_31, pipeline: str | None = PIPELINE_4):
    ctf_star = _as_relion_writes(ctf_star)
    ctf = root / "CtfFind" / "job003" / "micrographs_ctf.star"
    ctf.parent.mkdir(parents=True)
    ctf.write_text(ctf_star)
    names = [line.split()[0] for line in ctf_star.splitlines() if line.startswith("MotionCorr/")]
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    if pipeline:
        (root / "default_pipeline.star").write_text(_as_relion_writes(pipeline))
    return ctf, names


def test_read_relion4_micrographs_star_with_optics(tmp_path, monkeypatch):
    ctf, names = _project(tmp_path)
    monkeypatch.chdir(tmp_path / "CtfFind")  # not the project folder: found from the tree
    mics = read_micrographs_star(ctf)
    assert mics.project_dir == tmp_path
    assert [m.name for m in mics.micrographs] == names
    assert all(m.path.is_file() for m in mics.micrographs)
    assert [m.pixel_size for m in mics.micrographs] == [0.885, 0.885, 1.77]
    assert [m.optics_group for m in mics.micrographs] == [1, 1, 2]
    assert mics.pixel_size is None  # two groups, two sizes
    assert detect_relion_version(tmp_path) == 4


def test_read_relion30_star_without_optics(tmp_path, monkeypatch):
    ctf, names = _project(tmp_path, CTF_STAR_30, pipeline=None)
    monkeypatch.chdir(tmp_path)
    mics = read_micrographs_star(Path("CtfFind/job003/micrographs_ctf.star"))
    assert mics.pixel_size == pytest.approx(1.4)  # 14 µm detector pixel / 100 000x
    assert [m.path.resolve() for m in mics.micrographs] == [(tmp_path / n).resolve() for n in names]


def test_corrected_micrographs_star_and_project_dir_rules(tmp_path):
    star = tmp_path / "MotionCorr" / "job002" / "corrected_micrographs.star"
    star.parent.mkdir(parents=True)
    starfile.write(
        {
            "optics": pd.DataFrame(
                {
                    "rlnOpticsGroup": [1],
                    "rlnMicrographOriginalPixelSize": [0.5],
                    "rlnMicrographPixelSize": [1.0],
                }
            ),
            "micrographs": pd.DataFrame(
                {"rlnMicrographName": ["MotionCorr/job002/Movies/a.mrc"], "rlnOpticsGroup": [1]}
            ),
        },
        star,
    )
    assert find_project_dir(star) == tmp_path  # no default_pipeline.star: jobNNN rule
    mics = read_micrographs_star(star)
    assert mics.pixel_size == 1.0 and mics.paths == [tmp_path / "MotionCorr/job002/Movies/a.mrc"]
    with pytest.raises(RelionError, match="no such file"):
        read_micrographs_star(tmp_path / "missing.star")
    bad = tmp_path / "coords.star"
    starfile.write({"": pd.DataFrame({"rlnCoordinateX": [1.0], "rlnCoordinateY": [2.0]})}, bad)
    with pytest.raises(RelionError, match="_rlnMicrographName"):
        read_micrographs_star(bad)


def test_coordinate_file_follows_relion_layout():
    assert coordinate_file("External/job004", "MotionCorr/job002/Movies/day2/a.mrc") == Path(
        "External/job004/Movies/day2/a_autopick.star"
    )
    assert coordinate_file("out", "Micrographs/b.tiff") == Path("out/Micrographs/b_autopick.star")
    assert coordinate_file("o", "/data/p/MotionCorr/job012/Movies/c.mrc", "cryosegnet") == Path(
        "o/Movies/c_cryosegnet.star"
    )


@pytest.mark.parametrize("version", [4, 5])
def test_output_nodes_for_relion_4_and_5(tmp_path, monkeypatch, version):
    monkeypatch.chdir(tmp_path)
    job = Path("External/job004/")
    path = write_coordinates_node(job, relion_version=version)
    assert path == job / "RELION_OUTPUT_NODES.star"
    nodes = starfile.read(path, always_dict=True)["output_nodes"]
    assert list(nodes.columns) == ["rlnPipeLineNodeName", "rlnPipeLineNodeTypeLabel"]
    assert list(nodes["rlnPipeLineNodeName"]) == ["External/job004/autopick.star"]
    assert list(nodes["rlnPipeLineNodeTypeLabel"]) == [COORDINATES_NODE_LABELS[version]]
    assert path.read_text().startswith("# version 50001" if version == 5 else "# version 30001")
    # an absolute job folder is named relative to the project folder
    write_coordinates_node(tmp_path / job, relion_version=version, project_dir=tmp_path)
    nodes = starfile.read(path, always_dict=True)["output_nodes"]
    assert list(nodes["rlnPipeLineNodeName"]) == ["External/job004/autopick.star"]


def test_output_nodes_for_relion_31(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_coordinates_node(
        "External/job004", relion_version=3, micrographs_star="CtfFind/job003/micrographs_ctf.star"
    )
    nodes = starfile.read(path, always_dict=True)["output_nodes"]
    assert list(nodes["rlnPipeLineNodeName"]) == ["External/job004/coords_suffix_autopick.star"]
    assert list(nodes["rlnPipeLineNodeType"]) == [2]
    suffix_file = tmp_path / "External/job004/coords_suffix_autopick.star"
    assert suffix_file.read_text().strip() == "CtfFind/job003/micrographs_ctf.star"
    with pytest.raises(RelionError, match="micrographs STAR"):
        write_coordinates_node("External/job005", relion_version=3)


def test_exit_markers(tmp_path):
    job = tmp_path / "External" / "job004"
    assert mark_job_finished(job, success=False).name == JOB_EXIT_FAILURE
    assert mark_job_finished(job, success=True).name == JOB_EXIT_SUCCESS
    assert not (job / JOB_EXIT_FAILURE).exists()  # one marker at a time
    (job / JOB_ABORT_NOW).touch()
    assert abort_requested(job)
    assert mark_job_finished(job, success=False, aborted=True).name == JOB_EXIT_ABORTED
    assert not abort_requested(job) and not (job / JOB_EXIT_SUCCESS).exists()
    assert sorted(p.name for p in job.iterdir()) == [JOB_EXIT_ABORTED]


def test_parse_external_job_args_as_relion_calls():
    args = parse_external_job_args(
        [
            "--o",
            "External/job004/",
            "--in_mics",
            "CtfFind/job003/micrographs_ctf.star",
            "--j",
            "8",
            "--pipeline_control",
            "External/job004/",
            "--diameter",
            "120A",
            "--threshold",
            "-0.5",
            "--model=ft/best.pt",
        ]
    )
    assert args.output == Path("External/job004")
    assert args.in_mics == "CtfFind/job003/micrographs_ctf.star" and args.threads == 8
    assert args.params == {"diameter": "120A", "threshold": "-0.5", "model": "ft/best.pt"}
    with pytest.raises(RelionError, match="--o"):
        parse_external_job_args(["--in_mics", "a.star"])
    with pytest.raises(RelionError, match="no value"):
        parse_external_job_args(["--o", "x/", "--in_mics"])
    with pytest.raises(RelionError, match="whole number"):
        parse_external_job_args(["--o", "x/", "--j", "many"])

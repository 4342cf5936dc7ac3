"""Reading other pickers' coordinate files, written here the way those tools write them."""

from __future__ import annotations

import numpy as np
import pytest

from cryosegnet.evaluation.metrics import evaluate_picks
from cryosegnet.evaluation.pairing import load_coordinate_sets
from cryosegnet.io.coordinates import read_coordinates

LABELS_CSV = "X-Coordinate,Y-Coordinate,Diameter\n100,200,64\n300,400,64\n"


def test_topaz_multi_micrograph_file_keeps_dotted_names(tmp_path):
    path = tmp_path / "predicted_particles_all.txt"
    path.write_text(
        "image_name\tx_coord\ty_coord\tscore\n"
        "May08_03.13.02.bin\t100\t200\t3.5\n"
        "May08_03.13.02.bin\t300\t400\t-1.2\n"
        "May08_07.10.35.bin\t10\t20\t0.5\n"
    )
    sets = load_coordinate_sets(path)
    assert sorted(sets) == ["May08_03.13.02.bin", "May08_07.10.35.bin"]
    first = sets["May08_03.13.02.bin"]
    assert first["x"].tolist() == [100, 300]
    assert first["score"].tolist() == [3.5, -1.2]  # Topaz log-likelihood scores, unbounded
    assert "micrograph" not in first.columns


def test_topaz_names_with_extensions(tmp_path):
    path = tmp_path / "picks.tsv"
    path.write_text("image_name\tx_coord\ty_coord\tscore\nmics/mic_01.mrc\t5\t6\t1\n")
    assert list(load_coordinate_sets(path)) == ["mic_01"]


CBOX_18 = """
data_global

_version 1.8.0

data_cryolo

loop_
_CoordinateX #1
_CoordinateY #2
_CoordinateZ #3
_Width #4
_Height #5
_Depth #6
_EstWidth #7
_EstHeight #8
_Confidence #9
_NumBoxes #10
_Angle #11
68.0 168.0 <NA> 64.0 64.0 <NA> 60.0 60.0 0.91 <NA> <NA>
268.0 368.0 <NA> 64.0 64.0 <NA> <NA> <NA> 0.42 <NA> <NA>
"""


def test_cryolo_cbox_star(tmp_path):
    path = tmp_path / "mic_01.cbox"
    path.write_text(CBOX_18)
    picks = read_coordinates(path)
    assert picks["x"].tolist() == [100, 300]  # corner + width / 2
    assert picks["y"].tolist() == [200, 400]
    assert picks["score"].tolist() == pytest.approx([0.91, 0.42])
    assert picks["diameter"].tolist() == [60.0, 64.0]  # estimated width, else box width


def test_cryolo_cbox_old_whitespace_format(tmp_path):
    path = tmp_path / "mic_01.cbox"
    path.write_text("68\t168\t64\t64\t0.91\n268\t368\t64\t64\t0.42\n")
    picks = read_coordinates(path)
    assert picks["x"].tolist() == [100, 300]
    assert picks["score"].tolist() == pytest.approx([0.91, 0.42])


def test_cryolo_eman_box(tmp_path):
    path = tmp_path / "mic_01.box"
    path.write_text("68\t168\t64\t64\n268\t368\t64\t64\n")
    picks = read_coordinates(path)
    assert picks["x"].tolist() == [100, 300]
    assert picks["y"].tolist() == [200, 400]
    assert picks["diameter"].tolist() == [64, 64]


def test_relion_autopick_star(tmp_path):
    path = tmp_path / "mic_01_autopick.star"
    path.write_text(
        "\n# version 30001\n\ndata_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n"
        "_rlnClassNumber #3\n_rlnAutopickFigureOfMerit #4\n_rlnAnglePsi #5\n"
        "  100.000000   200.000000            0     1.234000     0.000000\n"
        "  300.000000   400.000000            0     0.500000     0.000000\n"
    )
    sets = load_coordinate_sets(path)
    assert list(sets) == ["mic_01"]
    assert sets["mic_01"]["score"].tolist() == pytest.approx([1.234, 0.5])


def test_relion31_particles_star_with_optics_splits_by_micrograph(tmp_path):
    path = tmp_path / "particles.star"
    path.write_text(
        "\n# version 30001\n\ndata_optics\n\nloop_\n_rlnOpticsGroupName #1\n_rlnOpticsGroup #2\n"
        "_rlnImagePixelSize #3\nopticsGroup1 1 1.0\n\n# version 30001\n\ndata_particles\n\n"
        "loop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnMicrographName #3\n"
        "_rlnOpticsGroup #4\n"
        "100.0 200.0 MotionCorr/job002/Movies/mic_01.bin.mrc 1\n"
        "300.0 400.0 MotionCorr/job002/Movies/mic_01.bin.mrc 1\n"
        "50.0 60.0 MotionCorr/job002/Movies/mic_02.bin.mrc 1\n"
    )
    sets = load_coordinate_sets(path)
    assert sorted(sets) == ["mic_01.bin", "mic_02.bin"]
    assert len(sets["mic_01.bin"]) == 2


def test_cryosparc_exported_star(tmp_path):
    # csparc2star / CryoSPARC "Export": one block, micrograph paths with a UID prefix.
    path = tmp_path / "cryosparc_P1_J5_particles.star"
    path.write_text(
        "data_particles\n\nloop_\n_rlnMicrographName\n_rlnCoordinateX\n_rlnCoordinateY\n"
        "J2/motioncorrected/015_mic_01.mrc 100.0 200.0\n"
        "J2/motioncorrected/015_mic_01.mrc 300.0 400.0\n"
    )
    sets = load_coordinate_sets(path)
    assert list(sets) == ["015_mic_01"]
    assert sets["015_mic_01"]["score"].tolist() == [1.0, 1.0]


def test_empty_relion_star(tmp_path):
    path = tmp_path / "mic_01.star"
    path.write_text("data_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n")
    assert len(read_coordinates(path)) == 0


@pytest.mark.parametrize("fmt", ["star", "cbox", "box", "topaz", "csv"])
def test_evaluate_reads_each_format(tmp_path, fmt):
    labels = tmp_path / "labels"
    picks_dir = tmp_path / "picks"
    labels.mkdir()
    picks_dir.mkdir()
    (labels / "mic_01.csv").write_text(LABELS_CSV)
    if fmt == "star":
        (picks_dir / "mic_01_autopick.star").write_text(
            "data_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n"
            "_rlnAutopickFigureOfMerit #3\n101 199 0.9\n600 600 0.1\n"
        )
    elif fmt == "cbox":
        (picks_dir / "mic_01.cbox").write_text(CBOX_18.replace("268.0 368.0", "568.0 568.0"))
    elif fmt == "box":
        (picks_dir / "mic_01.box").write_text("68\t168\t64\t64\n568\t568\t64\t64\n")
    elif fmt == "topaz":
        (picks_dir / "topaz.txt").write_text(
            "image_name\tx_coord\ty_coord\tscore\nmic_01\t100\t200\t2.0\nmic_01\t600\t600\t-3\n"
        )
    else:
        (picks_dir / "mic_01.csv").write_text(
            "X-Coordinate,Y-Coordinate,Diameter\n100,200,64\n600,600,64\n"
        )
    result = evaluate_picks(load_coordinate_sets(picks_dir), load_coordinate_sets(labels))
    pooled = result.pooled
    assert (pooled["tp"], pooled["fp"], pooled["fn"]) == (1, 1, 1)
    assert result.per_micrograph[0].radius == pytest.approx(32.0)
    assert np.isfinite(pooled["auprc"])

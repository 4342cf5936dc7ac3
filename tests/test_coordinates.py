from __future__ import annotations

import numpy as np
import pandas as pd
import starfile

from cryosegnet.io.atomic import atomic_write
from cryosegnet.io.coordinates import (
    make_picks,
    read_coordinates,
    read_index_star,
    write_box,
    write_combined_star,
    write_coordinate_star,
    write_cryoppp_csv,
    write_index_star,
)

PICKS = make_picks([10.5, 200.0, 33.25], [20.0, 5.5, 400.0], [0.9, 0.5, 0.99], 64.0)


def test_coordinate_star_has_relion_fields_and_round_trips(tmp_path):
    path = tmp_path / "mic.star"
    write_coordinate_star(path, PICKS)
    text = path.read_text()
    for field in ("_rlnCoordinateX", "_rlnCoordinateY", "_rlnAutopickFigureOfMerit"):
        assert field in text
    back = read_coordinates(path)
    np.testing.assert_allclose(back[["x", "y", "score"]], PICKS[["x", "y", "score"]])


def test_index_star_is_a_relion_coordinate_list(tmp_path):
    path = tmp_path / "autopick.star"
    write_index_star(
        path, [("Micrographs/a.mrc", "picks/a.star"), ("Micrographs/b.mrc", "picks/b.star")]
    )
    blocks = starfile.read(path, always_dict=True)
    table = blocks["coordinate_files"]
    assert list(table.columns) == ["rlnMicrographName", "rlnMicrographCoordinates"]
    assert table["rlnMicrographCoordinates"].tolist() == ["picks/a.star", "picks/b.star"]


def test_index_star_reads_back_the_rows_written(tmp_path):
    entries = [("Micrographs/a.mrc", "picks/a.star"), ("Micrographs/b b.mrc", "picks/b b.star")]
    write_index_star(tmp_path / "autopick.star", entries)
    assert read_index_star(tmp_path / "autopick.star") == entries


def test_combined_star_names_micrographs(tmp_path):
    path = tmp_path / "particles.star"
    write_combined_star(path, {"a.mrc": PICKS, "b.mrc": PICKS.iloc[:1]})
    back = read_coordinates(path)
    assert back["micrograph"].tolist() == ["a", "a", "a", "b"]
    empty = tmp_path / "empty.star"
    write_combined_star(empty, {})
    assert len(read_coordinates(empty)) == 0


def test_cryoppp_csv_and_box_round_trip(tmp_path):
    write_cryoppp_csv(tmp_path / "m.csv", PICKS)
    assert (tmp_path / "m.csv").read_text().splitlines()[0] == "X-Coordinate,Y-Coordinate,Diameter"
    back = read_coordinates(tmp_path / "m.csv")
    np.testing.assert_allclose(back["x"], PICKS["x"].round(), atol=0.5)
    assert (back["diameter"] == 64).all()
    write_box(tmp_path / "m.box", PICKS, box_size=64)
    back = read_coordinates(tmp_path / "m.box")
    np.testing.assert_allclose(back[["x", "y"]], PICKS[["x", "y"]], atol=1.0)


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "keep.txt"
    path.write_text("old")
    try:
        with atomic_write(path) as handle:
            handle.write("half")
            raise RuntimeError("disk full")
    except RuntimeError:
        pass
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_empty_picks_write_valid_star(tmp_path):
    path = tmp_path / "none.star"
    write_coordinate_star(path, make_picks([], []))
    assert len(read_coordinates(path)) == 0
    assert isinstance(read_coordinates(path), pd.DataFrame)

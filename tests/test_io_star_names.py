"""Micrograph names in STAR files: any name round-trips, names starfile or RELION would
misread are quoted, a line break is refused, and a truncated STAR file is not a result."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import starfile
from batch_helpers import StubPicker
from batch_helpers import index_of as _index
from batch_helpers import run_batch as _run
from batch_helpers import small_mrc as _mrc
from hypothesis import given, settings
from hypothesis import strategies as st

from cryosegnet.io.coordinates import (
    StarNameError,
    make_picks,
    parse_star,
    read_coordinates,
    star_text,
    write_combined_star,
)
from cryosegnet.io.layout import COMBINED_STAR

_NAME = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs",),
        blacklist_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029",
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(names=st.lists(_NAME, min_size=1, max_size=4, unique=True))
def test_star_names_round_trip(names):
    table = pd.DataFrame(
        {"rlnMicrographName": names, "rlnCoordinateX": range(len(names))}, dtype=object
    )
    try:
        text = star_text({"particles": table})
    except StarNameError:
        # only a name with both quote characters each followed by whitespace is refused
        assert any(("' " in n or "'\t" in n) and ('" ' in n or '"\t' in n) for n in names)
        return
    back = parse_star(text)["particles"]
    assert [str(v) for v in back["rlnMicrographName"]] == names


def test_names_starfile_and_relion_misread_are_quoted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names = [
        "#hash.mrc",
        "_under.mrc",
        "data_x.mrc",
        "loop_.mrc",
        "in#side.mrc",
        "a b.mrc",
    ]
    mics = [_mrc(Path("n") / name, (-1) ** i) for i, name in enumerate(names)]
    summary = _run(StubPicker(), mics, "out")
    assert summary.failures == {} and summary.index_failure is None
    combined = read_coordinates(Path("out") / COMBINED_STAR)
    assert len(combined) == 2 * len(names)  # none read back as a comment
    assert sorted(_index(Path("out"))["rlnMicrographName"]) == sorted(f"n/{n}" for n in names)
    # starfile agrees (names with quote characters, which it misreads, are refused)
    table = starfile.read(Path("out") / COMBINED_STAR)
    assert sorted(set(table["rlnMicrographName"])) == sorted(f"n/{n}" for n in names)


def test_line_break_in_a_name_is_refused_with_the_name(tmp_path):
    with pytest.raises(StarNameError, match="line break"):
        write_combined_star(tmp_path / "p.star", {"a\nb.mrc": make_picks([1], [2])})
    assert list(tmp_path.iterdir()) == []
    good, odd = _mrc(tmp_path / "in" / "good.mrc"), _mrc(tmp_path / "in" / "a\nb.mrc", -1)
    summary = _run(StubPicker(), [good, odd], tmp_path / "out")
    assert list(summary.failures) == [str(odd)] and "line break" in summary.failures[str(odd)]
    assert summary.index_failure is None and summary.index_entries == 1


def test_truncated_star_is_not_done(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mic = _mrc(Path("m/mic.mrc"))
    _run(StubPicker(), [mic], "out")
    star = Path("out/m/mic_autopick.star")
    text = star.read_text()
    cut = text.index("0.9 0\n") + 2  # mid-row: the figure of merit is there, the class is not
    star.write_text(text[:cut])
    picker = StubPicker()
    again = _run(picker, [mic], "out")
    assert picker.calls == 1 and again.skipped == []
    assert len(read_coordinates(Path("out") / COMBINED_STAR)) == 2
    combined = read_coordinates(Path("out") / COMBINED_STAR)
    assert not combined[["x", "y", "score"]].isna().any().any()

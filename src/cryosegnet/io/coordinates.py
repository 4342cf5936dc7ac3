"""Particle coordinate files: RELION/CryoSPARC STAR, CryoPPP CSV, EMAN box, Topaz tsv, crYOLO cbox.

Every reader returns the same table, a :class:`pandas.DataFrame` with columns
``x, y, score, diameter`` (and ``micrograph`` when one file holds several micrographs).
Coordinates are particle centres in pixels of the micrograph as read: x = column, y = row.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from cryosegnet.errors import CoordinateFileError, first_line
from cryosegnet.io.atomic import atomic_write, write_texts_together
from cryosegnet.io.micrographs import MICROGRAPH_SUFFIXES

PICK_COLUMNS = ["x", "y", "score", "diameter"]
COORDINATE_SUFFIXES = (".star", ".csv", ".box", ".txt", ".tsv", ".cbox")


def empty_picks() -> pd.DataFrame:
    """A picks table with no rows but the right columns and dtypes."""
    return pd.DataFrame({c: pd.Series(dtype=np.float64) for c in PICK_COLUMNS})


def make_picks(x, y, score=None, diameter=None) -> pd.DataFrame:
    """Build a picks table; ``score`` defaults to 1 and ``diameter`` to NaN (unknown)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    n = len(x)
    score = np.ones(n) if score is None else np.broadcast_to(np.asarray(score, float), (n,))
    diameter = (
        np.full(n, np.nan)
        if diameter is None
        else np.broadcast_to(np.asarray(diameter, float), (n,))
    )
    return pd.DataFrame({"x": x, "y": y, "score": score, "diameter": diameter})


# --------------------------------------------------------------------------- writers


def write_coordinate_star(
    path: str | os.PathLike, picks: pd.DataFrame, manifest: dict | None = None
) -> None:
    """RELION coordinate STAR for one micrograph (what RELION's autopick writes).

    ``manifest`` (what produced the picks) is kept as one JSON comment line in the header.
    """
    table = pd.DataFrame(
        {
            "rlnCoordinateX": picks["x"].to_numpy(float).round(2),
            "rlnCoordinateY": picks["y"].to_numpy(float).round(2),
            "rlnAutopickFigureOfMerit": picks["score"].to_numpy(float).round(5),
            "rlnClassNumber": np.zeros(len(picks), dtype=int),
        }
    )
    comments = [MANIFEST_PREFIX + json.dumps(manifest, sort_keys=True)] if manifest else []
    write_star(path, {"": table}, comments=comments)


def write_index_star(path: str | os.PathLike, entries: list[tuple[str, str]]) -> None:
    """RELION 4/5 coordinate list: one row per micrograph naming its coordinate file."""
    write_star_texts({path: index_star_text(entries)})


def index_star_text(entries: list[tuple[str, str]]) -> str:
    """The text :func:`write_index_star` writes: (micrograph name, coordinate file) rows."""
    table = pd.DataFrame(
        {
            "rlnMicrographName": [m for m, _ in entries],
            "rlnMicrographCoordinates": [c for _, c in entries],
        },
        dtype=object,
    )
    return star_text({"coordinate_files": table})


def read_index_star(path: str | os.PathLike) -> list[tuple[str, str]]:
    """The (micrograph name, coordinate file) rows of a RELION coordinate list.

    The reverse of :func:`write_index_star`. The coordinate paths are returned as written
    (relative to the RELION project folder, as RELION writes them): where to look for them
    depends on the reader.

    Parameters
    ----------
    path : str or os.PathLike
        An ``autopick.star``-style STAR file (``_rlnMicrographName``,
        ``_rlnMicrographCoordinates``).

    Returns
    -------
    list of (str, str)
        One entry per row of every table that has a ``_rlnMicrographCoordinates`` column.
    """
    entries: list[tuple[str, str]] = []
    for block in read_star_blocks(path).values():
        if not isinstance(block, pd.DataFrame) or "rlnMicrographCoordinates" not in block:
            continue
        entries.extend(
            zip(
                block["rlnMicrographName"].astype(str),
                block["rlnMicrographCoordinates"].astype(str),
                strict=True,
            )
        )
    return entries


def write_combined_star(
    path: str | os.PathLike, picks_by_micrograph: dict[str, pd.DataFrame]
) -> None:
    """One STAR with every particle and its ``rlnMicrographName`` (CryoSPARC 'Import Particles')."""
    write_star_texts({path: combined_star_text(picks_by_micrograph)})


def combined_star_text(picks_by_micrograph: dict[str, pd.DataFrame]) -> str:
    """The text :func:`write_combined_star` writes: every particle, by micrograph name."""
    frames = []
    for name, picks in picks_by_micrograph.items():
        frames.append(
            pd.DataFrame(
                {
                    "rlnMicrographName": name,
                    "rlnCoordinateX": picks["x"].to_numpy(float).round(2),
                    "rlnCoordinateY": picks["y"].to_numpy(float).round(2),
                    "rlnAutopickFigureOfMerit": picks["score"].to_numpy(float).round(5),
                }
            )
        )
    columns = ["rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY", "rlnAutopickFigureOfMerit"]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return star_text({"particles": table})


def write_star_texts(texts: dict) -> None:
    """Write STAR texts (path -> text) so that every file is replaced, or none.

    A full disk leaves them all as they were: files that must agree never disagree.
    """
    write_texts_together(texts)


# --------------------------------------------------------------------------- STAR grammar
#
# STAR (Hall 1991; RELION's MetaDataTable reader follows it): tokens are separated by
# whitespace; '#' outside a quoted string starts a comment; a value starting with '_', '#',
# a quote, ';', '$', '[' or ']', or one spelling a reserved word (data_..., loop_, save_,
# global_, stop_), or holding whitespace, must be quoted. A quoted string ends at the first
# matching quote that is followed by whitespace or the end of the line, so a quote character
# may appear inside as long as whitespace does not follow it. Line breaks cannot be quoted
# in a single-line value, and such names are refused.

STAR_MARK = "# written by cryosegnet"
MANIFEST_PREFIX = "cryosegnet-manifest "
_END_PREFIX = "# cryosegnet: end of data_"
_RESERVED = ("data_", "loop_", "save_", "global_", "stop_")


class StarNameError(CoordinateFileError):
    """A value (micrograph name) that cannot be written as one STAR token."""


def quote_star(value: str) -> str:
    """``value`` as one STAR token, quoted only when the grammar needs it."""
    value = str(value)
    if "\n" in value or "\r" in value:
        raise StarNameError(
            value.encode("unicode_escape").decode(),
            "a line break in a name cannot be written to a STAR file",
        )
    needs = (
        value == ""
        or value[0] in "_#'\";$[]"
        or "#" in value  # the grammar allows it inside a token; RELION and starfile do not
        or value.lower().startswith(_RESERVED)
        or any(c.isspace() for c in value)
    )
    if not needs and _looks_numeric(value):
        needs = True  # a name such as "001" must stay a string when read back
    if not needs:
        return value
    for quote in ('"', "'"):
        if not any(value[i] == quote and value[i + 1].isspace() for i in range(len(value) - 1)):
            return f"{quote}{value}{quote}"
    raise StarNameError(
        value, "holds both quote characters followed by spaces; it cannot be quoted in a STAR file"
    )


def check_micrograph_name(name: str) -> None:
    """Refuse a micrograph name the index STAR files cannot carry for every reader.

    The STAR grammar can quote most names (:func:`quote_star`), but starfile (CryoSPARC's and
    many scripts' reader) cannot read a quote character inside a name back: a ``"`` breaks its
    table, a ``'`` comes back as ``"``.

    Parameters
    ----------
    name : str
        The name the index files would list.

    Raises
    ------
    StarNameError
        The name holds a quote character or a line break.
    """
    quote_star(name)  # line breaks, and names no quoting can hold
    quotes = sorted({c for c in str(name) if c in "\"'"})
    if quotes:
        raise StarNameError(
            str(name),
            f"a quote character ({' '.join(quotes)}) in a micrograph name is misread by STAR "
            "readers (starfile); rename the micrograph",
        )


def _looks_numeric(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return value.strip().lower() in ("<na>",)
    return True


def _format_value(value) -> str:
    if isinstance(value, bool | np.bool_):
        return str(int(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        value = float(value)
        return repr(value) if np.isfinite(value) else str(value)
    return quote_star(value)


def star_text(blocks: dict[str, pd.DataFrame], comments: list[str] | tuple = ()) -> str:
    """STAR text for loop tables, marked as written by cryosegnet.

    Each block is closed by an end line, so a copy cut short anywhere is recognisable as
    incomplete.
    """
    from cryosegnet import __version__

    lines = [f"{STAR_MARK} {__version__}"] + [f"# {c}" for c in comments] + [""]
    for name, table in blocks.items():
        lines += [f"data_{name}", "", "loop_"]
        lines += [f"_{column} #{i + 1}" for i, column in enumerate(table.columns)]
        columns = [table[c].tolist() for c in table.columns]
        for row in zip(*columns):
            lines.append(" ".join(_format_value(v) for v in row))
        # The blank line ends the loop for RELION 3.1, which reads a comment in a loop as a row.
        lines += ["", f"{_END_PREFIX}{name}: {len(table)} rows", ""]
    return "\n".join(lines) + "\n"


def write_star(
    path: str | os.PathLike, blocks: dict[str, pd.DataFrame], comments: list[str] | tuple = ()
) -> None:
    """Write loop tables atomically (names quoted per the STAR grammar, or refused)."""
    text = star_text(blocks, comments)  # before opening: a refused name leaves no temp file
    with atomic_write(path, encoding="utf-8") as handle:
        handle.write(text)


def _star_tokens(line: str) -> list[tuple[str, bool]]:
    """(token, was quoted) for one line; a comment ends the line."""
    tokens: list[tuple[str, bool]] = []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c.isspace():
            i += 1
        elif c == "#":
            break
        elif c in "'\"":
            j = i + 1
            while True:
                k = line.find(c, j)
                if k == -1:
                    raise ValueError(f"unterminated quoted string: {line[i : i + 40]}")
                if k + 1 == n or line[k + 1].isspace():
                    break
                j = k + 1
            tokens.append((line[i + 1 : k], True))
            i = k + 1
        else:
            j = i
            while j < n and not line[j].isspace():
                j += 1
            tokens.append((line[i:j], False))
            i = j
    return tokens


def parse_star(text: str) -> dict[str, pd.DataFrame | dict]:
    """Parse STAR text into {block name: loop table or {key: value}}.

    Strict: a loop whose values do not fill whole rows (a file cut short) raises
    ``ValueError``.
    """
    tokens: list[tuple[str, bool]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(";"):  # multi-line text field
            field = [line[1:]]
            i += 1
            while i < len(lines) and not lines[i].startswith(";"):
                field.append(lines[i])
                i += 1
            tokens.append(("\n".join(field), True))
        else:
            tokens += _star_tokens(line)
        i += 1
    blocks: dict[str, pd.DataFrame | dict] = {}
    name: str | None = None
    pos = 0

    def keyword(token: tuple[str, bool]) -> bool:
        return not token[1] and (token[0].startswith("_") or token[0].lower().startswith(_RESERVED))

    while pos < len(tokens):
        value, quoted = tokens[pos]
        low = value.lower()
        if not quoted and low.startswith("data_"):
            name = value[5:]
            blocks[name] = {}
            pos += 1
        elif not quoted and low == "loop_":
            if name is None:
                raise ValueError("loop_ outside a data_ block")
            pos += 1
            columns = []
            while pos < len(tokens) and not tokens[pos][1] and tokens[pos][0].startswith("_"):
                columns.append(tokens[pos][0][1:])
                pos += 1
            values = []
            while pos < len(tokens) and not keyword(tokens[pos]):
                values.append(tokens[pos])
                pos += 1
            if not columns:
                raise ValueError(f"data_{name}: loop_ without column names")
            if len(values) % len(columns):
                raise ValueError(
                    f"data_{name}: {len(values)} values do not fill rows of {len(columns)} "
                    "columns (file cut short?)"
                )
            rows = [values[k : k + len(columns)] for k in range(0, len(values), len(columns))]
            table = {}
            for c, column in enumerate(columns):
                cells = [row[c] for row in rows]
                table[column] = _star_column(
                    [v for v, _ in cells], any(q for _, q in cells), column
                )
            blocks[name] = pd.DataFrame(table, columns=columns)
        elif not quoted and value.startswith("_"):
            if name is None or pos + 1 >= len(tokens):
                raise ValueError(f"{value} without a value")
            block = blocks[name]
            if isinstance(block, dict):
                block[value[1:]] = tokens[pos + 1][0]
            pos += 2
        else:
            raise ValueError(f"unexpected value {value!r} outside a loop")
    return blocks


# Labels whose values are names, never numbers (a micrograph may be called 001).
_TEXT_LABEL = re.compile(r"(Name|Coordinates|FileName|Path)$")


def _star_column(values: list[str], quoted: bool, label: str = "") -> pd.Series:
    if not quoted and not _TEXT_LABEL.search(label):
        try:
            numbers = pd.to_numeric(pd.Series(values, dtype=object).replace("<NA>", "nan"))
            return numbers
        except (ValueError, TypeError):
            pass
    return pd.Series(values, dtype=object)


def star_header(path: str | os.PathLike) -> tuple[bool, dict | None]:
    """(written by cryosegnet, manifest or None) from a STAR file's first lines."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            first = handle.readline()
            if not first.startswith(STAR_MARK):
                return False, None
            for line in handle:
                if not line.startswith("#"):
                    break
                body = line[1:].strip()
                if body.startswith(MANIFEST_PREFIX.strip()):
                    try:
                        return True, json.loads(body[len(MANIFEST_PREFIX.strip()) :])
                    except ValueError:
                        return True, None
    except OSError:
        return False, None
    return True, None


def read_own_star(path: str | os.PathLike) -> dict[str, pd.DataFrame | dict]:
    """Read a STAR written by cryosegnet, strictly.

    Every block must end with its end line and hold the rows that line announces. Raises
    ``CoordinateFileError`` otherwise.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CoordinateFileError(path, f"unreadable ({exc})") from exc
    if not text.startswith(STAR_MARK):
        raise CoordinateFileError(path, "not written by cryosegnet")
    try:
        blocks = parse_star(text)
    except ValueError as exc:
        raise CoordinateFileError(path, f"incomplete or corrupt ({exc})") from exc
    ends = {}
    for line in text.splitlines():
        if line.startswith(_END_PREFIX):
            block_name, _, rest = line[len(_END_PREFIX) :].rpartition(":")
            ends[block_name] = rest.strip()
    for name, block in blocks.items():
        n = len(block) if isinstance(block, pd.DataFrame) else 0
        if ends.get(name) != f"{n} rows":
            raise CoordinateFileError(path, f"incomplete (data_{name} is cut short)")
    if not blocks:
        raise CoordinateFileError(path, "incomplete (no data block)")
    return blocks


def write_cryoppp_csv(
    path: str | os.PathLike, picks: pd.DataFrame, diameter: float | None = None
) -> None:
    """CryoPPP ground-truth style CSV: ``X-Coordinate,Y-Coordinate,Diameter``."""
    diam = picks["diameter"].to_numpy(float) if diameter is None else np.full(len(picks), diameter)
    table = pd.DataFrame(
        {
            "X-Coordinate": picks["x"].to_numpy(float).round().astype(int),
            "Y-Coordinate": picks["y"].to_numpy(float).round().astype(int),
            "Diameter": np.nan_to_num(diam, nan=0.0).round().astype(int),
        }
    )
    with atomic_write(path, newline="") as handle:
        table.to_csv(handle, index=False)


def write_box(path: str | os.PathLike, picks: pd.DataFrame, box_size: float) -> None:
    """EMAN ``.box``: corner x, corner y, width, height (corner = centre - box/2, as crYOLO)."""
    size = round(box_size)  # the size written; the corner must use it too, or centres drift
    half = size / 2.0
    with atomic_write(path) as handle:
        for x, y in zip(picks["x"], picks["y"]):
            handle.write(f"{x - half:.0f}\t{y - half:.0f}\t{size}\t{size}\n")


def write_topaz_tsv(path: str | os.PathLike, picks_by_micrograph: dict[str, pd.DataFrame]) -> None:
    """Topaz particle list: ``image_name, x_coord, y_coord, score`` (tab separated)."""
    with atomic_write(path) as handle:
        handle.write("image_name\tx_coord\ty_coord\tscore\n")
        for name, picks in picks_by_micrograph.items():
            for x, y, s in zip(picks["x"], picks["y"], picks["score"]):
                handle.write(f"{name}\t{x:.0f}\t{y:.0f}\t{s:.5f}\n")


# --------------------------------------------------------------------------- readers


def read_coordinates(path: str | os.PathLike, diameter: float | None = None) -> pd.DataFrame:
    """Read any supported coordinate file into a picks table.

    Parameters
    ----------
    path : str or os.PathLike
        A RELION or CryoSPARC STAR file, CryoPPP CSV, EMAN ``.box``, Topaz tsv or crYOLO
        ``.cbox`` file (told apart by content and suffix).
    diameter : float, optional
        The particle diameter in pixels, for formats that do not carry one.

    Returns
    -------
    pandas.DataFrame
        Columns ``x``, ``y`` (pixels, particle centres), ``score`` and ``diameter``.

    Raises
    ------
    CoordinateFileError
        With a one-line reason naming the file when it cannot be read as coordinates.
    """
    path = Path(path)
    if not path.is_file():
        raise CoordinateFileError(path, "no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".star":
            picks = _read_star(path)
        elif suffix == ".cbox":
            picks = _read_cbox(path)
        elif suffix == ".csv":
            picks = _read_csv(path)
        elif suffix == ".box":
            picks = _read_box(path)
        elif suffix in (".txt", ".tsv"):
            picks = _read_tsv(path)
        else:
            raise CoordinateFileError(path, f"unknown coordinate format '{suffix}'")
    except CoordinateFileError:
        raise
    except Exception as exc:
        reason = first_line(exc) or type(exc).__name__
        raise CoordinateFileError(path, f"cannot parse ({reason})") from exc
    bad = ~(np.isfinite(picks["x"].to_numpy(float)) & np.isfinite(picks["y"].to_numpy(float)))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise CoordinateFileError(
            path, f"{int(bad.sum())} particle(s) without numeric coordinates (first: row {row + 1})"
        )
    if diameter is not None:
        picks["diameter"] = picks["diameter"].fillna(diameter)
    return picks


def _column(table: pd.DataFrame, *names: str) -> str | None:
    lowered = {c.lower().lstrip("_"): c for c in table.columns}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


_FAST_STAR_BYTES = 1 << 20


def read_star_blocks(path: str | os.PathLike) -> dict:
    """Every block of a STAR file.

    Read by the STAR grammar (quoted names), else as starfile reads it (lenient with files
    other tools write loosely).
    """
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    if len(text) > _FAST_STAR_BYTES and "'" not in text and '"' not in text:
        # Nothing quoted: starfile's pandas reader gives the same tables, much faster.
        return starfile.read(path, always_dict=True)
    try:
        return parse_star(text)
    except ValueError:
        return starfile.read(path, always_dict=True)


def _read_star(path: Path) -> pd.DataFrame:
    blocks = read_star_blocks(path)
    table = None
    for block in blocks.values():
        if isinstance(block, pd.DataFrame) and _column(block, "rlnCoordinateX") is not None:
            table = block
            break
    if table is None:
        if any(isinstance(b, pd.DataFrame) and len(b) == 0 for b in blocks.values()) or not blocks:
            return empty_picks()
        raise CoordinateFileError(path, "no rlnCoordinateX/rlnCoordinateY table")
    xcol, ycol = _column(table, "rlnCoordinateX"), _column(table, "rlnCoordinateY")
    score_col = _column(table, "rlnAutopickFigureOfMerit", "rlnParticleScore")
    diam_col = _column(table, "rlnDiameter", "rlnParticleDiameter")
    picks = make_picks(
        table[xcol],
        table[ycol],
        table[score_col] if score_col else None,
        table[diam_col] if diam_col else None,
    )
    mic_col = _column(table, "rlnMicrographName")
    if mic_col is not None:
        picks["micrograph"] = table[mic_col].astype(str).map(_micrograph_name).to_numpy()
    return picks


def _micrograph_name(name: str) -> str:
    """Micrograph name from a path or bare name.

    Folders and an image extension go, other dots stay (Topaz writes ``May08_03.13.02.bin``
    without extension; ``Path.stem`` would cut it).
    """
    base = Path(str(name).strip()).name
    suffix = Path(base).suffix.lower()
    return base[: -len(suffix)] if suffix in MICROGRAPH_SUFFIXES else base


def _read_cbox(path: Path) -> pd.DataFrame:
    """Read a crYOLO ``.cbox`` file.

    A STAR ``data_cryolo`` table since crYOLO 1.8, whitespace columns
    ``x y w h confidence`` (corner coordinates, like EMAN box) before that.
    """
    head = path.read_text(errors="replace")[:4096]
    if "_CoordinateX" not in head and "data_" not in head:
        return _read_box(path)
    blocks = starfile.read(path, always_dict=True)
    table = blocks.get("cryolo")
    if table is None:
        table = next((b for b in blocks.values() if isinstance(b, pd.DataFrame)), None)
    if table is None or len(table) == 0:
        return empty_picks()
    xcol, ycol = _column(table, "CoordinateX"), _column(table, "CoordinateY")
    wcol, hcol = _column(table, "Width"), _column(table, "Height")
    if None in (xcol, ycol, wcol, hcol):
        raise CoordinateFileError(path, "no _CoordinateX/_CoordinateY/_Width/_Height columns")
    width = pd.to_numeric(table[wcol], errors="coerce").to_numpy(float)
    height = pd.to_numeric(table[hcol], errors="coerce").to_numpy(float)
    est_w = _column(table, "EstWidth")
    diameter = width
    if est_w:
        estimated = pd.to_numeric(table[est_w], errors="coerce").to_numpy(float)
        diameter = np.where(np.isfinite(estimated) & (estimated > 0), estimated, width)
    score_col = _column(table, "Confidence")
    return make_picks(
        pd.to_numeric(table[xcol], errors="coerce").to_numpy(float) + width / 2,
        pd.to_numeric(table[ycol], errors="coerce").to_numpy(float) + height / 2,
        pd.to_numeric(table[score_col], errors="coerce") if score_col else None,
        diameter,
    )


def _read_csv(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path)
    xcol = _column(table, "X-Coordinate", "x", "x_coord")
    ycol = _column(table, "Y-Coordinate", "y", "y_coord")
    if xcol is None or ycol is None:
        raise CoordinateFileError(path, "no X-Coordinate/Y-Coordinate columns")
    diam_col = _column(table, "Diameter", "diameter")
    score_col = _column(table, "score", "Confidence")
    return make_picks(
        table[xcol],
        table[ycol],
        table[score_col] if score_col else None,
        table[diam_col] if diam_col else None,
    )


def _read_box(path: Path) -> pd.DataFrame:
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        return empty_picks()
    values = np.array([[float(v) for v in row[:4]] for row in rows])
    if values.shape[1] < 4:
        raise CoordinateFileError(path, "EMAN box lines need x y width height")
    score = np.array([float(row[4]) for row in rows]) if all(len(r) > 4 for r in rows) else None
    return make_picks(
        values[:, 0] + values[:, 2] / 2, values[:, 1] + values[:, 3] / 2, score, values[:, 2]
    )


def _read_tsv(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path, sep="\t")
    xcol, ycol = _column(table, "x_coord", "x"), _column(table, "y_coord", "y")
    if xcol is None or ycol is None:
        raise CoordinateFileError(path, "no x_coord/y_coord columns (Topaz format)")
    score_col = _column(table, "score")
    picks = make_picks(table[xcol], table[ycol], table[score_col] if score_col else None)
    name_col = _column(table, "image_name")
    if name_col is not None:
        picks["micrograph"] = table[name_col].astype(str).map(_micrograph_name).to_numpy()
    return picks

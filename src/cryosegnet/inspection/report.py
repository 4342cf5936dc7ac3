"""``cryosegnet report``: one self-contained HTML page to look at a whole session's picks.

The page needs no server and no network (it opens from a cluster's file share): thumbnails are
inline base64 JPEGs, the picks are embedded as JSON and drawn by inline JavaScript on a canvas
over each thumbnail, so a threshold slider can redraw them, update every micrograph's count
and flags, and show the ``cryosegnet threshold`` command that writes the cut. Given a
``cryosegnet classify`` folder, the page also shows its class averages: clicking classes
selects them, highlights their picks, updates the counts and shows the ``cryosegnet select``
command that writes the picks of those classes (:mod:`~cryosegnet.inspection.report_classes`).

With ``bad_regions`` (``cryosegnet report --bad-regions``) each thumbnail also carries the
picker's bad-region mask (contamination, carbon, thick ice: where it dropped picks) as a tint
the page shows or hides, as ``cryosegnet show`` draws it. ``pick`` does not keep the mask, so
it is made again here the way the picker made it: from the micrograph denoised with the
settings its picks' manifest records, at their diameter, judged against the picks kept (the
picker judged against every candidate, so a blob at the edge of a decision can differ). A
micrograph picked without the mask (``--keep-bad-regions``) gets none.

For thousands of micrographs the page stays light: thumbnails are small (256 px by default)
and ``loading="lazy"``, cards off screen are not laid out (``content-visibility``), and
overlays are drawn only for cards in view (``IntersectionObserver``).
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pandas as pd

from cryosegnet import __version__
from cryosegnet.errors import CryoSegNetError
from cryosegnet.inspection.display import display_image, estimate_display_diameter
from cryosegnet.inspection.picksets import PickFile, find_pick_files, read_picks
from cryosegnet.inspection.report_page import PAGE
from cryosegnet.io.atomic import atomic_write
from cryosegnet.io.micrographs import find_micrographs, micrograph_stem, read_micrograph

if TYPE_CHECKING:  # the classification reader loads torch: only when classes are shown
    from cryosegnet.inspection.report_classes import ReportClasses


@dataclass(frozen=True)
class ReportSettings:
    """What the report draws and flags; the CLI's defaults are these.

    Attributes
    ----------
    thumbnail_size : int
        Long side of each thumbnail in pixels.
    jpeg_quality : int
        JPEG quality of the thumbnails (0-100).
    diameter : float or None
        Circle diameter in micrograph pixels (None: each micrograph's pick spacing, see
        :func:`~cryosegnet.inspection.display.estimate_display_diameter`).
    threshold : float or None
        Where the slider starts (None: the lowest score, so every pick shows).
    low_count_fraction : float
        Flag a micrograph with fewer kept picks than this fraction of the median count.
    high_count_factor : float
        Flag a micrograph with more kept picks than this multiple of the median count
        (contamination, carbon or aggregates are often picked densely).
    low_score_mads : float
        Flag a micrograph whose mean kept score is this many robust standard deviations
        (1.4826 MAD) below the median of the micrographs' means, and at least a tenth of the
        score range below it.
    output_hint : str or None
        ``OUT`` in the displayed ``cryosegnet threshold`` command (None: ``PICKS_DIR_thresholded``).
    class_tile_size : int
        Side of each class average's picture in the class grid, in pixels.
    selection_output_hint : str or None
        ``OUT`` in the displayed ``cryosegnet select`` command (None: ``CLASSES/selected``,
        where ``select`` writes by default).
    workers : int
        Threads reading micrographs and making thumbnails.
    bad_regions : bool
        Tint each thumbnail's bad regions as the picker masked them (made again from the
        micrograph: it denoises each one, about a second per 4k micrograph).
    """

    thumbnail_size: int = 256
    jpeg_quality: int = 65
    diameter: float | None = None
    threshold: float | None = None
    low_count_fraction: float = 0.25
    high_count_factor: float = 2.5
    low_score_mads: float = 3.0
    output_hint: str | None = None
    class_tile_size: int = 96
    selection_output_hint: str | None = None
    workers: int = 4
    bad_regions: bool = False


@dataclass
class ReportSummary:
    """What :func:`write_report` wrote: the page, and what it could not show."""

    output: Path
    n_micrographs: int
    n_picks: int
    n_thumbnails: int
    without_image: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    n_classes: int | None = None
    n_classified: int | None = None
    n_bad_regions: int | None = None  # thumbnails with a bad-region tint (when asked for)

    def text(self) -> str:
        lines = [
            f"{self.n_micrographs} micrographs, {self.n_picks} picks, "
            f"{self.n_thumbnails} thumbnails -> {self.output} ({self.seconds:.1f} s)"
        ]
        if self.n_bad_regions is not None:
            lines.append(
                f"bad regions tinted on {self.n_bad_regions} of {self.n_thumbnails} thumbnails "
                "(none where the picker made no mask)"
            )
        if self.n_classes is not None:
            lines.append(
                f"{self.n_classes} classes; {self.n_classified} of {self.n_picks} picks "
                "found in the classification"
            )
        if self.without_image:
            lines.append(
                f"no micrograph file for {len(self.without_image)} (picks drawn on a "
                f"blank box), e.g. {self.without_image[0]}"
            )
        for reason in list(self.unreadable.values())[:5]:
            lines.append(f"unreadable: {reason}")
        return "\n".join(lines)


@dataclass
class _Item:
    pick_file: PickFile
    picks: pd.DataFrame
    image_path: Path | None
    shape: tuple[int, int] | None = None
    jpeg: str | None = None
    problem: str | None = None
    classes: np.ndarray | None = None
    above_decoys: np.ndarray | None = None
    bad_regions: str | None = None  # base64 PNG: the tint over the thumbnail


def write_report(
    picks_dir: str | os.PathLike,
    output: str | os.PathLike,
    micrographs: list[str] | None = None,
    settings: ReportSettings | None = None,
    command: str | None = None,
    classes: str | os.PathLike | None = None,
) -> ReportSummary:
    """Write one self-contained HTML report of the picks in ``picks_dir``.

    Parameters
    ----------
    picks_dir : str or os.PathLike
        A ``cryosegnet pick`` output folder (flat or RELION layout, found recursively).
    output : str or os.PathLike
        The HTML file to write.
    micrographs : list of str, optional
        Micrograph files, folders or globs, paired with the picks by file stem. None: the
        micrograph paths in ``picks_dir/autopick.star``, where they exist from the working
        directory. A micrograph without a file gets its picks drawn on a blank box.
    settings : ReportSettings, optional
        Thumbnails, flags and slider start (defaults: :class:`ReportSettings`).
    command : str, optional
        The command line that made the report, shown on the page.
    classes : str or os.PathLike, optional
        A ``cryosegnet classify`` folder of these picks: the page shows its class grid, and
        selecting classes highlights their picks and shows the ``cryosegnet select`` command.

    Returns
    -------
    ReportSummary

    Raises
    ------
    CryoSegNetError
        If ``picks_dir`` holds no per-micrograph STAR file or a picks file cannot be read, or
        ``classes`` is not a classification folder or none of its particles is a pick here.
    """
    start = time.monotonic()
    settings = settings or ReportSettings()
    pick_files = find_pick_files(picks_dir)
    images = _pair_images(pick_files, micrographs)
    items = [_Item(pf, read_picks(pf), images.get(pf.relative)) for pf in pick_files]
    shown_classes = None
    if classes is not None:
        shown_classes = _attach_classes(items, classes, settings, str(picks_dir))
    with ThreadPoolExecutor(max_workers=max(1, settings.workers)) as pool:
        list(pool.map(lambda item: _thumbnail(item, settings), items))
    page = render_page(items, str(picks_dir), settings, command, shown_classes)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(output, encoding="utf-8") as handle:
        handle.write(page)
    return ReportSummary(
        output=output,
        n_micrographs=len(items),
        n_picks=int(sum(len(i.picks) for i in items)),
        n_thumbnails=sum(1 for i in items if i.jpeg),
        without_image=[i.pick_file.micrograph for i in items if i.image_path is None],
        unreadable={i.pick_file.micrograph: i.problem for i in items if i.problem},
        seconds=time.monotonic() - start,
        n_classes=None if shown_classes is None else len(shown_classes.tiles),
        n_classified=None if shown_classes is None else _n_classified(items),
        n_bad_regions=sum(1 for i in items if i.bad_regions) if settings.bad_regions else None,
    )


def _n_classified(items: list[_Item]) -> int:
    return int(sum(int((i.classes > 0).sum()) for i in items if i.classes is not None))


def _attach_classes(
    items: list[_Item], folder: str | os.PathLike, settings: ReportSettings, picks_dir: str
) -> ReportClasses:
    """Read the classification and give every item its picks' classes."""
    from cryosegnet.inspection.report_classes import read_report_classes

    shown = read_report_classes(folder, settings.class_tile_size)
    for item in items:
        item.classes, item.above_decoys = shown.classes_of(item.pick_file, item.picks)
    if _n_classified(items) == 0 and len(shown.particles) and any(len(i.picks) for i in items):
        raise CryoSegNetError(
            f"{folder}: none of its particles is a pick in {picks_dir} "
            "(classified from another picks folder?)"
        )
    return shown


def _pair_images(pick_files: list[PickFile], micrographs: list[str] | None) -> dict[Path, Path]:
    """{pick file's relative path: micrograph file}, by stem; ties go to the matching folder."""
    paired: dict[Path, Path] = {}
    if micrographs is None:
        for pf in pick_files:
            if Path(pf.micrograph).is_file():
                paired[pf.relative] = Path(pf.micrograph)
        return paired
    by_stem: dict[str, list[Path]] = {}
    for path in find_micrographs(list(micrographs)):
        by_stem.setdefault(micrograph_stem(path), []).append(path)
    for pf in pick_files:
        options = by_stem.get(pf.stem, [])
        if not options:
            continue
        folders = pf.relative.parent.parts

        def agreement(path: Path, folders=folders) -> int:
            parents = path.parent.parts
            n = 0
            while n < min(len(parents), len(folders)) and parents[-1 - n] == folders[-1 - n]:
                n += 1
            return n

        paired[pf.relative] = max(options, key=agreement)
    return paired


def _thumbnail(item: _Item, settings: ReportSettings) -> None:
    if item.image_path is None:
        return
    try:
        data = read_micrograph(item.image_path).data
    except CryoSegNetError as exc:
        item.problem = str(exc)
        return
    rows, cols = data.shape
    size = settings.thumbnail_size
    height = size if rows >= cols else max(1, round(size * rows / cols))
    picture = display_image(data, height)
    ok, encoded = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality])
    if not ok:
        item.problem = f"{item.image_path}: could not encode a thumbnail"
        return
    item.shape = (rows, cols)
    item.jpeg = base64.b64encode(encoded.tobytes()).decode("ascii")
    if settings.bad_regions:
        item.bad_regions = _bad_region_tint(item, data, picture.shape[:2])


def picker_bad_regions(data: np.ndarray, pick_file: PickFile, picks: pd.DataFrame):
    """The bad-region mask the picker made for these picks (at its reduced scale), or None.

    Made again the picker's way (:func:`~cryosegnet.postprocessing.bad_regions.
    drop_bad_region_picks`): ``data`` denoised with the settings the picks' manifest records,
    at the micrograph's diameter it records (else the picks' median), the picks as the
    particles' population.
    None when the manifest says the picker ran without the mask, or no diameter is known.
    """
    from cryosegnet.io.coordinates import star_header
    from cryosegnet.postprocessing.bad_regions import shrunk_bad_region_mask
    from cryosegnet.preprocessing.denoise import DenoiseSettings, denoise

    manifest = star_header(pick_file.path)[1] or {}
    options = manifest.get("options") or {}
    recorded = options.get("settings") or {}
    if manifest and not recorded.get("mask_bad_regions"):
        return None  # picked with --keep-bad-regions (or before the mask existed)
    diameter = manifest.get("diameter_px") or options.get("diameter")  # the one it used
    if not diameter and len(picks):
        diameter = float(np.nanmedian(picks["diameter"].to_numpy(float)))
    if not (diameter and math.isfinite(diameter) and diameter > 0):
        return None
    settings = DenoiseSettings.from_dict(recorded["denoise"]) if recorded.get("denoise") else None
    denoised = denoise(data, settings)
    scale = denoised.shape[1] / data.shape[1]
    particles = (picks[["x", "y"]].to_numpy(float) + 0.5) * scale - 0.5
    return shrunk_bad_region_mask(denoised, diameter * scale, None, particles)


def _bad_region_tint(item: _Item, data: np.ndarray, shape: tuple[int, int]) -> str | None:
    """The picker's bad regions of ``item`` as a see-through PNG of the thumbnail's ``shape``
    (rows, cols), tinted as ``cryosegnet show`` tints them; None without a mask."""
    from cryosegnet.inspection.display import BAD_REGION_COLOUR_BGR, BAD_REGION_OPACITY

    try:
        mask = picker_bad_regions(data, item.pick_file, item.picks)
    except (ValueError, KeyError, TypeError) as exc:  # a manifest this version cannot read
        item.problem = f"{item.pick_file.path}: no bad-region mask ({exc})"
        return None
    if mask is None:
        return None
    inside = cv2.resize(
        mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST
    ).astype(bool)
    tint = np.zeros((*shape, 4), np.uint8)
    tint[inside, :3] = BAD_REGION_COLOUR_BGR
    tint[inside, 3] = round(255 * BAD_REGION_OPACITY)
    ok, encoded = cv2.imencode(".png", tint)
    return base64.b64encode(encoded.tobytes()).decode("ascii") if ok else None


def _extent(item: _Item) -> tuple[int, int]:
    """Micrograph (rows, cols): from the image, else the picks' reach (for the blank box)."""
    if item.shape:
        return item.shape
    if len(item.picks):
        reach = np.nan_to_num(item.picks[["y", "x"]].to_numpy(float).max(axis=0), nan=1.0)
        return max(1, int(math.ceil(reach[0] * 1.05))), max(1, int(math.ceil(reach[1] * 1.05)))
    return 1, 1


def _item_data(item: _Item, settings: ReportSettings) -> dict:
    rows, cols = _extent(item)
    size = settings.thumbnail_size
    th = size if rows >= cols else max(1, round(size * rows / cols))
    tw = max(1, round(th * cols / rows))
    scale = th / rows
    picks = item.picks
    diameter = settings.diameter or estimate_display_diameter(picks, (rows, cols))
    x = ((picks["x"].to_numpy(float) + 0.5) * scale - 0.5).round(1)
    y = ((picks["y"].to_numpy(float) + 0.5) * scale - 0.5).round(1)
    scores = picks["score"].to_numpy(float)  # unrounded: the page must count as threshold does
    return {
        "name": item.pick_file.micrograph,
        "file": str(item.pick_file.relative),
        "w": cols,
        "h": rows,
        "tw": tw,
        "th": th,
        "r": round(max(1.0, diameter * scale / 2), 2),
        "x": [float(v) for v in x],
        "y": [float(v) for v in y],
        "s": [None if not math.isfinite(v) else float(v) for v in scores],
        "image": item.jpeg is not None,
        "why": _why_no_picks(item.pick_file),
        "c": None if item.classes is None else [int(c) for c in item.classes],
        "a": None if item.above_decoys is None else [int(a) for a in item.above_decoys],
    }


def _why_no_picks(pick_file: PickFile) -> str | None:
    """Why the run left a micrograph without picks, as its picks' manifest says: flagged by
    ``pick --refine``'s triage, or judged empty by ``--skip-empty``; None otherwise."""
    from cryosegnet.io.coordinates import star_header

    manifest = star_header(pick_file.path)[1] or {}
    if pick_file.stem in (manifest.get("bad_micrographs") or []):
        return "flagged by --refine"
    if manifest.get("judged_empty"):
        return "judged empty"
    return None


def _classes_data(classes: ReportClasses, settings: ReportSettings) -> dict:
    folder = str(classes.folder)
    out = settings.selection_output_hint or folder.rstrip("/") + "/selected"
    return {
        "folder": shlex.quote(folder),
        "output": shlex.quote(out),
        "numbers": [t.number for t in classes.tiles],
        "sizes": [t.size for t in classes.tiles],
        "auto": [t.number for t in classes.tiles if t.auto_selected],
    }


def _class_panel(classes: ReportClasses) -> str:
    """The class grid and its controls (the page's script fills in counts and command)."""
    tiles = []
    for t in classes.tiles:
        auto = " (auto-selected)" if t.auto_selected else ""
        mark = '<span class="auto" title="auto-selected">★</span>' if t.auto_selected else ""
        tiles.append(
            f'<button type="button" class="cls" data-class="{t.number}" aria-pressed="false" '
            f'title="class {t.number}: {t.size} particles{auto}">'
            f'<img alt="class {t.number}" src="data:image/png;base64,{t.png}">'
            f'<span class="cls-label">#{t.number} · {t.size}{mark}</span></button>'
        )
    return (
        '<section id="class-panel"><div class="class-head">'
        f"<b>2D classes</b> in <code>{html.escape(str(classes.folder))}</code> · "
        '<b id="class-kept">0</b> of <b id="class-total">0</b> classified picks in '
        '<b id="class-selected">0</b> selected classes '
        '<button type="button" id="classes-auto">auto</button> '
        '<button type="button" id="classes-all">all</button> '
        '<button type="button" id="classes-none">none</button> '
        '<label title="keep only members whose correlation beats the noise decoys, '
        'as --auto does"><input type="checkbox" id="above-decoys"> above the decoys only</label>'
        '<span class="sub">click a class to select or drop it; red: picks above the '
        "threshold in a selected class</span>"
        '<div class="cmd"><code id="select-command"></code>'
        '<button id="copy-select" type="button">copy</button><span id="copied-select"></span>'
        "</div></div>"
        f'<div id="class-grid">{"".join(tiles)}</div></section>'
    )


def render_page(
    items: list[_Item],
    picks_dir: str,
    settings: ReportSettings,
    command: str | None = None,
    classes: ReportClasses | None = None,
) -> str:
    """The HTML text of the report (see :func:`write_report`)."""
    data = [_item_data(item, settings) for item in items]
    scores = np.array([s for d in data for s in d["s"] if s is not None], dtype=float)
    lo = float(scores.min()) if scores.size else 0.0
    hi = float(scores.max()) if scores.size else 1.0
    if not hi > lo:
        hi = lo + 1.0
    start = lo if settings.threshold is None else float(settings.threshold)
    out = settings.output_hint or picks_dir.rstrip("/") + "_thresholded"
    payload = {
        "picks_dir": shlex.quote(picks_dir),
        "output": shlex.quote(out),
        "score_min": lo,
        "score_max": hi,
        "threshold": start,
        "low_count_fraction": settings.low_count_fraction,
        "high_count_factor": settings.high_count_factor,
        "low_score_mads": settings.low_score_mads,
        "micrographs": data,
        "classes": None if classes is None else _classes_data(classes, settings),
    }
    cards = "\n".join(
        _card(i, d, item, classes is not None) for i, (d, item) in enumerate(zip(data, items))
    )
    made = html.escape(command or f"cryosegnet report {picks_dir}")
    return (
        PAGE.replace("@@TITLE@@", html.escape(f"cryosegnet picks: {picks_dir}"))
        .replace("@@PICKS_DIR@@", html.escape(picks_dir))
        .replace("@@COMMAND@@", made)
        .replace(
            "@@META@@",
            html.escape(
                f"{len(items)} micrographs · cryosegnet {__version__} · "
                f"{time.strftime('%Y-%m-%d %H:%M')}"
            ),
        )
        .replace("@@CLASSES@@", "" if classes is None else _class_panel(classes))
        .replace("@@BAD_REGIONS@@", _bad_region_toggle(items))
        .replace("@@CARDS@@", cards)
        .replace("@@DATA@@", json.dumps(payload, separators=(",", ":")).replace("</", "<\\/"))
    )


def _bad_region_toggle(items: list[_Item]) -> str:
    """The page's switch for the bad-region tints (nothing when no thumbnail has one)."""
    tinted = sum(1 for item in items if item.bad_regions)
    if not tinted:
        return ""
    return (
        '      <label style="display:inline-flex" title="where the picker masked contamination, '
        'carbon and thick ice (no picks there)"><input id="show-bad" type="checkbox" checked> '
        f'bad regions ({tinted})</label><span class="legend"><span><i style="border-color:'
        '#00a0ff;background:#00a0ff80"></i>bad region</span></span>'
    )


def _card(index: int, data: dict, item: _Item, with_classes: bool = False) -> str:
    name = html.escape(data["name"])
    tw, th = data["tw"], data["th"]
    if item.jpeg:
        picture = (
            f'<img loading="lazy" decoding="async" width="{tw}" height="{th}" alt="" '
            f'src="data:image/jpeg;base64,{item.jpeg}">'
        )
        if item.bad_regions:
            picture += (
                f'<img class="bad" decoding="async" width="{tw}" height="{th}" alt="" '
                f'src="data:image/png;base64,{item.bad_regions}">'
            )
    else:
        why = html.escape(item.problem or "no micrograph file")
        picture = f'<div class="noimg" title="{why}">{why}</div>'
    return (
        f'<div class="card" data-i="{index}"><div class="thumb" '
        f'style="aspect-ratio:{tw}/{th}">{picture}'
        f'<canvas width="{tw}" height="{th}"></canvas></div>'
        f'<div class="meta"><div class="name" title="{name}">{name}</div>'
        f'<div><b class="count">{len(item.picks)}</b> picks · mean <span class="mean">–</span>'
        + (' · <b class="cls-count">–</b> in classes' if with_classes else "")
        + ' <span class="flags"></span></div></div></div>'
    )

"""The label-free refinement loop: pick -> 2D classes -> keep the good ones -> fine-tune -> re-pick.

The shipped U-Net learnt from simulations; the user's own micrographs are the real training set.
Practitioners run this loop by hand (blob picks, 2D classes, select the good classes, train
Topaz on them, pick again). Here it runs without a label:

1. classify the current picks in 2D (:func:`cryosegnet.classification.pipeline.classify_picks`)
   and keep the members of the classes ``--auto`` passes that beat the noise decoys;
2. triage: a micrograph whose picks almost all fall outside the kept set (compared with the
   batch's other micrographs) is flagged empty or bad; it gives no positive, and no pick in
   the output unless ``keep_bad``;
3. make one training sample per micrograph: the kept picks, moved by their class alignment
   shift onto the particle's centre, are the positives; the picks of rejected classes and the
   ice farther than ``background_margin`` diameters from any kept pick are the negatives;
   everything else (kept-class picks under the decoys, the surroundings of kept picks, where a
   missed neighbour may sit) is ignored by the loss;
4. fine-tune the U-Net on them with the fine-tuning recipe (:mod:`.finetune`);
5. pick again with the new model and go back to 1.

It stops after ``rounds`` fine-tunings, or earlier when the kept set changes by less than
``min_change`` from one round to the next (the classes agree with the model: another round
would teach it what it already picks). When no class passes the selection in the first round
there is nothing to learn from: the loop says so and stops, writing no model. The last round's
model is exported beside the final picks as a self-describing checkpoint
(:func:`cryosegnet.model.checkpoint.export_model`) that ``cryosegnet pick --model`` reuses on
the next data collection of the same sample.

With ``RefineSettings.model = "radial"`` steps 3 to 5 are replaced by one: a rotationally
symmetric, noise-whitened matched filter (:mod:`.radial_filter`) is fitted on round 0's kept
picks at their re-centred places and re-picks every micrograph; no network is trained. It
suits round particles, whose kept picks fix its two dozen numbers better than they teach a
U-Net (see :class:`RefineSettings`). A micrograph where the filter sees no particle (its
response not lopsided towards them: :meth:`.radial_filter.RadialFilter.tail_ratio`) is flagged
empty. With ``model = "auto"`` (the default) the filter is fitted and kept where it sees
particles on most micrographs; elsewhere the U-Net is fine-tuned as above.

Self-training on the picker's own confident picks failed (:mod:`.adapt`: they were only about
half right); the 2D classes are the stricter judge that this loop relies on.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryosegnet.classification.settings import ClassifySettings, SelectionSettings
from cryosegnet.errors import CryoSegNetError, NothingToLearnError, SettingsError, first_line
from cryosegnet.training.dataset import TrainingSample
from cryosegnet.training.finetune import finetune_config, round_config
from cryosegnet.training.radial_filter import RadialFilterSettings

log = logging.getLogger("cryosegnet")

#: Files and folders of a refinement folder.
MODEL_NAME = "model.pt"
RADIAL_FILTER_NAME = "radial_filter.json"
#: The U-Net whose map a radial filter adds to its response, saved beside it.
RADIAL_UNET_NAME = "radial_filter_unet.pt"
PICKS_FOLDER = "picks"
RECORD_NAME = "refine.json"
BAD_LIST = "bad_micrographs.txt"

# The fine-tuning recipe's defaults (learning rate, crops, target disks) are the loop's too.
_FINETUNE = finetune_config()

#: What the loop learns from the kept picks (:attr:`RefineSettings.model`).
MODELS = ("unet", "radial", "auto")
#: Where the radial filter's positives come from after ``finetune``
#: (:attr:`RefineSettings.labelled_positives`).
LABELLED_POSITIVES = ("model", "kept")


@dataclass(frozen=True)
class RefineSettings:
    """How the loop selects, what it trains on and when it stops; every default is here once.

    Attributes
    ----------
    model : str
        What the loop learns from the kept picks. ``unet``: fine-tune the U-Net, round after
        round. ``radial``: one round, no fine-tuning: fit a rotationally symmetric,
        noise-whitened matched filter (:class:`~cryosegnet.training.radial_filter.RadialFilter`)
        on round 0's kept picks at their re-centred places, over the whole batch, and re-pick
        every micrograph with it. For round particles: on the apoferritin ``train`` split
        (``pick --diameter 68 --centre-picks``, ``--refine-low-snr``) it picked about as well
        as the same filter learnt from labels, with centred picks; on elongated particles it
        falls far below the picker. ``auto``: fit the radial filter as ``radial`` does, and
        keep its picks where it sees particles in most of the batch
        (:meth:`~cryosegnet.training.radial_filter.RadialFilter.tail_ratio`); else fine-tune
        the U-Net as ``unet`` does. The filter fits round particles at low SNR (apoferritin
        ``train``: it saw particles on all 12 micrographs) and not the simulated fields of
        TRPV1 and procedural shapes (on none of 16), where fine-tuning gains. After
        ``finetune`` (``labelled_map_weight``) the filter is kept wherever it can be fitted:
        the fine-tuned model's map carries its picks where the filter alone does not fit. On
        simulated TRPV1 fields, from a model fine-tuned on 6 labelled ones, it wrote picks
        with F1 0.801 (easy) and 0.448 (medium) at its threshold, where fine-tuning the U-Net
        on the kept picks gave 0.783 and the loop refused (the model's own picks: 0.403)
        (``bench/studies/few_label_sims.py``).
    radial : RadialFilterSettings
        The filter's rings, pre-filter and picking (``model="radial"``).
    radial_fit_micrographs : int
        The filter is fitted, and ``auto`` decides, on at most this many micrographs (all of a
        smaller batch; else those with the most kept picks), so that a session of thousands
        pays for the decision on a sample; the chosen filter then re-picks every micrograph.
    rounds : int
        Most fine-tunings (each followed by a re-pick and a classification of its picks). Two
        by default: on 16 simulated micrographs with junk the second round added to the
        first's gain and a third added nothing (on 8, the second lost part of it).
    min_change : float
        Stop early when the kept set changed by less than this fraction from one round to the
        next (1 - the share of kept picks of either round with a kept pick of the other within
        a quarter diameter).
    classify : ClassifySettings
        The 2D classification of every round; its ``n_classes`` is the most classes a round
        gets (see ``picks_per_class``). Its ``low_snr`` (``pick --refine-low-snr``) is for
        particles too weak to show a pose each (apoferritin): without it no class of their
        picks passes the selection, so the loop has nothing to train on.
    low_snr_fallback : bool
        When no class of the starting picks passes the selection and ``classify.low_snr`` is
        off, classify them again with it on, and learn from them only with the radial filter,
        where it sees the particles on most micrographs (else the loop refuses as before): so
        ``pick --diameter 68 --refine`` works on apoferritin without ``--refine-low-snr``. Not
        with ``model="unet"``: fine-tuned on the low-SNR classes of apoferritin's picks the
        U-Net unlearnt the particles (best F1 0.600 -> 0.133 on the ``train`` split).
    picks_per_class : int
        Each round classifies its picks into about one class per this many picks, between
        ``min_classes`` and ``classify.n_classes``: a fine-tuned model picks far fewer, cleaner
        picks than the starting one, and spread over the starting number of classes they make
        averages too noisy for any class to pass the selection.
    min_classes : int
        Fewest classes a round gets (junk needs classes of its own).
    selection : SelectionSettings
        What a class needs to be kept (``--auto``'s thresholds).
    recentre : bool
        Move positives by their class alignment shift (the particle's centre as the class
        average places it) instead of training on the picks where they were.
    rejected_negatives : bool
        Picks in rejected classes are background in the targets.
    background_negatives : bool
        Ice farther than ``background_margin`` diameters from every kept pick is background.
        Without it (and without ``rejected_negatives``) only the positives teach.
    background_margin : float
        Distance from a kept pick's centre, in particle diameters, within which the ice is
        ignored rather than called background: a touching neighbour the picker missed sits
        there.
    background_from_picks : bool
        Measure the far ice from every pick of the round instead of the kept ones. When the
        kept picks are a small share of the particles (weak particles: on the apoferritin
        ``train`` split 12 % of the labelled particles lie near a kept pick and 84 % in the ice
        far from them), the default calls most particles background.
    bad_share : float
        A micrograph with at least ``min_triage_picks`` picks is flagged empty or bad when the
        share of its picks that is kept is under ``bad_share`` x the batch's median share. The
        share is relative: at the default threshold most picks of a good micrograph can be junk
        (on simulations with junk, 85 %), while those of an empty one are all junk.
    min_triage_picks : int
        Fewer picks than this say too little to judge a micrograph (it is not flagged).
    keep_bad : bool
        Keep the picks of flagged micrographs in the output (they still give no positive).
    labelled_positives : str
        What the radial filter learns from when the loop starts from a model fine-tuned on the
        user's labels. ``model``: every pick that model made, on the micrographs the classes
        did not flag (a calibrated picker's picks, hundreds per micrograph); ``kept``: the picks
        the 2D classes keep, as from any other model. On weak particles the classes keep few
        (apoferritin ``test`` after ``finetune``: 73 of 1413, in one low-SNR class), and a filter
        learnt from so few, so good picks writes too few and judges a real micrograph empty; on
        the pair of micrographs each of three ``finetune --seed`` folds held out, the filter
        learnt from the fine-tuned model's own picks did about as well as one learnt from the
        other ten micrographs' labels, with the map added (best F1 / AUPRC 0.699 / 0.705
        against 0.704 / 0.704 on average; ``bench/studies/few_label_combined.py``).
    labelled_map_weight : float
        When the loop starts from a model fine-tuned on the user's labels (``pick --model
        FINETUNED --refine``, the few-label track; :func:`~cryosegnet.picking.picker.
        learnt_from_labels`), the radial filter picks from its response plus this many times
        that model's map in robust z units (:attr:`~cryosegnet.training.radial_filter.
        RadialFilter.map_weight`), and writes as many picks as that model picked (its
        threshold was calibrated on labels; the filter's rests on the few picks the classes
        keep); the model is saved beside the filter. 0 turns it off. The
        two read different things: on the pair of apoferritin ``train`` micrographs each of
        three ``finetune --seed`` folds held out, a filter learnt from the other ten's labels
        went from best F1 / AUPRC 0.685 / 0.691 to 0.704 / 0.704 on average at 0.075 (two
        folds +0.03-0.04, one -0.014, where the fine-tuned map alone was far weaker than the
        filter; ``bench/studies/few_label_combined.py``). Not with the shipped model or one
        the loop made: the shipped model's map added nothing on ``train``.
    epochs, steps_per_epoch, lr, crop, batch_size, target_fraction : int or float
        The fine-tuning of each round (:func:`cryosegnet.training.finetune.finetune_config`):
        short (100 steps: a few minutes of the 2-core CPU), since the previous round's model
        is the start.
    seed : int
        Seed of the crops (round r uses ``seed + r``) and of the classification.
    """

    model: str = "auto"
    radial: RadialFilterSettings = RadialFilterSettings()
    radial_fit_micrographs: int = 32
    rounds: int = 2
    min_change: float = 0.1
    classify: ClassifySettings = ClassifySettings()
    picks_per_class: int = 150
    min_classes: int = 4
    selection: SelectionSettings = SelectionSettings()
    recentre: bool = True
    rejected_negatives: bool = True
    background_negatives: bool = True
    background_margin: float = 1.0
    background_from_picks: bool = False
    bad_share: float = 0.2
    min_triage_picks: int = 5
    keep_bad: bool = False
    low_snr_fallback: bool = True
    labelled_positives: str = "model"
    labelled_map_weight: float = 0.075
    epochs: int = 4
    steps_per_epoch: int = 25
    lr: float = _FINETUNE.lr
    crop: int = _FINETUNE.crop
    batch_size: int = _FINETUNE.batch_size
    target_fraction: float = _FINETUNE.target_fraction
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.model in MODELS, f"refine: model must be one of {', '.join(MODELS)}"),
            (self.rounds >= 1, "refine: rounds must be at least 1"),
            (self.radial_fit_micrographs >= 1, "refine: radial fit micrographs: at least 1"),
            (self.picks_per_class >= 2, "refine: picks per class must be at least 2"),
            (
                1 <= self.min_classes <= self.classify.n_classes,
                "refine: min classes must be between 1 and the classification's classes",
            ),
            (0.0 <= self.min_change < 1.0, "refine: min change must be in [0, 1)"),
            (self.background_margin >= 0.5, "refine: background margin: at least 0.5 diameter"),
            (0.0 < self.bad_share <= 1.0, "refine: bad share must be in (0, 1]"),
            (self.min_triage_picks >= 1, "refine: min triage picks must be at least 1"),
            (self.epochs >= 1 and self.steps_per_epoch >= 1, "refine: epochs, steps >= 1"),
            (self.lr > 0 and self.batch_size >= 1, "refine: lr > 0 and batch size >= 1"),
            (self.crop >= 32, "refine: crop must be at least 32 px"),
            (0.0 < self.target_fraction <= 1.0, "refine: target fraction must be in (0, 1]"),
            (self.labelled_map_weight >= 0.0, "refine: labelled map weight must be >= 0"),
            (
                self.labelled_positives in LABELLED_POSITIVES,
                f"refine: labelled positives must be one of {', '.join(LABELLED_POSITIVES)}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise SettingsError(message)

    def to_dict(self) -> dict:
        return asdict(self)

    def classes_for(self, n_picks: int) -> int:
        """How many classes a round of ``n_picks`` picks is classified into.

        Parameters
        ----------
        n_picks : int
            The round's picks.

        Returns
        -------
        int
            ``n_picks / picks_per_class`` rounded, clamped to ``[min_classes,
            classify.n_classes]``.
        """
        wanted = int(round(n_picks / self.picks_per_class))
        return max(self.min_classes, min(self.classify.n_classes, wanted))


@dataclass(frozen=True)
class RoundJudgement:
    """What one classification said about one round's picks.

    Attributes
    ----------
    particles : pandas.DataFrame
        The classification's ``particles.csv`` plus ``stem`` (micrograph file stem), ``kept``
        (a member of a kept class above the decoys), ``unsure`` (of a kept class, under the
        decoys) and ``rejected`` (of a rejected class).
    kept_classes : list of int
        Classes the selection passed.
    bad : list of str
        Stems of the micrographs flagged empty or bad.
    diameter_px : float
        Particle diameter the boxes were cut for (micrograph pixels).
    """

    particles: pd.DataFrame
    kept_classes: list[int]
    bad: list[str]
    diameter_px: float

    @property
    def n_kept(self) -> int:
        return int(self.particles["kept"].sum())


def judge_classification(folder: str | os.PathLike, settings: RefineSettings) -> RoundJudgement:
    """Read a classification folder: which picks are kept, unsure, rejected; which micrographs
    are bad.

    Parameters
    ----------
    folder : str or os.PathLike
        Written by :func:`cryosegnet.classification.pipeline.classify_picks` with ``auto``.
    settings : RefineSettings
        The triage thresholds.

    Returns
    -------
    RoundJudgement
    """
    from cryosegnet.classification.outputs import read_classification

    record, quality, particles = read_classification(folder)
    kept_classes = sorted(int(c) for c in record.get("auto_selected") or [])
    in_kept = particles["class"].isin(kept_classes).to_numpy()
    above = particles["above_decoys"].astype(bool).to_numpy()
    particles = particles.assign(
        stem=[Path(str(name)).stem for name in particles["micrograph"]],
        kept=in_kept & above,
        unsure=in_kept & ~above,
        rejected=~in_kept,
    )
    shares = {
        str(stem): float(rows["kept"].mean())
        for stem, rows in particles.groupby("stem", sort=True)
        if len(rows) >= settings.min_triage_picks
    }
    typical = float(np.median(list(shares.values()))) if shares else 0.0
    bad = [stem for stem, share in shares.items() if share < settings.bad_share * typical]
    return RoundJudgement(particles, kept_classes, bad, float(record["diameter_px"]))


def kept_change(before: RoundJudgement, after: RoundJudgement) -> float:
    """How much the kept set moved between two rounds, in [0, 1].

    A kept pick is matched when the other round kept a pick within a quarter diameter of it on
    the same micrograph; the change is the share of kept picks of both rounds left unmatched.

    Parameters
    ----------
    before, after : RoundJudgement
        Two rounds' judgements.

    Returns
    -------
    float
        0: the same particles kept; 1: nothing in common.
    """
    from scipy.spatial import cKDTree

    radius = after.diameter_px / 4
    a = before.particles[before.particles["kept"]]
    b = after.particles[after.particles["kept"]]
    total = len(a) + len(b)
    if total == 0:
        return 0.0
    matched = 0
    groups_b = dict(tuple(b.groupby("stem")))
    for stem, rows_a in a.groupby("stem"):
        rows_b = groups_b.get(stem)
        if rows_b is None or not len(rows_b):
            continue
        xy_a = _centres(rows_a, True)
        xy_b = _centres(rows_b, True)
        near_a, _ = cKDTree(xy_b).query(xy_a)
        near_b, _ = cKDTree(xy_a).query(xy_b)
        matched += int((near_a <= radius).sum()) + int((near_b <= radius).sum())
    return 1.0 - matched / total


def _centres(rows: pd.DataFrame, recentre: bool) -> np.ndarray:
    columns = ["recentred_x", "recentred_y"] if recentre else ["x", "y"]
    return rows[columns].to_numpy(float)


def training_sample(
    name: str,
    denoised: np.ndarray,
    scale: tuple[float, float],
    rows: pd.DataFrame,
    diameter_px: float,
    bad: bool,
    settings: RefineSettings,
    pixel_size: float | None = None,
) -> TrainingSample:
    """One micrograph's pseudo-labelled sample (see the module docstring).

    Parameters
    ----------
    name : str
        The micrograph's name.
    denoised : numpy.ndarray
        The micrograph denoised for the model (working resolution, uint8).
    scale : tuple of float
        ``(sx, sy)``: working pixels per micrograph pixel along x and y.
    rows : pandas.DataFrame
        The micrograph's particles of :attr:`RoundJudgement.particles`.
    diameter_px : float
        Particle diameter in micrograph pixels.
    bad : bool
        The micrograph was flagged: no positive; every pixel is background when
        ``background_negatives``.
    settings : RefineSettings
        What counts as positive and negative.
    pixel_size : float, optional
        Å per micrograph pixel (recorded with the model).

    Returns
    -------
    TrainingSample
    """
    from cryosegnet.geometry import disk_mask

    sx, sy = scale
    working_d = diameter_px * (sx + sy) / 2
    shape = denoised.shape

    def working(selected: pd.DataFrame, recentre: bool) -> tuple[np.ndarray, np.ndarray]:
        xy = _centres(selected, recentre)
        return xy[:, 0] * sx, xy[:, 1] * sy

    kept = rows[rows["kept"].to_numpy(bool)] if not bad else rows.iloc[:0]
    kx, ky = working(kept, settings.recentre)
    unsure = rows[rows["unsure"].to_numpy(bool) | (bad & rows["kept"].to_numpy(bool))]
    if bad and settings.background_negatives:
        unsure = unsure.iloc[:0]  # a flagged micrograph is background throughout
    ux, uy = working(unsure, False)
    known = np.zeros(shape, dtype=bool)
    if settings.background_negatives:
        if bad:
            known[:] = True
        else:
            near = disk_mask(shape, kx, ky, 2 * settings.background_margin * working_d)
            if settings.background_from_picks:
                px, py = working(rows, False)
                near |= disk_mask(shape, px, py, 2 * settings.background_margin * working_d)
            known |= ~near
    if settings.rejected_negatives:
        rejected = rows[rows["rejected"].to_numpy(bool)]
        rx, ry = working(rejected, False)
        known |= disk_mask(shape, rx, ry, working_d)
    return TrainingSample(
        name=name,
        image=denoised,
        x=kx,
        y=ky,
        diameter=np.full(len(kx), working_d),
        source="pseudo",
        scale=(sx + sy) / 2,
        pixel_size=pixel_size,
        unsure_x=ux,
        unsure_y=uy,
        unsure_diameter=np.full(len(ux), working_d),
        known_background=known,
    )


@dataclass
class RefineRound:
    """One round's record (round 0 judges the picks the loop started from).

    Attributes
    ----------
    round : int
        0 for the starting picks, r for the picks of the model of the r-th fine-tuning.
    picks : str
        The picks folder judged.
    classes : str
        Its classification folder.
    n_picks, n_kept : int
        Picks classified, and kept.
    kept_classes : list of int
        Classes the selection passed.
    bad : list of str
        Micrographs flagged empty or bad.
    change : float or None
        :func:`kept_change` from the previous round (None in round 0).
    model : str or None
        The checkpoint that made these picks (None: the starting picks).
    seconds : dict of str to float
        Wall time of the pseudo-labelled samples (denoising each micrograph once, in round 1),
        fine-tuning, picking and classification.
    """

    round: int
    picks: str
    classes: str
    n_picks: int
    n_kept: int
    kept_classes: list[int]
    bad: list[str]
    change: float | None = None
    model: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class RefineSummary:
    """What :func:`refine_picks` did.

    Attributes
    ----------
    output : pathlib.Path
        The refinement folder.
    rounds : list of RefineRound
        Every round judged, round 0 first.
    stop_reason : str
        Why the loop stopped.
    model : pathlib.Path or None
        The refined checkpoint (None when no round trained).
    picks : pathlib.Path or None
        The final picks folder.
    bad : list of str
        Micrographs flagged in the final round.
    n_picks : int
        Picks written to the final folder.
    failures : dict of str to str
        Micrographs a re-pick could not use.
    seconds : float
        Wall time of the whole loop.
    final_round : int
        The round whose picks (and model) are the output: the last one whose classification
        kept a class (``radial``: 1, the filter's picks).
    model_kind : str
        :attr:`RefineSettings.model`: ``model`` is a U-Net checkpoint or a radial filter.
    judged_empty : list of str
        Of ``bad``, those the radial filter flagged (its response not lopsided towards
        particles), rather than the 2D classes.
    """

    output: Path
    rounds: list[RefineRound]
    stop_reason: str
    model: Path | None
    picks: Path | None
    bad: list[str]
    n_picks: int
    failures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    final_round: int = 0
    model_kind: str = "unet"
    judged_empty: list[str] = field(default_factory=list)

    def text(self) -> str:
        lines = []
        for r in self.rounds:
            change = "" if r.change is None else f", kept set changed {r.change:.0%}"
            lines.append(
                f"refine round {r.round}: {r.n_kept} of {r.n_picks} picks kept in classes "
                f"{','.join(map(str, r.kept_classes)) or '(none)'}{change}"
            )
        lines.append(f"stopped: {self.stop_reason}")
        lines.append(f"output: round {self.final_round}'s picks")
        by_classes = [stem for stem in self.bad if stem not in self.judged_empty]
        if by_classes:
            lines.append(
                f"flagged empty or bad (picks almost all in rejected classes): "
                f"{len(by_classes)} micrograph(s): {', '.join(by_classes)}"
            )
        if self.judged_empty:
            lines.append(
                "flagged empty (the radial filter's response not lopsided towards particles): "
                f"{len(self.judged_empty)} micrograph(s): {', '.join(self.judged_empty)}"
            )
        if self.picks is not None:
            lines.append(f"refined picks: {self.n_picks} in {self.picks}")
        if self.model is not None and self.model_kind == "radial":
            lines.append(f"radial filter (reuse with pick --radial-filter): {self.model}")
        elif self.model is not None:
            lines.append(f"refined model (reuse with pick --model): {self.model}")
        lines.append(f"refine time: {self.seconds:.0f} s")
        return "\n".join(lines)


class _DenoisedCache:
    """Each micrograph denoised once for the whole loop (the model's denoising never changes:
    fine-tuning keeps the starting checkpoint's)."""

    def __init__(self, picker) -> None:
        self.picker = picker
        self.images: dict[str, tuple[np.ndarray, tuple[float, float], float | None]] = {}

    def get(self, path: Path) -> tuple[np.ndarray, tuple[float, float], float | None]:
        from cryosegnet.io.micrographs import read_micrograph

        key = str(path)
        if key not in self.images:
            micrograph = read_micrograph(path)
            denoised = self.picker.preprocess(micrograph.data)
            scale = (
                denoised.shape[1] / micrograph.data.shape[1],
                denoised.shape[0] / micrograph.data.shape[0],
            )
            self.images[key] = (denoised, scale, micrograph.pixel_size)
        return self.images[key]


def _by_stem(micrographs: Sequence[Path]) -> dict[str, Path]:
    stems: dict[str, Path] = {}
    for path in micrographs:
        stem = Path(path).stem
        if stem in stems and stems[stem] != Path(path):
            raise CryoSegNetError(
                f"{path}: the refinement pairs micrographs with their picks by file name, and "
                f"{stems[stem]} has the same one; rename one of them"
            )
        stems[stem] = Path(path)
    return stems


# Long on purpose: the label-free loop's rounds (samples, fine-tuning, re-pick, classes, stop
# rule) and its final outputs, one after another.
def refine_picks(
    micrographs: Sequence[str | os.PathLike],
    picks_dir: str | os.PathLike,
    output: str | os.PathLike,
    make_picker: Callable[[Path | None], object],
    start_model: str | os.PathLike | None = None,
    settings: RefineSettings | None = None,
    pick_options: Mapping | None = None,
    device: str = "auto",
    progress: bool = False,
    log_fn: Callable[[str], None] | None = None,
) -> RefineSummary:
    """Run the label-free loop on picks already made (see the module docstring).

    Parameters
    ----------
    micrographs : sequence of path
        The micrographs that were picked (paired with the picks by file stem).
    picks_dir : str or os.PathLike
        The starting picks, a ``cryosegnet pick`` output folder.
    output : str or os.PathLike
        Refinement folder to write: ``round<r>/classes`` (each round's classification),
        ``round<r>/train`` (its fine-tuning run), ``round<r>/picks`` (its model's picks), and
        at the top ``model.pt``, ``picks/`` (the final picks in ``pick``'s layout, flagged
        micrographs empty unless ``keep_bad``), ``bad_micrographs.txt`` and ``refine.json``.
        Must not be inside ``picks_dir`` (nor it inside ``output``).
    make_picker : callable
        ``make_picker(checkpoint)``: the picker to re-pick with, from a checkpoint path (None:
        the starting model); it must pick as the starting picks were made but for the model.
    start_model : str or os.PathLike, optional
        Checkpoint the starting picks were made with (default: the shipped model).
    settings : RefineSettings, optional
        The loop's settings (default: :class:`RefineSettings()`).
    pick_options : mapping, optional
        Keyword arguments of :func:`cryosegnet.picking.batch.pick_batch` for the re-picks
        (``diameter_angstrom``, ``pixel_sizes``, ``names``, ``batch_size``...).
    device : str
        Where fine-tuning runs (``auto``, ``cpu``, ``cuda[:N]``).
    progress : bool
        Progress bars (a bar per round, and those of picking, classification and training).
    log_fn : callable, optional
        Receives one line per step (default: the ``cryosegnet`` logger).

    Returns
    -------
    RefineSummary

    Raises
    ------
    NothingToLearnError
        When no class passes the selection on the starting picks (nothing to train on), or
        only in low-SNR mode and the radial filter learnt from them does not fit.
    CryoSegNetError
        When the picks are too few to classify, or the folders overlap.
    """
    from tqdm import tqdm

    from cryosegnet.model.checkpoint import export_model
    from cryosegnet.picking.batch import pick_batch
    from cryosegnet.training.finetune import finetune

    settings = settings or RefineSettings()
    say = log_fn or log.info
    started = time.monotonic()
    source, out = Path(picks_dir), Path(output)
    if (
        out.resolve() == source.resolve()
        or source.resolve() in out.resolve().parents
        or out.resolve() in source.resolve().parents
    ):
        raise CryoSegNetError(
            f"{out}: the refinement folder must not be the picks folder {source}, inside it "
            "or around it"
        )
    paths = [Path(p) for p in micrographs]
    stems = _by_stem(paths)
    out.mkdir(parents=True, exist_ok=True)
    cache: _DenoisedCache | None = None
    failures: dict[str, str] = {}

    judgement, classes, seconds = _classify_round(out, 0, source, paths, settings, progress)
    fallback = _low_snr_fallback(judgement, settings)
    if fallback:
        say(
            "refine: no class of the starting picks passes the selection; classifying them "
            "again in low-SNR mode (as --refine-low-snr), for the radial filter only"
        )
        settings = replace(settings, classify=replace(settings.classify, low_snr=True))
        shutil.rmtree(classes)
        judgement, classes, seconds = _classify_round(out, 0, source, paths, settings, progress)

    def classify(round_: int, picks: Path) -> tuple[RoundJudgement, Path, float]:
        return _classify_round(out, round_, picks, paths, settings, progress)

    rounds = [
        RefineRound(
            0,
            str(source),
            str(classes),
            len(judgement.particles),
            judgement.n_kept,
            judgement.kept_classes,
            judgement.bad,
            model=str(start_model) if start_model else None,
            seconds={"classify": round(seconds, 1)},
        )
    ]
    say(_round_line(rounds[0], 1 if settings.model == "radial" else settings.rounds))

    def finish(
        particles: pd.DataFrame, micrographs: list, details: dict | None, **outcome: Any
    ) -> RefineSummary:
        """The summary of how the loop ended (``outcome``: the :class:`RefineSummary` fields
        that depend on it), its picks and records written: what every way it ends does."""
        summary = RefineSummary(
            output=out,
            rounds=rounds,
            picks=out / PICKS_FOLDER,
            n_picks=len(particles),
            seconds=time.monotonic() - started,
            **outcome,
        )
        _write_output(summary, settings, particles, micrographs, details)
        return summary

    if not judgement.kept_classes or judgement.n_kept == 0:
        _write_record(out, settings, rounds, "no class kept", None, None)
        mode = " (nor in low-SNR mode)" if fallback else ""
        raise NothingToLearnError(
            f"{classes}: no class of the {len(judgement.particles)} starting picks passes the "
            f"automatic selection{mode}, so there is nothing to train on and no model was written; "
            "look at class_averages.png there (off-centre or wrong-size picks make blurred "
            "averages: try --diameter), or select classes by hand with cryosegnet select"
        )
    if settings.model in ("radial", "auto"):
        radial = _refine_radial(
            judgement,
            rounds,
            stems,
            out,
            make_picker(Path(start_model) if start_model else None),
            settings,
            say,
            finish,
        )
        if isinstance(radial, RefineSummary):
            return radial
        if fallback:
            _write_record(
                out, settings, rounds, "low-SNR classes: the filter does not fit", None, None
            )
            raise NothingToLearnError(
                f"{classes}: only in low-SNR mode do classes of the starting picks pass the "
                "selection, and the radial filter learnt from them sees particles on few "
                "micrographs; the U-Net is not fine-tuned on low-SNR classes, so nothing was "
                "written: try --diameter, or --refine-low-snr --refine-model unet"
            )
        auto_choice = radial
        say("refine: fine-tuning the U-Net instead (--refine-model auto)")
    else:
        auto_choice = None
    current_model: Path | None = Path(start_model) if start_model else None
    final, final_picks = judgement, source
    stop_reason = f"{settings.rounds} round(s) done"
    for round_ in range(1, settings.rounds + 1):
        bar = tqdm(total=3, desc=f"refine round {round_}/{settings.rounds}", disable=not progress)
        times: dict[str, float] = {}
        begun = time.monotonic()
        if cache is None:  # the denoising never changes: one picker's is every round's
            cache = _DenoisedCache(make_picker(current_model))
        samples = []
        groups = dict(tuple(final.particles.groupby("stem")))
        for stem, path in stems.items():
            rows = groups.get(stem)
            if rows is None:
                continue
            denoised, scale, pixel_size = cache.get(path)
            samples.append(
                training_sample(
                    stem,
                    denoised,
                    scale,
                    rows,
                    final.diameter_px,
                    stem in final.bad,
                    settings,
                    pixel_size,
                )
            )
        times["samples"] = round(time.monotonic() - begun, 1)
        begun = time.monotonic()
        bar.set_postfix_str("fine-tuning")
        config = round_config(
            settings,
            settings.seed + round_,
            device,
            progress,
            target_fraction=settings.target_fraction,
        )
        run = out / f"round{round_}" / "train"
        counts = {
            "positives": int(sum(len(s.x) for s in samples)),
            "micrographs": len(samples),
            "flagged": len(final.bad),
        }
        say(
            f"refine round {round_}: fine-tuning on {counts['positives']} kept picks of "
            f"{counts['micrographs']} micrograph(s)"
        )
        result = finetune(
            samples,
            [],
            run,
            checkpoint=current_model,
            config=config,
            metadata={"refine": {"round": round_, **counts, "settings": settings.to_dict()}},
            log_fn=lambda line: log.debug(line),
        )
        times["finetune"] = round(time.monotonic() - begun, 1)
        bar.update()
        bar.set_postfix_str("picking")
        current_model = result.last_path
        begun = time.monotonic()
        picks = out / f"round{round_}" / "picks"
        summary = pick_batch(
            make_picker(current_model),  # type: ignore[arg-type]
            paths,
            picks,
            progress=progress,
            **dict(pick_options or {}),
        )
        failures.update(summary.failures)
        times["pick"] = round(time.monotonic() - begun, 1)
        bar.update()
        bar.set_postfix_str("classifying")
        try:
            judgement, classes, seconds = classify(round_, picks)
        except CryoSegNetError as exc:
            bar.close()
            stop_reason = (
                f"round {round_}'s picks could not be classified ({exc}); the output is "
                f"round {round_ - 1}'s"
            )
            break
        times["classify"] = round(seconds, 1)
        bar.update()
        bar.close()
        change = kept_change(final, judgement)
        rounds.append(
            RefineRound(
                round_,
                str(picks),
                str(classes),
                len(judgement.particles),
                judgement.n_kept,
                judgement.kept_classes,
                judgement.bad,
                change=change,
                model=str(current_model),
                seconds=times,
            )
        )
        say(_round_line(rounds[-1], settings.rounds))
        if judgement.n_kept == 0:
            stop_reason = (
                f"no class of round {round_}'s picks passes the selection; the output is "
                f"round {round_ - 1}'s"
            )
            break
        final, final_picks = judgement, picks
        if change < settings.min_change:
            stop_reason = (
                f"the kept set changed {change:.0%} (< {settings.min_change:.0%}) in round {round_}"
            )
            break
    model_path: Path | None = None
    final_round = next(r for r in rounds if r.picks == str(final_picks))
    if final_round.round > 0 and final_round.model:
        model_path = out / MODEL_NAME
        export_model(
            final_round.model,
            model_path,
            note=f"refined without labels on {len(paths)} micrograph(s), "
            f"{final_round.round} round(s) of pick, 2D classes and fine-tuning",
        )
    particles = final.particles
    if not settings.keep_bad:
        particles = particles[~particles["stem"].isin(final.bad)]
    record, _, _ = _read_record(Path(final_round.classes))
    micrograph_list = [tuple(m) for m in record["micrographs"]]
    return finish(
        particles,
        micrograph_list,
        auto_choice,
        stop_reason=stop_reason,
        model=model_path,
        bad=final.bad,
        failures=failures,
        final_round=final_round.round,
    )


def _write_output(
    summary: RefineSummary,
    settings: RefineSettings,
    particles: pd.DataFrame,
    micrographs: list,
    details: dict | None = None,
) -> None:
    """The loop's picks (``summary.picks``, as ``cryosegnet pick`` lays them out), the list of
    flagged micrographs and ``refine.json``: what every way the loop ends writes."""
    from cryosegnet.classification.outputs import write_pick_folder
    from cryosegnet.io.atomic import atomic_write

    assert summary.picks is not None
    summary.picks.mkdir(parents=True, exist_ok=True)
    manifest = {
        "refined": True,
        "model": str(summary.model) if summary.model else None,
        **({"model_kind": summary.model_kind} if summary.model_kind != "unet" else {}),
        "bad_micrographs": summary.bad,
        "kept_bad": settings.keep_bad,
    }
    write_pick_folder(summary.picks, particles, micrographs, False, manifest)  # type: ignore[arg-type]
    with atomic_write(summary.output / BAD_LIST) as handle:
        handle.write("".join(f"{stem}\n" for stem in summary.bad))
    _write_record(
        summary.output,
        settings,
        summary.rounds,
        summary.stop_reason,
        summary.model,
        summary.picks,
        summary.bad,
        summary.final_round,
        details,
    )


class _Micrographs(Mapping):
    """The batch's micrographs by file stem, read when asked for (one in memory at a time)."""

    def __init__(self, stems: Mapping[str, Path]) -> None:
        self.stems = dict(stems)
        self.pixel_sizes: dict[str, float] = {}  # from the headers of those read

    def __getitem__(self, stem: str) -> np.ndarray:
        from cryosegnet.io.micrographs import read_micrograph

        micrograph = read_micrograph(self.stems[stem])
        if micrograph.pixel_size:
            self.pixel_sizes[stem] = float(micrograph.pixel_size)
        return micrograph.data

    def subset(self, stems: Sequence[str]) -> _Micrographs:
        """Some of the micrographs, recording the pixel sizes it reads here too."""
        part = _Micrographs({stem: self.stems[stem] for stem in stems})
        part.pixel_sizes = self.pixel_sizes
        return part

    def median_pixel_size(self) -> float | None:
        """The median pixel size (Å) of the micrographs read, where their headers give one."""
        known = list(self.pixel_sizes.values())
        return float(np.median(known)) if known else None

    def __iter__(self):
        return iter(self.stems)

    def __len__(self) -> int:
        return len(self.stems)


def _fit_sample(stems: list[str], kept: pd.DataFrame, most: int) -> list[str]:
    """The micrographs the radial filter is fitted and judged on: all of ``stems`` when they
    are at most ``most``, else the ``most`` with the most kept picks (batch order kept)."""
    if len(stems) <= most:
        return stems
    counts = kept["stem"].value_counts()
    ranked = sorted(stems, key=lambda stem: -int(counts.get(stem, 0)))
    chosen = set(ranked[:most])
    return [stem for stem in stems if stem in chosen]


def _fit_radial(
    judgement: RoundJudgement, images: _Micrographs, settings: RefineSettings, picker=None
):
    """The radial filter of round 0's kept picks (re-centred, on micrographs not flagged),
    fitted on :func:`_fit_sample`'s micrographs -> (filter, those micrographs, the U-Net's
    maps of them). With a ``picker`` whose model learnt from labels, the filter learns from
    all of its picks (``settings.labelled_positives``) and adds its map
    (:func:`_with_labelled_map`)."""
    from cryosegnet.training.radial_filter import RadialFilter

    unflagged = judgement.particles[~judgement.particles["stem"].isin(judgement.bad).to_numpy(bool)]
    every_pick = _learns_from_model(picker, settings)
    kept = unflagged if every_pick else unflagged[unflagged["kept"].to_numpy(bool)]
    fitted_on = _fit_sample(list(images), kept, settings.radial_fit_micrographs)
    sample = images.subset(fitted_on)
    positives = {  # a class's alignment re-centres only the picks it kept
        str(stem): _centres(rows, settings.recentre and not every_pick)
        for stem, rows in kept.groupby("stem")
        if stem in sample.stems
    }
    radial = RadialFilter.fit(
        sample, positives, judgement.diameter_px, seed=settings.seed, settings=settings.radial
    )
    starting = int(judgement.particles["stem"].isin(list(sample.stems)).sum())
    radial, maps = _with_labelled_map(radial, sample, picker, settings, starting)
    return radial, sample, maps


def _labelled(picker) -> bool:
    """The starting picker's model learnt from the user's labels only."""
    from cryosegnet.picking.picker import learnt_from_labels

    return picker is not None and learnt_from_labels(picker.checkpoint)


def _learns_from_model(picker, settings: RefineSettings) -> bool:
    """The radial filter learns from every pick of the starting model, not the kept ones
    (``settings.labelled_positives``, for a model that learnt from labels)."""
    return settings.labelled_positives == "model" and _labelled(picker)


def _with_labelled_map(
    radial, sample: _Micrographs, picker, settings: RefineSettings, starting: int
):
    """``radial`` with the map of ``picker``'s U-Net added, where that U-Net learnt from the
    user's labels (``settings.labelled_map_weight``), and the U-Net's maps of ``sample`` at
    its working size (the re-pick of those micrographs reads them again; none without a map).

    The map re-ranks the filter's picks, and the model says how many to write: the threshold is
    the score at which the sum writes, over the fit micrographs, as many picks as the starting
    model did there (``starting``, at its own threshold). A model fine-tuned on labels picks
    about as many as there are particles (on apoferritin, F1 at its default within 0.01 of its
    best), while the filter's own threshold rests on the few, best picks the classes keep: on
    apoferritin ``test`` after ``finetune`` they kept 73 and the filter wrote 399 picks for
    1179 particles. On the validation pairs of three ``finetune`` folds, with a filter learnt
    from labels, F1 at the model's count was within 0.011 of F1 at the filter's own.
    (``bench/studies/few_label_combined.py``)."""
    from cryosegnet.model.checkpoint import checkpoint_sha256
    from cryosegnet.picking.radial_picker import map_at_size

    weight = settings.labelled_map_weight
    if not weight or not _labelled(picker):
        return radial, {}
    # the file name is the copy's, given when the filter is saved beside it (_save_radial)
    radial = replace(
        radial, map_weight=weight, map_model_sha256=checkpoint_sha256(picker.model_path)
    )
    scores, maps = [], {}
    for stem in sample:
        image = sample[stem]
        maps[stem] = picker.probability_maps([picker.preprocess(image)])[0]
        probability = map_at_size(maps[stem], image.shape)
        combined = radial.pick_response(
            radial.with_map(radial.response(image), probability), -np.inf
        )
        scores.append(combined["score"].to_numpy(float))
    ranked = np.sort(np.concatenate(scores))[::-1]
    if starting and len(ranked) > starting:  # else nothing to match: the filter's own threshold
        # halfway between the last pick written and the next: not on a knife-edge
        radial = replace(radial, threshold=float(ranked[starting - 1] + ranked[starting]) / 2)
    return radial, maps


def _classify_round(
    out: Path,
    round_: int,
    picks: Path,
    paths: Sequence[Path],
    settings: RefineSettings,
    progress: bool,
) -> tuple[RoundJudgement, Path, float]:
    """Classify one round's picks into ``out/round<r>/classes`` and judge them; the seconds."""
    from cryosegnet.classification.pipeline import classify_picks

    folder = out / f"round{round_}" / "classes"
    begun = time.monotonic()
    n_classes = settings.classes_for(count_picks(picks))
    classify_picks(
        picks,
        [str(p) for p in paths],
        folder,
        replace(settings.classify, n_classes=n_classes),
        recentre=settings.recentre,
        auto=True,
        selection=settings.selection,
        progress=progress,
    )
    return judge_classification(folder, settings), folder, time.monotonic() - begun


def _low_snr_fallback(judgement: RoundJudgement, settings: RefineSettings) -> bool:
    """Whether round 0 is classified again in low-SNR mode: nothing kept, the mode was off,
    the fallback is on and the radial filter may learn (see ``RefineSettings.low_snr_fallback``)."""
    nothing_kept = not judgement.kept_classes or judgement.n_kept == 0
    return bool(
        nothing_kept
        and settings.low_snr_fallback
        and not settings.classify.low_snr
        and settings.model in ("radial", "auto")
    )


def _refine_radial(
    judgement: RoundJudgement,
    rounds: list[RefineRound],
    stems: Mapping[str, Path],
    out: Path,
    picker,
    settings: RefineSettings,
    say: Callable[[str], None],
    finish: Callable[..., RefineSummary],
) -> RefineSummary | dict:
    """``model="radial"``: fit the filter on round 0's kept picks, re-pick, write the outputs.

    Every micrograph of round 0's classification gives random places and is re-picked; those
    with kept picks (and not flagged) give positives. The starting picker's bad-region step
    runs on the filter's picks too (contamination, carbon: no picks there). ``model="auto"``:
    the same where the filter sees particles in most of the batch (:func:`_judged_empty`);
    else nothing is written and what was measured is returned (the caller fine-tunes the
    U-Net and records it).
    """
    record, _, _ = _read_record(Path(rounds[0].classes))
    listed = [(str(source), str(name)) for source, name in record["micrographs"]]
    sources = {Path(name).stem: (source, name) for source, name in listed}
    images = _Micrographs({stem: stems[stem] for stem in sources if stem in stems})
    begun = time.monotonic()
    try:
        radial, sample, maps = _fit_radial(judgement, images, settings, picker)
    except CryoSegNetError as exc:  # no positive left to learn from (all on flagged ones)
        if settings.model != "auto":
            raise
        say(f"refine: no radial filter ({first_line(exc)})")
        return {"chosen": False, "reason": first_line(exc)}
    own = _learns_from_model(picker, settings)
    what = "picks of the starting model (fine-tuned on labels)" if own else "kept picks"
    say(
        f"refine: radial filter fitted on {radial.n_positives} {what} of "
        f"{radial.n_micrographs} micrograph(s); re-picking {len(images)} micrograph(s)"
    )
    if radial.map_weight:
        say(
            f"refine: the starting model learnt from labels: its map joins the filter's "
            f"response (x {radial.map_weight:g}, robust z units)"
        )
    results = {stem: _radial_pick(radial, sample[stem], picker, maps.get(stem)) for stem in sample}
    ratios = {stem: r.evidence for stem, r in results.items()}
    if not _keeps_filter(radial, ratios, settings, say):
        return {
            "chosen": False,
            "positives": radial.n_positives,
            "tail_ratios": {stem: round(float(r or 0.0), 3) for stem, r in ratios.items()},
        }
    for stem in images:  # the rest of the batch, with the filter chosen
        if stem not in results:
            results[stem] = _radial_pick(radial, images[stem], picker)
    ratios = {stem: r.evidence for stem, r in results.items()}
    empty = _judged_empty(radial, ratios, say)
    bad = list(judgement.bad) + [stem for stem in empty if stem not in judgement.bad]
    dropped = set(bad) if not settings.keep_bad else set()
    particles = _radial_particles({s: r.picks for s, r in results.items()}, dropped, sources)
    # its pixel size goes with it, so that pick --radial-filter refuses other data
    model_path = _save_radial(replace(radial, pixel_size=images.median_pixel_size()), picker, out)
    stop_reason = "radial filter: one round (fitted on round 0's kept picks, then a re-pick)"
    details = {
        "positives": radial.n_positives,
        "unet_map_weight": radial.map_weight,
        "micrographs_with_positives": radial.n_micrographs,
        "picks": len(particles),
        "seconds": round(time.monotonic() - begun, 1),
        "tail_ratios": {stem: round(float(r.evidence or 0.0), 3) for stem, r in results.items()},
        "judged_empty": empty,
        "chosen": True,
    }
    return finish(
        particles,
        listed,
        details,
        stop_reason=stop_reason,
        model=model_path,
        bad=bad,
        final_round=1,
        model_kind="radial",
        judged_empty=[stem for stem in empty if stem not in judgement.bad],
    )


def _keeps_filter(
    radial, tail_ratios: Mapping[str, float | None], settings: RefineSettings, say
) -> bool:
    """Whether the loop keeps the fitted filter: always with ``model="radial"``; with
    ``auto`` where it sees particles in most of the batch (:func:`_filter_fits`), or where a
    fine-tuned model's map joins its response (that map carries the picks where the filter
    alone does not fit)."""
    if settings.model != "auto" or _filter_fits(radial, tail_ratios):
        return True
    seen = f"{_seen(radial, tail_ratios)} of {len(tail_ratios)} micrograph(s)"
    if radial.map_weight:
        say(
            f"refine: the radial filter alone sees particles on {seen}; kept, as the "
            "fine-tuned model's map carries its picks"
        )
        return True
    say(f"refine: the radial filter sees particles on {seen}: it does not match these particles")
    return False


def _save_radial(radial, picker, out: Path) -> Path:
    """Write the filter as ``out/RADIAL_FILTER_NAME``; the U-Net whose map it adds goes beside
    it, copied whole before the filter names it (an earlier run's copy is removed)."""
    if radial.map_weight:
        from cryosegnet.io.atomic import atomic_path

        with atomic_path(out / RADIAL_UNET_NAME) as partial:
            shutil.copyfile(picker.model_path, partial)
        radial = replace(radial, map_model=RADIAL_UNET_NAME)
    else:
        (out / RADIAL_UNET_NAME).unlink(missing_ok=True)
    return radial.save(out / RADIAL_FILTER_NAME)


def _radial_particles(
    picks: Mapping[str, pd.DataFrame], dropped: set[str], sources: Mapping[str, tuple]
) -> pd.DataFrame:
    """The filter's picks of every micrograph but ``dropped``, as the loop's output table
    (its source and name, no class)."""
    tables = [
        table.assign(source=sources[stem][0], micrograph=sources[stem][1])
        for stem, table in picks.items()
        if stem not in dropped
    ]
    columns = ["source", "micrograph", "x", "y", "score", "class", "psi"]
    particles = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=columns)
    return particles.assign(**{"class": 0, "psi": 0.0})


def _radial_pick(radial, image: np.ndarray, picker, unet_probability: np.ndarray | None = None):
    """The filter's picks of one micrograph, less those in the picker's bad regions, with its
    tail ratio as ``evidence`` (as ``pick --radial-filter`` picks with the saved filter);
    ``unet_probability``: the U-Net's map of it at its working size, where already made."""
    from cryosegnet.picking.radial_picker import RadialFilterPicker

    mask = bool(getattr(getattr(picker, "config", None), "mask_bad_regions", False))
    unet = picker if radial.map_weight else None
    filter_picker = RadialFilterPicker(
        radial, picker.denoise_settings, mask, measure_empty=True, unet=unet
    )
    prepared = replace(filter_picker.preprocess(image), unet_probability=unet_probability)
    return filter_picker.pick_denoised([prepared], [image.shape])[0]


def _judged_empty(radial, tail_ratios: Mapping[str, float | None], say) -> list[str]:
    """The micrographs whose response the filter finds no particle in
    (:meth:`RadialFilter.looks_empty`), when it finds them in most of the batch.

    Why the batch check: the filter is learnt to see this batch's particles, so a micrograph
    where it sees none is empty ice (or a phase-randomised copy); but where it sees them in
    fewer than half of the micrographs, the filter does not match these particles (round
    particles only, as measured on simulated TRPV1), and flagging would empty good data.
    """
    ratios = _measured(tail_ratios)
    empty = sorted(stem for stem, r in ratios.items() if radial.looks_empty(r))
    if not empty:
        return []
    if not _filter_fits(radial, tail_ratios):
        say(
            f"refine: the radial filter finds no particle-like response (tail ratio under "
            f"{radial.settings.min_tail_ratio:g}) on {len(empty)} of {len(ratios)} "
            "micrograph(s): it may not match these particles (try --refine-model unet); "
            "none is flagged empty for it"
        )
        return []
    say(
        f"refine: {len(empty)} micrograph(s) flagged empty: the radial filter's response there "
        f"is not lopsided towards particles (tail ratio under "
        f"{radial.settings.min_tail_ratio:g}): {', '.join(empty[:5])}"
        + (" ..." if len(empty) > 5 else "")
    )
    return empty


def _measured(tail_ratios: Mapping[str, float | None]) -> dict[str, float]:
    """Tail ratios by stem, a micrograph without one counted as seen (never judged empty)."""
    return {stem: float(r if r is not None else np.inf) for stem, r in tail_ratios.items()}


def _seen(radial, tail_ratios: Mapping[str, float | None]) -> int:
    """How many micrographs the filter sees particles on."""
    return sum(not radial.looks_empty(r) for r in _measured(tail_ratios).values())


def _filter_fits(radial, tail_ratios: Mapping[str, float | None]) -> bool:
    """The filter sees particles on at least half the batch's micrographs."""
    return 2 * _seen(radial, tail_ratios) >= len(tail_ratios)


def count_picks(picks_dir: str | os.PathLike) -> int:
    """The number of picks in a ``cryosegnet pick`` output folder (every micrograph's file).

    Parameters
    ----------
    picks_dir : str or os.PathLike
        The picks folder.

    Returns
    -------
    int
    """
    from cryosegnet.inspection.picksets import find_pick_files, read_picks

    return sum(len(read_picks(f)) for f in find_pick_files(picks_dir))


def _read_record(folder: Path) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    from cryosegnet.classification.outputs import read_classification

    return read_classification(folder)


def _round_line(r: RefineRound, rounds: int) -> str:
    change = "" if r.change is None else f"; kept set changed {r.change:.0%}"
    flagged = f"; {len(r.bad)} micrograph(s) flagged empty or bad" if r.bad else ""
    return (
        f"refine round {r.round}/{rounds}: {r.n_kept} of {r.n_picks} picks kept in "
        f"{len(r.kept_classes)} class(es){change}{flagged}"
    )


def _write_record(
    out: Path,
    settings: RefineSettings,
    rounds: list[RefineRound],
    stop_reason: str,
    model: Path | None,
    picks: Path | None,
    bad: list[str] | None = None,
    final_round: int | None = None,
    radial: dict | None = None,
) -> None:
    from cryosegnet.classification.outputs import write_json

    extra = {"radial": radial} if radial is not None else {}
    write_json(
        out / RECORD_NAME,
        {
            **extra,
            "settings": settings.to_dict(),
            "rounds": [asdict(r) for r in rounds],
            "stop_reason": stop_reason,
            "model": str(model) if model else None,
            "picks": str(picks) if picks else None,
            "bad_micrographs": bad or [],
            "final_round": final_round,
        },
    )

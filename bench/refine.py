"""The label-free refinement loop (``cryosegnet pick --refine``): before vs after, per round.

    python bench/refine.py [--quick] [--parts sims,negatives,sims_radial,apoferritin,test,cost]
                           [--reuse]
    python bench/refine.py --table-only ...   # the tables of the runs already made, none run

Parts (each run's figures are kept in ``runs/refine/<set>/<variant>/result.json``, so parts run
separately add up in one results file):

* ``sims``: simulated micrographs of one protein with junk (contamination, aggregates, carbon,
  empty fields: the set of ``bench/classify.py``), picked with the shipped model, then refined
  for 3 rounds with no early stop. Every round's picks (round 0: the picker without the loop;
  round r: after r fine-tunings) are scored against the simulator's truth: best F1 and AUPRC
  at half and a quarter of the diameter, F1 at the default threshold, and picks on empty fields
  against full ones. That is the rounds ablation; the kept-set change of each round says where
  the default stop rule would have ended.
* ``negatives``: the same set and round-0 picks, one round, without the rejected-class
  negatives, without the far-ice negatives, and without both (the negatives ablation; with both
  is round 1 of ``sims``).
* ``sims_radial``: the same set and round-0 picks, the loop as ``--refine-model radial`` (one
  round: a whitened radial filter learnt from the kept picks re-picks the set), its scores in
  the batch's units and in each micrograph's own (``RadialFilterSettings.score_units``).
* ``apoferritin``: the real apoferritin ``train`` split with phase-randomised copies of 4 of
  its micrographs mixed into the batch (empty fields at real noise; figures of F1 and AUPRC
  are over the real micrographs only), default picker and ``--diameter 68 --centre-picks``.
  Settings are chosen here and on simulations, never on the ``test`` split. On the centred
  picks the loop also runs in each variant of :data:`LOOP_VARIANTS` (``low-SNR``: each round
  classified as ``classify --low-snr``, i.e. ``pick --refine-low-snr``), each from the same
  round-0 picks; per round it records the picks, the shares above the decoys and kept, and
  the evidence quartiles on the real micrographs against the copies.
* ``test``: the ``test`` split once, with the settings chosen on ``train`` (``--test-options``,
  ``--test-variant``);
  the loop uses no label, so it runs on the test micrographs themselves, as a user would.
* ``cost``: the whole loop with its default rounds on 20 simulated 4096² micrographs of one
  protein, wall time and peak RSS, measured; ``--quick``: one round on the real 4k EPU and FEI
  micrographs, and 20 micrographs extrapolated from it.

Figures go to bench/results/refine.json and refine.md (``--quick``: runs/quick/).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

from benchlib import REPO, SHARED, UNLABELLED, add_bench_options, command_line, results_json

WORK = REPO / "runs" / "refine"
# --table-only: figures of the runs already made only (a one-item list, set once by main).
TABLE_ONLY = [False]
N_DECOYS = 4
DECOY_SEED = 7100
# Picker options of the apoferritin variants (the CLI's --diameter 68 --centre-picks).
PICKER_OPTIONS = {
    "diameter 68, centre-picks": {"diameter": 68.0, "centre_picks": True},
    "default": {},
}


def _labels_of_sims(sim: Path) -> dict:
    import pandas as pd

    labels = {}
    for csv in sorted(sim.glob("*.csv")):
        if csv.name == "micrographs.csv":
            continue
        table = pd.read_csv(csv)
        labels[csv.stem] = pd.DataFrame(
            {"x": table["X-Coordinate"], "y": table["Y-Coordinate"], "diameter": table["Diameter"]}
        )
    return labels


def score_folder(picks: Path, labels: dict, threshold: float | None, decoys=()) -> dict:
    """Pooled figures of a picks folder against labels by stem (d/2 and d/4).

    ``decoys``: stems of phase-randomised copies, left out of F1 and AUPRC (they are the real
    micrographs' measure) and counted as empty fields.
    """
    import numpy as np
    import pandas as pd

    from cryosegnet.evaluation import evaluate_picks
    from cryosegnet.inspection.picksets import find_pick_files, read_picks

    found = {f.stem: read_picks(f.path) for f in find_pick_files(picks)}
    empty_table = pd.DataFrame(columns=["x", "y", "score"])
    tables = {stem: found.get(stem, empty_table) for stem in labels}
    scored = {stem: t for stem, t in tables.items() if stem not in decoys}
    result = evaluate_picks(scored, {s: labels[s] for s in scored}, threshold=threshold)
    pooled = result.pooled
    keys = ("best_f1", "auprc", "best_f1_quarter", "auprc_quarter", "f1", "n_picks")
    figures = {k: float(pooled[k]) if k in pooled else float("nan") for k in keys}
    figures["n_picks_all"] = int(sum(len(t) for t in tables.values()))
    empty = [stem for stem, t in labels.items() if len(t) == 0]
    full = [stem for stem, t in labels.items() if len(t) > 0]
    if empty and full:
        per_empty = np.median([len(tables[s]) for s in empty])
        per_full = np.median([len(tables[s]) for s in full])
        figures["empty_fields"] = len(empty)
        figures["picks_per_empty_vs_full"] = float(per_empty / max(per_full, 1))
        # each empty field's own count: the median above is 0 once most are flagged
        figures["picks_on_empty_fields"] = {stem: len(tables[stem]) for stem in empty}
        figures["median_picks_per_full_field"] = float(per_full)
    return figures


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_loop(
    name: str,
    variant: str,
    micrographs: list[Path],
    labels: dict | None,
    settings,
    picker_options: dict,
    reuse: bool,
    decoys=(),
) -> dict:
    """Pick with the shipped model (once per set and picker options), refine with ``settings``
    into ``variant``'s folder and score every round (``reuse``: an earlier run's figures)."""
    saved = WORK / name / variant / "result.json"
    if TABLE_ONLY[0] and not saved.is_file():
        return _interrupted(name, variant, micrographs, labels, picker_options, decoys)
    if (reuse or TABLE_ONLY[0]) and saved.is_file():
        out = json.loads(saved.read_text())
        refine = WORK / name / variant / "refine"
        if "judge_on_decoys" not in out:  # a run made before that figure was recorded
            out["judge_on_decoys"] = _judge_on_decoys(refine, decoys)
        if "round0_vs_labels" not in out and labels is not None:  # likewise
            out["round0_vs_labels"] = _round0_vs_labels(refine, labels, decoys)
        radial = (refine / "radial_filter.json").is_file() and "final_triaged" in out
        if radial and labels is not None and "every_candidate" not in out:  # likewise
            flagged = out.get("flagged", [])
            out["every_candidate"] = _every_candidate(refine, micrographs, labels, flagged)
            saved.write_text(json.dumps(out, indent=1, default=str) + "\n")
        return out
    out = _run_loop(name, variant, micrographs, labels, settings, picker_options, decoys)
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(out, indent=1, default=str) + "\n")
    return out


def _interrupted(name, variant, micrographs, labels, picker_options, decoys) -> dict:
    """The figures of a run stopped before its end (``--table-only``): every round whose
    classification was written, scored; the refinement's own record is not there."""
    from cryosegnet.classification.outputs import read_classification
    from cryosegnet.picking.picker import Picker

    folder = WORK / name
    refine = folder / variant / "refine"
    if labels is None or not (refine / "round0" / "classes" / "particles.csv").is_file():
        return {"not_run": True}
    picker = Picker(device="cpu", **picker_options)
    out: dict = {
        "micrographs": len(micrographs),
        "decoys": len(decoys),
        "picker_options": picker_options,
        "interrupted": True,
        "rounds": {"0": score_folder(folder / "picks", labels, picker.threshold, decoys)},
        "per_round": [],
        "judge_on_decoys": _judge_on_decoys(refine, decoys),
    }
    for r in range(1, 10):
        classes = refine / f"round{r}" / "classes"
        if not (classes / "particles.csv").is_file():
            break
        model = refine / f"round{r}" / "train" / "last.pt"
        threshold = Picker(device="cpu", **{**picker_options, "model": model}).threshold
        picks = refine / f"round{r}" / "picks"
        out["rounds"][str(r)] = score_folder(picks, labels, threshold, decoys)
    for r in range(0, 10):
        classes = refine / f"round{r}" / "classes"
        if not (classes / "particles.csv").is_file():
            break
        record, _, particles = read_classification(classes)
        out["per_round"].append(
            {
                "round": r,
                "n_picks": len(particles),
                "n_classes": record["settings"]["n_classes"],
                "kept_classes": record.get("auto_selected") or [],
            }
        )
    return out


def _run_loop(name, variant, micrographs, labels, settings, picker_options, decoys) -> dict:
    from cryosegnet.errors import CryoSegNetError
    from cryosegnet.picking.batch import pick_batch
    from cryosegnet.picking.picker import Picker
    from cryosegnet.training.refine_loop import RECORD_NAME, refine_picks

    folder = WORK / name
    picks, refine = folder / "picks", folder / variant / "refine"
    picker = Picker(device="cpu", **picker_options)
    start = time.perf_counter()
    if not (picks / "autopick.star").is_file():
        pick_batch(picker, micrographs, picks, progress=False, overwrite=True)
    pick_s = time.perf_counter() - start
    if refine.exists():
        shutil.rmtree(refine)
    out: dict = {
        "micrographs": len(micrographs),
        "decoys": len(decoys),
        "picker_options": picker_options,
        "settings_changed": _changed(settings),
        "pick_s": pick_s,
        "rounds": {},
    }
    if labels is not None:
        out["rounds"]["0"] = score_folder(picks, labels, picker.threshold, decoys)
        print(name, variant, "round 0", json.dumps(out["rounds"]["0"]), flush=True)
    start = time.perf_counter()
    try:
        summary = refine_picks(
            micrographs,
            picks,
            refine,
            # None: the starting model (the options' own, else the shipped one)
            lambda model: Picker(
                device="cpu", **{**picker_options, "model": model or picker_options.get("model")}
            ),
            start_model=picker_options.get("model"),
            settings=settings,
            device="cpu",
            log_fn=lambda line: print(line, flush=True),
        )
    except CryoSegNetError as exc:
        refused = str(exc).replace(f"{REPO}/", "")  # no machine path in the record
        out.update(refused=refused, loop_s=time.perf_counter() - start)
        out["peak_rss_mb"] = _peak_rss_mb()
        out["judge_on_decoys"] = _judge_on_decoys(refine, decoys)
        return out
    out["judge_on_decoys"] = _judge_on_decoys(refine, decoys)
    if labels is not None:
        out["round0_vs_labels"] = _round0_vs_labels(refine, labels, decoys)
    out["loop_s"] = time.perf_counter() - start
    out["peak_rss_mb"] = _peak_rss_mb()
    out["stop_reason"] = summary.stop_reason.replace(f"{REPO}/", "")  # no machine path
    out["final_round"] = summary.final_round
    out["model_written"] = summary.model is not None
    out["flagged"] = summary.bad
    if summary.model_kind == "radial":  # the filter's fit, and each micrograph's tail ratio
        out["radial"] = json.loads((refine / RECORD_NAME).read_text()).get("radial")
    out["per_round"] = [
        {k: v for k, v in vars(r).items() if k not in ("picks", "classes", "model")}
        for r in summary.rounds
    ]
    if labels is None:
        return out
    thresholds = {0: picker.threshold}
    for r in summary.rounds[1:]:
        # a fine-tuned model's picker may take another stage: its own default threshold
        thresholds[r.round] = Picker(device="cpu", **{**picker_options, "model": r.model}).threshold
        threshold = thresholds[r.round]
        out["rounds"][str(r.round)] = score_folder(Path(r.picks), labels, threshold, decoys)
        print(name, variant, "round", r.round, json.dumps(out["rounds"][str(r.round)]), flush=True)
    if summary.model_kind == "radial" and summary.picks is not None:
        # no fine-tuned model: round 1 is the learnt filter's picks, cut at its own threshold
        from cryosegnet.training.radial_filter import RadialFilter

        threshold = RadialFilter.load(refine / "radial_filter.json").threshold
        thresholds[summary.final_round] = threshold
        round1 = score_folder(summary.picks, labels, threshold, decoys)
        out["rounds"][str(summary.final_round)] = round1
    if summary.picks is not None:
        threshold = thresholds[summary.final_round]
        out["final_triaged"] = score_folder(summary.picks, labels, threshold, decoys)
        if summary.model_kind == "radial":
            out["every_candidate"] = _every_candidate(refine, micrographs, labels, summary.bad)
        empty = [stem for stem, t in labels.items() if len(t) == 0]
        out["empty_fields_flagged"] = sorted(set(empty) & set(summary.bad))
        out["empty_fields"] = empty
        out["full_fields_flagged"] = sorted(set(summary.bad) - set(empty))
    return out


def _every_candidate(refine: Path, micrographs: list[Path], labels: dict, flagged) -> dict:
    """The loop's filter re-picking the real micrographs as the loop does (bad regions
    dropped, flagged micrographs none) but with every local maximum kept, scored as the peers'
    benches score every candidate: the whole ranking for best F1 and AUPRC, F1 at the filter's
    own threshold. Empty fields (the copies) are left out: the output's row counts them.
    ``untriaged``: the same with the flagged real micrographs' picks kept (``--keep-bad``)."""
    import numpy as np
    import pandas as pd

    from cryosegnet.evaluation import evaluate_picks
    from cryosegnet.io.micrographs import read_micrograph
    from cryosegnet.picking.radial_picker import RadialFilterPicker

    picker = RadialFilterPicker.load(refine / "radial_filter.json", threshold=-1e30)
    tables = {
        path.stem: picker.pick(np.asarray(read_micrograph(path).data)).picks
        for path in micrographs
        if path.stem in labels and len(labels[path.stem])
    }
    none = pd.DataFrame(columns=["x", "y", "score"])
    triaged = {stem: none if stem in set(flagged) else t for stem, t in tables.items()}
    keys = ("best_f1", "auprc", "best_f1_quarter", "auprc_quarter", "f1", "n_picks")

    def figures(picks: dict) -> dict:
        pooled = evaluate_picks(
            picks, {s: labels[s] for s in picks}, threshold=picker.radial.threshold
        ).pooled
        out = {k: float(pooled[k]) for k in keys}
        out["n_picks_all"] = int(sum(len(t) for t in picks.values()))
        return out

    result = figures(triaged)
    if any(stem in set(flagged) for stem in tables):
        result["untriaged"] = figures(tables)
    return result


def _judge_on_decoys(refine: Path, decoys) -> dict | None:
    """Can the 2D classes tell the phase-randomised copies from the real micrographs? The share
    of round 0's picks above the classification's noise decoys, on either; per round, the
    shares above the decoys and kept, and the quartiles of the evidence (low-SNR mode)."""
    from cryosegnet.classification.outputs import read_classification

    table = refine / "round0" / "classes" / "particles.csv"
    if not decoys or not table.is_file():
        return None
    per_round = []
    for r in range(10):
        classes = refine / f"round{r}" / "classes"
        if not (classes / "particles.csv").is_file():
            break
        record, _, particles = read_classification(classes)
        on_decoy = particles["micrograph"].map(lambda m: Path(str(m)).stem in set(decoys))
        above = particles["above_decoys"].astype(bool)
        kept = above & particles["class"].isin(record.get("auto_selected") or [])
        one = {
            "round": r,
            "above_share_real": float(above[~on_decoy].mean()),
            "above_share_phase_randomised": float(above[on_decoy].mean()),
            "kept_real": int(kept[~on_decoy].sum()),
            "kept_phase_randomised": int(kept[on_decoy].sum()),
            "picks_real": int((~on_decoy).sum()),
            "picks_phase_randomised": int(on_decoy.sum()),
        }
        if record.get("low_snr") and "evidence" in particles:
            evidence = particles["evidence"].astype(float)
            for label, rows in (("real", ~on_decoy), ("phase_randomised", on_decoy)):
                if rows.any():
                    quartiles = evidence[rows].quantile([0.25, 0.5, 0.75]).round(2).tolist()
                    one[f"evidence_quartiles_{label}"] = quartiles
            one["decoy_threshold"] = round(float(record["decoy_threshold"]), 2)
        per_round.append(one)
    first = per_round[0]
    return {
        "above_share_real": first["above_share_real"],
        "above_share_phase_randomised": first["above_share_phase_randomised"],
        "per_round": per_round,
    }


def _round0_vs_labels(refine: Path, labels: dict, decoys) -> dict | None:
    """What the labels (unseen by the loop) say of round 0's classification: the median
    evidence (low-SNR mode) of real picks within d/2 of a label, of the other real picks and of
    the picks on the copies; and where the labelled particles fall in round 1's targets: the
    share within d/2 of a kept pick, farther than a diameter from every kept pick (the default
    far ice), within d/2 of a rejected pick, and farther than a diameter from every pick."""
    import numpy as np
    from scipy.spatial import cKDTree

    from cryosegnet.classification.outputs import read_classification

    classes = refine / "round0" / "classes"
    if not (classes / "particles.csv").is_file():
        return None
    record, _, particles = read_classification(classes)
    diameter = float(record["diameter_px"])
    stems = particles["micrograph"].map(lambda m: Path(str(m)).stem)
    kept = particles["class"].isin(record.get("auto_selected") or []) & particles["above_decoys"]
    near_label = np.zeros(len(particles), dtype=bool)
    counts = dict.fromkeys(("labelled", "near_kept", "far_from_kept", "in_rejected", "far"), 0)

    def distances(rows, columns, xy):
        if not len(rows):
            return np.full(len(xy), np.inf)
        return cKDTree(rows[columns].to_numpy(float)).query(xy)[0]

    for stem, rows in particles.groupby(stems):
        table = labels.get(stem)
        if table is None or not len(table):
            continue
        xy = table[["x", "y"]].to_numpy(float)
        tree = cKDTree(xy)
        near_label[particles.index.get_indexer(rows.index)] = (
            tree.query(rows[["x", "y"]].to_numpy(float))[0] <= diameter / 2
        )
        to_kept = distances(rows[kept[rows.index]], ["recentred_x", "recentred_y"], xy)
        rejected = rows[~rows["class"].isin(record.get("auto_selected") or [])]
        counts["labelled"] += len(xy)
        counts["near_kept"] += int((to_kept <= diameter / 2).sum())
        counts["far_from_kept"] += int((to_kept > diameter).sum())
        counts["in_rejected"] += int((distances(rejected, ["x", "y"], xy) <= diameter / 2).sum())
        counts["far"] += int((distances(rows, ["x", "y"], xy) > diameter).sum())
    out: dict = {
        f"labelled_{k}_share": counts[k] / max(counts["labelled"], 1)
        for k in counts
        if k != "labelled"
    }
    if record.get("low_snr"):
        on_copy = stems.isin(set(decoys)).to_numpy()
        evidence = particles["evidence"].to_numpy(float)
        out["evidence_median_real_near_label"] = float(np.median(evidence[~on_copy & near_label]))
        out["evidence_median_real_off_label"] = float(np.median(evidence[~on_copy & ~near_label]))
        if on_copy.any():
            out["evidence_median_copies"] = float(np.median(evidence[on_copy]))
        out["evidence_median_noise_decoys"] = float(np.median(record["decoy_scores"]))
    return out


def _changed(settings) -> dict:
    from cryosegnet.training.refine_loop import RefineSettings

    default = asdict(RefineSettings())
    changed = {}
    for key, value in asdict(settings).items():
        if isinstance(value, dict):  # nested settings: their changed fields only
            value = {k: v for k, v in value.items() if default[key][k] != v}
            if value:
                changed[key] = value
        elif default[key] != value:
            changed[key] = value
    return changed


def _sim_set(quick: bool, seed: int, n_sims: int | None) -> tuple[str, list[Path], dict]:
    from classify import simulate

    n = n_sims or (8 if quick else 16)
    sim = WORK / f"sim{seed}_{n}"
    if not (sim / "micrographs.csv").is_file():
        simulate(sim, n, seed)
    return f"sims_seed{seed}_{n}", sorted(sim.glob("*.mrc")), _labels_of_sims(sim)


def sims(quick: bool, seed: int, n_sims: int | None, settings, reuse: bool) -> dict:
    name, micrographs, labels = _sim_set(quick, seed, n_sims)
    rounds = replace(settings, rounds=3, min_change=0.0)
    return run_loop(name, "rounds3", micrographs, labels, rounds, {}, reuse)


SIMS_RUN = "simulated, junk and empty fields: 3 rounds, no early stop"
SIMS_RADIAL_RUN = "simulated, junk and empty fields: radial filter"


def sims_radial(quick: bool, seed: int, n_sims: int | None, settings, reuse: bool) -> dict:
    """The sims part's set and round-0 picks, the loop as ``--refine-model radial`` (one round,
    no fine-tuning), in each of the filter's score units."""
    name, micrographs, labels = _sim_set(quick, seed, n_sims)
    runs = {}
    for units in RADIAL_SCORE_UNITS:
        radial = replace(settings.radial, score_units=units)
        one = replace(settings, model="radial", rounds=1, radial=radial)
        runs[f"{units} units"] = run_loop(
            name, f"radial_{units}_units", micrographs, labels, one, {}, reuse
        )
    return runs


NEGATIVES_RUN = "negatives ablation"
NEGATIVES = {
    "no rejected-class negatives": {"rejected_negatives": False},
    "no far-ice negatives": {"background_negatives": False},
    "no negatives": {"rejected_negatives": False, "background_negatives": False},
}


def negatives(quick: bool, seed: int, n_sims: int | None, settings, reuse: bool) -> dict:
    name, micrographs, labels = _sim_set(quick, seed, n_sims)
    runs = {}
    for variant, change in NEGATIVES.items():
        one = replace(settings, rounds=1, **change)
        slug = variant.replace(" ", "_")
        runs[variant] = run_loop(name, slug, micrographs, labels, one, {}, reuse)
    return runs


#: The phase-randomised copies mixed into the apoferritin batches.
DECOYS = WORK / "apoferritin_decoys"
#: The loop variant whose radial filter the frozen studies read.
RADIAL_VARIANT = "low-SNR, radial filter, micrograph units"


def apoferritin_set_name(split: str, options_name: str, quick: bool = False) -> str:
    """The folder (under ``WORK``) of one apoferritin split picked with ``options_name``."""
    return f"apoferritin_{split}{'_quick' if quick else ''}_{options_name.replace(' ', '')}"


def variant_slug(variant: str) -> str:
    """The folder name of a :data:`LOOP_VARIANTS` entry."""
    return variant.replace(", ", "_").replace(" ", "_")


def apoferritin_refine_folder(
    split: str = "train",
    options_name: str = "diameter 68, centre-picks",
    variant: str = RADIAL_VARIANT,
) -> Path:
    """One apoferritin run's ``pick --refine`` output (its ``radial_filter.json``, ``round0``)."""
    return WORK / apoferritin_set_name(split, options_name) / variant_slug(variant) / "refine"


def _with_decoys(paths: list[Path], labels: dict, n: int) -> tuple[list[Path], dict, list[str]]:
    """``paths`` plus phase-randomised copies of the first ``n`` (empty labels)."""
    import sys

    import mrcfile
    import pandas as pd

    sys.path.insert(0, str(Path(__file__).resolve().parent / "studies"))
    from finetune import phase_randomised

    from cryosegnet.io.micrographs import read_micrograph

    folder = DECOYS
    folder.mkdir(parents=True, exist_ok=True)
    decoys = []
    for k, path in enumerate(paths[:n]):
        target = folder / f"{path.stem}_phase_randomised.mrc"
        if not target.is_file():
            micrograph = read_micrograph(path)
            with mrcfile.new(target, overwrite=True) as mrc:
                mrc.set_data(phase_randomised(micrograph.data, DECOY_SEED + k))
                if micrograph.pixel_size:
                    mrc.voxel_size = micrograph.pixel_size
        decoys.append(target)
    empty = pd.DataFrame(columns=["x", "y", "diameter"])
    labels = {**labels, **{p.stem: empty for p in decoys}}
    return [*paths, *decoys], labels, [p.stem for p in decoys]


#: The radial filter's score units, each measured (``RadialFilterSettings.score_units``).
RADIAL_SCORE_UNITS = ("batch", "micrograph")

#: Loop variants of the apoferritin part, as changes of the loop's settings (``classify`` and
#: ``selection``: changes of those nested settings). ``default`` is the loop as shipped; the
#: others run on the centred picks only (the picks ``classify --low-snr`` was chosen on).
LOOP_VARIANTS: dict[str, dict] = {
    "default": {},
    "low-SNR": {"classify": {"low_snr": True}},
    # background only far from every pick, none from rejected classes: on round 0 of train the
    # default targets put 84 % of the labelled particles in the far ice and 44 % in rejected
    # picks, against 9 % far from every pick
    "low-SNR, background far from every pick": {
        "classify": {"low_snr": True},
        "background_from_picks": True,
        "rejected_negatives": False,
    },
    # no fine-tuning: a whitened radial filter learnt from round 0's kept, re-centred picks,
    # its scores in the batch's units or in each micrograph's own
    **{
        f"low-SNR, radial filter, {units} units": {
            "classify": {"low_snr": True},
            "model": "radial",
            "rounds": 1,
            "radial": {"score_units": units},
        }
        for units in RADIAL_SCORE_UNITS
    },
}


#: The loop variant also measured on the default picker's picks (size estimated).
RADIAL_ON_DEFAULT = RADIAL_VARIANT


def variant_settings(settings, change: dict):
    """``settings`` with a :data:`LOOP_VARIANTS` change (nested settings changed in place)."""
    nested = {
        k: replace(getattr(settings, k), **v) for k, v in change.items() if isinstance(v, dict)
    }
    flat = {k: v for k, v in change.items() if not isinstance(v, dict)}
    return replace(settings, **nested, **flat)


def apoferritin(
    split: str, options_name: str, settings, reuse: bool, quick: bool, variant: str = "default"
) -> dict:
    from benchlib import apoferritin_labels

    paths, labels = apoferritin_labels(split)
    if quick:
        paths = paths[:4]
        labels = {p.stem: labels[p.stem] for p in paths}
    paths, labels, decoys = _with_decoys(paths, labels, min(N_DECOYS, len(paths)))
    name = apoferritin_set_name(split, options_name, quick)
    options = PICKER_OPTIONS[options_name]
    chosen = variant_settings(settings, LOOP_VARIANTS[variant])
    return run_loop(name, variant_slug(variant), paths, labels, chosen, options, reuse, decoys)


def _apoferritin_key(split: str, options: str, variant: str) -> str:
    return f"apoferritin {split}, {options}" + ("" if variant == "default" else f", {variant}")


def cost(settings, reuse: bool, copies: int, measured: bool) -> dict:
    """The loop's time and memory on 4k micrographs.

    ``measured``: the whole loop with its default rounds on 20 simulated 4096² micrographs of
    one protein (:func:`simulated_4k`), timed. Copies of the two real 4k micrographs will not
    do there: the classes of ten identical copies average the same noise ten times, so no
    class average grows cleaner and none passes the selection. Else (--quick) one round on
    ``copies`` copies each of the real EPU and FEI micrographs, and 20 micrographs
    extrapolated from it.
    """
    if measured:
        variant = f"rounds{settings.rounds}"
        micrographs = simulated_4k(20)
        return run_loop("cost_4k_sim_20", variant, micrographs, None, settings, {}, reuse)
    folder = WORK / "cost_micrographs"
    folder.mkdir(parents=True, exist_ok=True)
    micrographs = []
    for label in ("EPU", "FEI"):
        for k in range(copies):
            target = folder / f"{label.lower()}_{k}.mrc"
            if not target.is_file():
                shutil.copyfile(UNLABELLED[label], target)
            micrographs.append(target)
    one = replace(settings, rounds=1)
    run = run_loop(f"cost_4k_{len(micrographs)}", "rounds1", micrographs, None, one, {}, reuse)
    if "per_round" in run:
        run["extrapolated_20_s"] = extrapolate(run, 20, settings.rounds)
    return run


def simulated_4k(n: int) -> list[Path]:
    """``n`` simulated 4096² micrographs of one protein at 0.75 Å/px (TRPV1 from ../shared when
    present, about 130 px across), with the simulator's junk, made once."""
    from cryosegnet.simulation import SimulationConfig, write_dataset

    folder = WORK / "cost_sim_4k"
    if not (folder / "micrographs.csv").is_file():
        trpv1 = SHARED / "data" / "maps" / "trpv1_volume.mrc"
        protein = {"maps": (str(trpv1),)} if trpv1.is_file() else {}
        config = SimulationConfig(size=4096, difficulty="easy", pixel_size=0.75, **protein)
        write_dataset(folder, config, n=n, seed=4096)
    return sorted(folder.glob("*.mrc"))[:n]


def extrapolate(run: dict, n: int, rounds: int) -> float:
    """Seconds of picking plus a ``rounds``-round loop on ``n`` micrographs, from one measured
    round: picking and classification scale with the micrographs (their picks), fine-tuning
    (a fixed number of steps) does not. An extrapolation, not a measurement."""
    scale = n / run["micrographs"]
    first, one = run["per_round"][0]["seconds"], run["per_round"][1]["seconds"]
    per_round = one["finetune"] + scale * (one["pick"] + one["classify"] + one["samples"])
    return scale * (run["pick_s"] + first["classify"]) + rounds * per_round


def fmt3(value) -> str:
    return "-" if value is None or value != value else f"{value:.3f}"


HEADER = [
    "| run | picks | best F1 d/2 | AUPRC d/2 | best F1 d/4 | AUPRC d/4 | F1 at the default "
    "threshold | picks per empty field / per full one |",
    "|---|---|---|---|---|---|---|---|",
]


def _row(label: str, f: dict) -> str:
    return (
        f"| {label} | {f['n_picks_all']} | {fmt3(f['best_f1'])} | {fmt3(f['auprc'])} | "
        f"{fmt3(f['best_f1_quarter'])} | {fmt3(f['auprc_quarter'])} | {fmt3(f['f1'])} | "
        f"{fmt3(f.get('picks_per_empty_vs_full'))} |"
    )


def _judge_lines(per_round: list[dict]) -> list[str]:
    """Per round: kept picks and evidence on the real micrographs vs the copies."""
    if not per_round:
        return []
    lines = [
        "| round | picks real / copies | above the decoys real / copies | kept real / copies | "
        "evidence quartiles real | evidence quartiles copies | decoy threshold |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in per_round:
        quartiles = [
            " / ".join(f"{v:.2f}" for v in r[key]) if key in r else "-"
            for key in ("evidence_quartiles_real", "evidence_quartiles_phase_randomised")
        ]
        threshold = f"{r['decoy_threshold']:.2f}" if "decoy_threshold" in r else "-"
        lines.append(
            f"| {r['round']} | {r['picks_real']} / {r['picks_phase_randomised']} | "
            f"{r['above_share_real']:.1%} / {r['above_share_phase_randomised']:.1%} | "
            f"{r['kept_real']} / {r['kept_phase_randomised']} | {quartiles[0]} | "
            f"{quartiles[1]} | {threshold} |"
        )
    return [*lines, ""]


def _run_lines(name: str, run: dict) -> list[str]:
    decoys = f" + {run['decoys']} phase-randomised copies" if run.get("decoys") else ""
    lines = [f"**{name}** ({run['micrographs'] - run.get('decoys', 0)} micrographs{decoys})", ""]
    if "refused" in run:
        refused = run["refused"].replace(f"{REPO}/", "")  # no machine path in the tables
        lines += [f"The loop refused: {refused}", ""]
    judge = run.get("judge_on_decoys")
    if judge:
        lines += [
            f"Share of round 0's picks above the classification's noise decoys: "
            f"{judge['above_share_real']:.1%} on the real micrographs, "
            f"{judge['above_share_phase_randomised']:.1%} on the phase-randomised copies.",
            "",
        ]
        lines += _judge_lines(judge.get("per_round", []))
    truth = run.get("round0_vs_labels")
    if truth:
        lines += [
            "Round 0 against the labels (unseen by the loop): of the labelled particles, "
            f"{truth['labelled_near_kept_share']:.0%} lie within d/2 of a kept pick, "
            f"{truth['labelled_far_from_kept_share']:.0%} farther than a diameter from every kept "
            f"pick (the default far ice), {truth['labelled_in_rejected_share']:.0%} within d/2 of "
            f"a rejected pick, {truth['labelled_far_share']:.0%} farther than a diameter from "
            "every pick."
            + (
                " Median evidence: real picks within d/2 of a label "
                f"{truth['evidence_median_real_near_label']:.2f}, other real picks "
                f"{truth['evidence_median_real_off_label']:.2f}, picks on the copies "
                f"{truth.get('evidence_median_copies', float('nan')):.2f}, the classification's "
                f"noise decoys {truth['evidence_median_noise_decoys']:.2f}."
                if "evidence_median_real_near_label" in truth
                else ""
            ),
            "",
        ]
    if run["rounds"]:
        lines += HEADER
        rows = [(f"round {k}", f) for k, f in run["rounds"].items()]
        if "final_triaged" in run:
            rows.append(
                (f"output (round {run.get('final_round', '?')}, triaged)", run["final_triaged"])
            )
        if "every_candidate" in run:
            rows.append(("output, every candidate (`-t` lowered)", run["every_candidate"]))
            if "untriaged" in run["every_candidate"]:
                untriaged = run["every_candidate"]["untriaged"]
                rows.append(("the same, flagged real micrographs kept", untriaged))
        lines += [_row(label, f) for label, f in rows]
        lines.append("")
        label, last = next((r for r in rows[::-1] if "picks_on_empty_fields" in r[1]), rows[-1])
        if "picks_on_empty_fields" in last:
            counts = ", ".join(str(n) for n in last["picks_on_empty_fields"].values())
            lines += [
                f"Picks of the {label} on each empty field: {counts}, against a median of "
                f"{last['median_picks_per_full_field']:.0f} on a field with particles.",
                "",
            ]
    if run.get("interrupted"):
        lines.append(
            "Stopped by hand before its end (the shared CPU's time ran out); every round whose "
            "picks were classified is scored; classes per round:"
        )
        for r in run["per_round"]:
            lines.append(
                f"- round {r['round']}: {r['n_picks']} picks in {r['n_classes']} classes, "
                f"{len(r['kept_classes'])} kept"
            )
    for r in [] if run.get("interrupted") else run.get("per_round", []):
        change = "" if r["change"] is None else f", kept set changed {r['change']:.0%}"
        lines.append(
            f"- round {r['round']}: {r['n_kept']} of {r['n_picks']} picks kept in "
            f"{len(r['kept_classes'])} class(es){change}; {len(r['bad'])} flagged; "
            f"times {r['seconds']}"
        )
    if "stop_reason" in run:
        flagged = run.get("flagged", [])
        lines.append(
            f"\nStopped: {run['stop_reason']}. Model written: {run['model_written']}. Flagged: "
            f"{len(flagged)} micrograph(s)"
            + (
                f" ({len(run['empty_fields_flagged'])} of {len(run['empty_fields'])} empty "
                f"fields, {len(run['full_fields_flagged'])} with particles)"
                if "empty_fields" in run
                else ""
            )
            + "."
        )
    if "loop_s" in run:
        lines.append(
            f"Cost: picking {run['pick_s']:.0f} s, loop {run['loop_s']:.0f} s, peak RSS "
            f"{run['peak_rss_mb']:.0f} MB (the bench process) on the shared 2-core CPU."
        )
    if "extrapolated_20_s" in run:
        lines.append(
            "Extrapolated, not measured, to 20 such micrographs and the default rounds "
            "(picking and classification scaled by the number of micrographs, fine-tuning "
            f"fixed): {run['extrapolated_20_s'] / 60:.0f} min."
        )
    lines.append("")
    return lines


def _n_of(negatives_runs: dict) -> int | None:
    """The number of micrographs of the negatives ablation's set (of its first run made)."""
    made = [r for r in negatives_runs.values() if "micrographs" in r]
    return made[0]["micrographs"] if made else None


def markdown(results: dict) -> str:
    lines = [f"Generated by `{results['command']}` from `refine.json`.", ""]
    for name, run in results["runs"].items():
        if name.startswith(NEGATIVES_RUN):
            lines += ["**negatives ablation** (one round, the round-0 picks of the rounds run)", ""]
            lines += HEADER
            same_set = [r for k, r in results["runs"].items() if k.startswith(SIMS_RUN)]
            same_set = [r for r in same_set if r["micrographs"] == _n_of(run)]
            rounds_run = same_set[0].get("rounds", {}) if same_set else {}
            if "1" in rounds_run:
                lines.append(_row("both (round 1 of the rounds run)", rounds_run["1"]))
            for variant, one in run.items():
                if one.get("not_run"):
                    lines.append(f"| {variant}: not run | | | | | | | |")
                elif "1" in one["rounds"]:
                    lines.append(_row(variant + ", round 1", one["rounds"]["1"]))
                else:
                    reason = one.get("refused") or "round 1 not finished"
                    lines.append(f"| {variant}: {reason} | | | | | | | |")
            lines.append("")
            continue
        if not run.get("not_run"):
            lines += _run_lines(name, run)
    return "\n".join(lines)


def _ran(run: dict) -> bool:
    """Whether a run (or, for an ablation, any of its variants) was made: one that was not
    keeps its earlier figures in the results file."""
    variants = [v for v in run.values() if isinstance(v, dict)]
    if run and len(variants) == len(run):  # an ablation: variants by name
        return any(not v.get("not_run") for v in variants)
    return not run.get("not_run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bench_options(parser, "refine", "8 simulated micrographs, 4 apoferritin, 1 copy each 4k")
    parser.add_argument("--parts", default="sims,negatives,sims_radial,apoferritin,cost")
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument(
        "--n-sims", type=int, default=None, help="simulated micrographs (default 16, quick 8)"
    )
    parser.add_argument(
        "--test-options",
        default="diameter 68, centre-picks",
        choices=sorted(PICKER_OPTIONS),
        help="picker options of the test part (chosen on train)",
    )
    parser.add_argument(
        "--test-variant",
        default="default",
        choices=sorted(LOOP_VARIANTS),
        help="loop variant of the test part (chosen on train)",
    )
    parser.add_argument(
        "--reuse", action="store_true", help="take the figures of runs already made from WORK"
    )
    parser.add_argument(
        "--table-only",
        action="store_true",
        help="run nothing: the tables of the runs already made (of --parts) from WORK",
    )
    args = parser.parse_args()
    TABLE_ONLY[0] = args.table_only
    from cryosegnet.training.refine_loop import RefineSettings

    settings = RefineSettings()
    parts = args.parts.split(",")
    path = results_json(args, "refine")
    runs: dict = {}
    if "sims" in parts:
        run = sims(args.quick, args.seed, args.n_sims, settings, args.reuse)
        runs[f"{SIMS_RUN}, {run.get('micrographs', '?')} micrographs"] = run
    if "negatives" in parts:
        runs[NEGATIVES_RUN] = negatives(args.quick, args.seed, args.n_sims, settings, args.reuse)
    if "sims_radial" in parts:
        radial_runs = sims_radial(args.quick, args.seed, args.n_sims, settings, args.reuse)
        for units, run in radial_runs.items():
            runs[f"{SIMS_RADIAL_RUN}, {units}, {run.get('micrographs', '?')} micrographs"] = run
    if "apoferritin" in parts:
        centred = next(iter(PICKER_OPTIONS))
        chosen = [(centred, variant) for variant in LOOP_VARIANTS]
        chosen += [(options, "default") for options in PICKER_OPTIONS if options != centred]
        # the label-free filter on the default route too (the size estimated, no centring)
        chosen += [(options, RADIAL_ON_DEFAULT) for options in PICKER_OPTIONS if options != centred]
        for options, variant in chosen:
            runs[_apoferritin_key("train", options, variant)] = apoferritin(
                "train", options, settings, args.reuse, args.quick, variant
            )
    if "test" in parts:
        runs[_apoferritin_key("test", args.test_options, args.test_variant)] = apoferritin(
            "test", args.test_options, settings, args.reuse, args.quick, args.test_variant
        )
    if "cost" in parts:
        copies = 1 if args.quick else 10
        key = "cost, real 4k micrographs" if args.quick else "cost, 20 simulated 4k micrographs"
        runs[key] = cost(settings, args.reuse, copies, not args.quick)
    old = json.loads(path.read_text()) if path.is_file() else {}
    results = {
        "command": command_line(args),
        "quick": args.quick,
        "settings": asdict(settings),
        # parts run separately add up
        "runs": {**old.get("runs", {}), **{k: v for k, v in runs.items() if _ran(v)}},
    }
    path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    path.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()

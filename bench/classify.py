"""2D classification of picks: junk rejection, re-centring and speed (``cryosegnet classify``).

(a) Simulated micrographs with known particles and junk (ice contamination, aggregates,
carbon, empty fields) are picked with the default picker, classified, and auto-selected;
against the simulator's truth: precision of the kept picks, recall of the true particles among
the picks, and the median centre error of the true picks before and after re-centring. Its
class averages go to docs/img/classes.png (the README's picture) when the figures go to
bench/results.
(b) Speed: a synthetic stack of 10 000 particles in 50 classes at the default settings, in a
child process (wall time and its own peak RSS).
(d) With ``--parts apoferritin_train`` / ``apoferritin``: centred picks (``pick --diameter 68
--centre-picks``) of the real apoferritin ``train`` split (where settings were chosen) / ``test``
split (measured once) classified with ``--low-snr``, ``--auto`` and ``--recentre``, and scored
against the labels: every pick ranked by the picker, by the classification's evidence, and
with the kept ones first; the kept picks, and re-centred (best F1 and AUPRC at d/2 and d/4,
median centre error). The train part also gives each class average's ring contrast and
writes docs/img/apoferritin_classes.png.
(c) With ``--parts ...,relion``: RELION 3.1's ``relion_refine`` 2D classification of 2 000 of
the same simulated picks, timed against ours on them.

    python bench/classify.py [--quick] [--parts accuracy,speed,relion]

Figures go to bench/results/classify.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from benchlib import (
    REPO,
    SHARED,
    add_bench_options,
    command_line,
    cryosegnet_command,
    results_json,
    run_timed,
    write_results,
)

#: Scratch folder of the runs (simulations, picks, classifications); ``CLASSIFY_BENCH_WORK``
#: moves it (two checkouts benchmarking at once must not share it).
WORK = Path(os.environ.get("CLASSIFY_BENCH_WORK", "/tmp/cryosegnet-bench-classify"))
#: The side-by-side class averages (ours, RELION's), relative to the repository.
DOCS_IMAGE = "docs/img/classes_vs_relion.png"
#: The accuracy run's class averages (``--auto``'s choice framed), shown in the README.
CLASSES_IMAGE = "docs/img/classes.png"


TRPV1 = SHARED / "data" / "maps" / "trpv1_volume.mrc"


def simulation_config():
    """Easy micrographs (visible particles) of one protein (a data set is one protein: TRPV1
    from ../shared when present, else a procedural particle per micrograph), with the
    simulator's junk: ice contamination, aggregates, carbon (the preset's chance), empty fields.
    """
    from cryosegnet.simulation import SimulationConfig

    one_protein = {"maps": (str(TRPV1),), "pixel_size": 3.0} if TRPV1.is_file() else {}
    return SimulationConfig(
        size=1024,
        difficulty="easy",
        contamination=(1, 4),
        aggregates=(1, 3),
        empty_probability=0.15,
        **one_protein,
    )


def simulate(folder: Path, n: int, seed: int) -> None:
    from cryosegnet.simulation import write_dataset

    write_dataset(folder, simulation_config(), n=n, seed=seed)


def _matched(particles, sim: Path, mask):
    """Which picks under ``mask`` find a labelled particle (one pick per particle, matched
    within half the particle's diameter, best pick score first): bool per row."""
    import numpy as np
    import pandas as pd

    from cryosegnet.evaluation.matching import match_picks

    found = np.zeros(len(particles), dtype=bool)
    for micrograph, rows in particles[mask].groupby("micrograph"):
        truth = pd.read_csv(sim / (Path(str(micrograph)).stem + ".csv"))
        if not len(truth):
            continue
        radius = float(np.median(truth["Diameter"])) / 2
        match = match_picks(
            rows[["x", "y"]].to_numpy(float),
            rows["score"].to_numpy(float),
            truth[["X-Coordinate", "Y-Coordinate"]].to_numpy(float),
            radius,
        )
        found[rows.index.to_numpy()[match.order][match.label_index >= 0]] = True
    return found


def score_selection(sim: Path, classes: Path) -> dict:
    """Precision/recall of the kept picks and centre errors, against the simulator's truth.

    Precision of the kept picks: the labelled particles they find (one pick each) over the
    kept picks, so a particle picked twice counts once. Recall: the labelled particles the
    kept picks find over those all the picks find. Junk: picks that find no labelled
    particle when all picks are matched. Each kept pick that finds no labelled particle is
    named by what it sits on (the simulator's full truth: a particle in an aggregate,
    touching another, on an edge or on contamination; a second pick of a labelled particle;
    or nothing).
    """
    import numpy as np
    import pandas as pd
    from scipy.spatial import cKDTree

    from cryosegnet.evaluation.matching import match_picks

    particles = pd.read_csv(classes / "particles.csv")
    quality = pd.read_csv(classes / "classes.csv")
    kept_classes = set(quality.loc[quality["auto_selected"], "class"])
    is_true = np.zeros(len(particles), dtype=bool)
    what = np.full(len(particles), "nothing", dtype=object)
    before, after = np.full(len(particles), np.nan), np.full(len(particles), np.nan)
    for micrograph, rows in particles.groupby("micrograph"):
        truth = pd.read_csv(sim / (Path(str(micrograph)).stem + ".csv"))
        truth_xy = truth[["X-Coordinate", "Y-Coordinate"]].to_numpy(float)
        radius = float(np.median(truth["Diameter"])) / 2 if len(truth) else 20.0
        xy = rows[["x", "y"]].to_numpy(float)
        match = match_picks(xy, rows["score"].to_numpy(float), truth_xy, radius)
        matched = match.label_index >= 0
        index = rows.index.to_numpy()[match.order]
        is_true[index[matched]] = True
        centres = truth_xy[match.label_index[matched]]
        before[index[matched]] = np.hypot(*(xy[match.order][matched] - centres).T)
        recentred = rows[["recentred_x", "recentred_y"]].to_numpy(float)[match.order][matched]
        after[index[matched]] = np.hypot(*(recentred - centres).T)
        every = pd.read_csv(sim / "truth" / (Path(str(micrograph)).stem + "_all.csv"))
        if len(every):
            distance, nearest = cKDTree(every[["x", "y"]].to_numpy(float)).query(xy)
            reason = np.where(
                every["pickable"].to_numpy(bool)[nearest],
                "second pick",
                every["reason"].astype(str).to_numpy()[nearest],
            )
            near = distance <= every["diameter"].median() / 2
            what[rows.index.to_numpy()] = np.where(near, reason, "nothing")
    what[is_true] = "labelled particle"
    kept = particles["auto_kept"].to_numpy(bool)
    n_true, n_junk = int(is_true.sum()), int((~is_true).sum())
    found_all = int(is_true.sum())
    found = _matched(particles, sim, kept)
    found_kept = int(found.sum())
    what[found] = "labelled particle"
    junk_kept = pd.Series(what[kept & ~found]).value_counts()
    return {
        "picks_classified": len(particles),
        "true_picks": n_true,
        "junk_picks": n_junk,
        "precision_before_selection": n_true / max(len(particles), 1),
        "kept": int(kept.sum()),
        "kept_classes": sorted(int(c) for c in kept_classes),
        "precision_kept": found_kept / max(int(kept.sum()), 1),
        "recall_true_among_picks": found_kept / max(found_all, 1),
        "junk_rejected": float((~kept[~is_true]).mean()) if n_junk else float("nan"),
        "unlabelled_kept_on": {str(k): int(v) for k, v in junk_kept.items()},
        "median_centre_error_before_px": float(np.nanmedian(before)),
        "median_centre_error_after_px": float(np.nanmedian(after)),
        "median_centre_error_kept_before_px": float(np.nanmedian(before[kept])),
        "median_centre_error_kept_after_px": float(np.nanmedian(after[kept])),
        "classes": quality.to_dict(orient="records"),
    }


#: Seeds the classification and selection settings are chosen on (``--parts ablation``).
CHOICE_SEEDS = (5, 7)
#: Classification variants the ablation compares: name -> ClassifySettings changes.
CLASSIFY_VARIANTS = {
    "hard assignment (default)": {},
    "soft assignment, T 1 annealed": {"soft_temperature": 1.0},
    "soft assignment, T 4 annealed": {"soft_temperature": 4.0},
}
#: Selection variants scored on each classification: name -> SelectionSettings changes.
SELECTION_VARIANTS = {
    "default": {},
    "no evidence test": {"evidence_test": False},
    "no residual test": {"max_residual_z": float("inf")},
    "no duplicate removal": {"duplicate_distance": 0.0},
}


def _picked(run: Path, n_micrographs: int, seed: int, again: bool = True) -> None:
    """Simulate ``run/sim`` (once) and pick it with the default picker into ``run/picks``
    (again only when ``again``)."""
    sim, picks = run / "sim", run / "picks"
    if not (sim / "micrographs.csv").is_file():
        simulate(sim, n_micrographs, seed)
    if not again and (picks / "autopick.star").is_file():
        return
    pick = run_timed(
        [
            *cryosegnet_command(),
            "pick",
            *sorted(str(p) for p in sim.glob("*.mrc")),
            "-o",
            str(picks),
        ],
        run / "pick.log",
        stamp=False,
    )
    if not pick.ok:
        raise SystemExit(f"pick failed, see {pick.log}")


def _selection_scored(sim: Path, classes: Path, changes: dict) -> dict:
    """Precision and recall of ``--auto`` with ``changes`` to the selection settings, on an
    existing classification (:func:`score_selection` on a copy with that choice)."""
    import shutil

    import pandas as pd

    from cryosegnet.classification.selection import redo_selection
    from cryosegnet.classification.settings import SelectionSettings

    selection = replace(SelectionSettings(), **changes)
    record = json.loads((classes / "classification.json").read_text())
    particles = pd.read_csv(classes / "particles.csv")
    quality = pd.read_csv(classes / "classes.csv")
    # The decoy tests at this selection's quantile, as ``select --auto`` redoes them.
    _, _, particles = redo_selection(record, quality, particles, selection)
    variant = classes.parent / (classes.name + "_selection")
    variant.mkdir(exist_ok=True)
    particles.to_csv(variant / "particles.csv", index=False)
    shutil.copy(classes / "classes.csv", variant / "classes.csv")
    figures = score_selection(sim, variant)
    return {
        key: figures[key]
        for key in ("kept", "precision_kept", "recall_true_among_picks", "unlabelled_kept_on")
    }


def ablation(n_micrographs: int, n_classes: int) -> dict:
    """Each classification variant on the choice seeds' picks, and each selection variant on
    each classification: the evidence on which the defaults were chosen."""
    from cryosegnet.classification.pipeline import classify_picks
    from cryosegnet.classification.settings import ClassifySettings

    rows = []
    for seed in CHOICE_SEEDS:
        run = WORK / f"seed{seed}"
        _picked(run, n_micrographs, seed, again=False)
        for number, (name, changes) in enumerate(CLASSIFY_VARIANTS.items()):
            classes = run / f"ablation_{number}"
            settings = replace(ClassifySettings(n_classes=n_classes), **changes)
            start = time.perf_counter()
            classify_picks(
                run / "picks", [str(run / "sim")], classes, settings, recentre=True, auto=True,
                progress=False,
            )  # fmt: skip
            seconds = time.perf_counter() - start
            for selection, selection_changes in SELECTION_VARIANTS.items():
                figures = _selection_scored(run / "sim", classes, selection_changes)
                rows.append(
                    {"seed": seed, "classification": name, "selection": selection,
                     "classify_s": seconds, **figures}
                )  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    return {"micrographs": n_micrographs, "seeds": list(CHOICE_SEEDS), "rows": rows}


def accuracy(n_micrographs: int, n_classes: int, seed: int) -> dict:
    from cryosegnet.classification.pipeline import classify_picks
    from cryosegnet.classification.settings import ClassifySettings

    run = WORK / f"seed{seed}"
    sim, picks, classes = run / "sim", run / "picks", run / "classes"
    _picked(run, n_micrographs, seed)
    settings = ClassifySettings(n_classes=n_classes)
    start = time.perf_counter()
    summary = classify_picks(
        picks, [str(sim)], classes, settings, recentre=True, auto=True, progress=False
    )
    seconds = time.perf_counter() - start
    figures = score_selection(sim, classes)
    return {
        "micrographs": n_micrographs,
        "seed": seed,
        "simulation": repr(simulation_config()).replace(str(SHARED), "../shared"),
        "settings": asdict(settings),
        "classify_s": seconds,
        "classification_only_s": summary.seconds,
        **figures,
    }


def speed_child(n: int, k: int, out: Path) -> None:
    """Classify a synthetic stack of ``n`` particles into ``k`` classes; figures to ``out``."""
    import numpy as np
    import torch

    from cryosegnet.classification.align import sample_images
    from cryosegnet.classification.classify2d import classify_particles
    from cryosegnet.classification.settings import ClassifySettings

    settings = ClassifySettings(n_classes=k)
    size = settings.working_box
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] - size // 2
    shapes = []
    for _ in range(20):  # blobby asymmetric shapes about one particle diameter across
        image = np.zeros((size, size))
        for _ in range(3):
            cx, cy = rng.uniform(-8, 8, 2)
            sx, sy = rng.uniform(3, 7, 2)
            image -= np.exp(-((xx - cx) ** 2 / (2 * sx**2) + (yy - cy) ** 2 / (2 * sy**2)))
        shapes.append(image)
    templates = torch.tensor(np.array(shapes), dtype=torch.float32)
    which = rng.integers(0, len(shapes), n)
    stack = sample_images(
        templates[which],
        torch.tensor(rng.uniform(0, 360, n), dtype=torch.float32),
        torch.tensor(rng.uniform(-3, 3, (n, 2)), dtype=torch.float32),
    ).numpy()
    stack += rng.normal(0, 1.0, stack.shape).astype(np.float32)
    start = time.perf_counter()
    result = classify_particles(stack, settings, progress=False)
    seconds = time.perf_counter() - start
    selection_s = time_auto_selection(result, rng)
    out.write_text(
        json.dumps(
            {
                "particles": n,
                "classes": k,
                "classify_s": seconds,
                "auto_selection_s": selection_s,
                "torch_threads": torch.get_num_threads(),
                "changed_per_iteration": result.changed,
                "settings": asdict(replace(settings)),
            }
        )
    )


def time_auto_selection(result, rng) -> float:
    """Seconds ``--auto`` takes on ``result`` (decoy test, class measures, class rule, residual
    and duplicate tests), the particles spread over 20 made-up 4096-pixel micrographs."""
    import pandas as pd

    from cryosegnet.classification.quality import class_quality, decoy_threshold, judged_scores
    from cryosegnet.classification.selection import auto_select, keep_particles
    from cryosegnet.classification.settings import SelectionSettings

    selection = SelectionSettings()
    n = len(result.classes)
    start = time.perf_counter()
    judged, _ = judged_scores(result)
    above = judged > decoy_threshold(result, selection.decoy_quantile)
    chosen = auto_select(class_quality(result, above), selection)
    xy = rng.uniform(0, 4096, (n, 2))
    particles = pd.DataFrame(
        {
            "micrograph": rng.integers(0, 20, n).astype(str),
            "class": result.classes + 1,
            "correlation": result.scores,
            "above_decoys": above,
            "recentred_x": xy[:, 0],
            "recentred_y": xy[:, 1],
            "residual_lowpass": result.residual_lowpass,
        }
    )
    keep_particles(particles, chosen, selection, diameter_px=100.0)
    return time.perf_counter() - start


def speed(n: int, k: int) -> dict:
    out = WORK / "speed.json"
    load_before = [round(x, 2) for x in os.getloadavg()]
    child = run_timed(
        [sys.executable, __file__, "--speed-child", str(n), str(k), str(out)],
        WORK / "speed.log",
        stamp=False,
    )
    if not child.ok:
        raise SystemExit(f"speed run failed, see {child.log}")
    figures = json.loads(out.read_text())
    return {
        **figures,
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "process_wall_s": child.wall_s,
        "cpu_s": child.cpu_s,
        "peak_rss_mb": child.max_rss_mb,
        "target_s": 180,
        "target_rss_mb": 3072,
    }


RELION_ITERATIONS = 15


def relion(n_classes: int, seed: int, n_particles: int = 2000, timeout_s: float = 5400) -> dict:
    """RELION 3.1 ``relion_refine`` 2D classification and ours on the same ``n_particles``
    picks (a seeded random subset of the classified picks), both timed in this process's
    niceness (on a shared machine run the bench under ``nice``: both inherit it).

    RELION runs on boxes it extracts itself, downscaled at extraction to our working box
    (``--scale``), with ``--dont_check_norm`` and 2 threads. Killed past ``timeout_s``; the
    seconds of each finished iteration (from its output files) then give an extrapolation.
    """
    import shutil

    import numpy as np
    import pandas as pd

    from cryosegnet.classification.pipeline import classify_picks
    from cryosegnet.classification.settings import ClassifySettings
    from cryosegnet.io.coordinates import make_picks, write_coordinate_star, write_index_star

    if shutil.which("relion_refine") is None or shutil.which("relion_preprocess") is None:
        return {"skipped": "relion_refine or relion_preprocess is not on PATH"}
    run = WORK / f"seed{seed}"
    folder = run / "relion"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    record = json.loads((run / "classes" / "classification.json").read_text())
    particles = pd.read_csv(run / "classes" / "particles.csv")
    chosen = particles.sample(n=min(n_particles, len(particles)), random_state=0)
    pixel_a = simulation_config().pixel_size or 4.0
    diameter_px = float(record["diameter_px"])
    entries = []
    for micrograph, rows in chosen.groupby("micrograph"):
        name = f"sim/{Path(str(micrograph)).name}"
        star = folder / "coords" / "sim" / f"{Path(name).stem}_autopick.star"
        star.parent.mkdir(parents=True, exist_ok=True)
        picks = make_picks(rows["x"], rows["y"], rows["score"])
        write_coordinate_star(star, picks, manifest={"diameter_px": diameter_px})
        entries.append((name, str(star.relative_to(folder))))
    write_index_star(folder / "coords" / "autopick.star", entries)
    (folder / "sim").symlink_to(run / "sim")
    (folder / "mics.star").write_text(
        "\n# version 30001\n\ndata_optics\n\nloop_\n_rlnOpticsGroupName #1\n"
        "_rlnOpticsGroup #2\n_rlnMicrographOriginalPixelSize #3\n_rlnVoltage #4\n"
        "_rlnSphericalAberration #5\n_rlnAmplitudeContrast #6\n_rlnMicrographPixelSize #7\n"
        f"opticsGroup1 1 {pixel_a} 300.0 2.7 0.1 {pixel_a}\n\n# version 30001\n\n"
        "data_micrographs\n\nloop_\n_rlnMicrographName #1\n_rlnOpticsGroup #2\n"
        + "".join(f"{name} 1\n" for name, _ in entries)
    )
    settings = ClassifySettings(n_classes=n_classes)
    box = int(round(settings.box_factor * diameter_px / 2)) * 2
    extract = run_timed(
        [
            "relion_preprocess",
            "--i",
            "mics.star",
            "--coord_dir",
            "coords/",
            "--coord_suffix",
            "_autopick.star",
            "--part_star",
            "particles.star",
            "--part_dir",
            "Extract/",
            "--extract",
            "--extract_size",
            str(box),
            "--scale",
            str(settings.working_box),
            "--norm",
            "--bg_radius",
            str(int(settings.mask_radius_px)),
            "--invert_contrast",
        ],
        folder / "preprocess.log",
        cwd=folder,
        stamp=False,
    )
    if not extract.ok:
        return {"skipped": f"relion_preprocess failed: see {extract.log}"}
    (folder / "out").mkdir()
    diameter_a = diameter_px * pixel_a
    refine_started = time.time()
    refine = run_timed(
        [
            "relion_refine",
            "--i",
            "particles.star",
            "--o",
            "out/run",
            "--K",
            str(n_classes),
            "--iter",
            str(RELION_ITERATIONS),
            "--dont_check_norm",
            "--tau2_fudge",
            "2",
            "--particle_diameter",
            f"{diameter_a:.0f}",
            "--flatten_solvent",
            "--zero_mask",
            "--oversampling",
            "1",
            "--psi_step",
            "10",
            "--offset_range",
            "5",
            "--offset_step",
            "2",
            "--norm",
            "--scale",
            "--j",
            "2",
        ],
        folder / "refine.log",
        cwd=folder,
        timeout=timeout_s,
        stamp=False,
    )
    iteration_s = _relion_iteration_seconds(folder / "out", refine_started)
    start = time.perf_counter()
    ours = classify_picks(
        folder / "coords",
        [str(run / "sim")],
        folder / "ours",
        settings,
        diameter=diameter_px,
        progress=False,
    )
    ours_s = time.perf_counter() - start
    n_extracted = sum(
        1 for line in (folder / "particles.star").read_text().splitlines() if "@Extract/" in line
    )
    return {
        "particles": int(len(chosen)),
        "relion_extracted": n_extracted,
        "relion_refine": {
            "command": " ".join(refine.command),
            "returncode": refine.returncode,
            "wall_s": refine.wall_s,
            "cpu_s": refine.cpu_s,
            "max_rss_mb": refine.max_rss_mb,
            "timeout_s": timeout_s,
            "iterations_done": len(iteration_s),
            "iteration_s": iteration_s,
            "extrapolated_s": _extrapolate(iteration_s, RELION_ITERATIONS),
        },
        "ours_iterations": settings.iterations,
        "ours_wall_s": ours_s,
        "ours_classification_s": ours.seconds,
        "note": "relion_refine without CTF correction (no --ctf flag), on boxes extracted by "
        "relion_preprocess at the same box and working size (--scale), contrast inverted; "
        "ours reads the micrographs itself",
        "relion_classes_sizes": _relion_class_sizes(folder / "out", np),
    }


def _relion_iteration_seconds(out: Path, started: float) -> list[float]:
    """Wall seconds of each finished iteration, from the times its model files were written
    (the setup before iteration 1 is counted in the first)."""
    written = [started] + [p.stat().st_mtime for p in sorted(out.glob("run_it*_model.star"))[1:]]
    return [round(b - a, 1) for a, b in zip(written, written[1:])]


def _extrapolate(iteration_s: list[float], iterations: int) -> float | None:
    """The wall time of all ``iterations`` had they gone on at the pace of the last finished
    ones (the mean of the last three beyond the first two, which sample more finely)."""
    if not iteration_s or len(iteration_s) >= iterations:
        return None
    tail = iteration_s[2:][-3:] or iteration_s[-1:]
    return float(sum(iteration_s) + (iterations - len(iteration_s)) * sum(tail) / len(tail))


def _relion_class_sizes(out: Path, np) -> list[int]:
    import starfile

    data = sorted(out.glob("run_it*_data.star"))
    if not data:
        return []
    table = starfile.read(data[-1], always_dict=True)["particles"]
    return np.bincount(table["rlnClassNumber"].to_numpy(int)).tolist()[1:]


def side_by_side(folder: Path, out: Path) -> Path | None:
    """Ours and RELION's class averages of the same picks, each sorted by class size (the
    RELION run's last finished iteration), as one PNG for the docs."""
    import matplotlib
    import mrcfile
    import numpy as np
    import pandas as pd
    import starfile

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    relion_runs = sorted((folder / "out").glob("run_it*_classes.mrcs"))
    ours_path = folder / "ours" / "class_averages.mrcs"
    if not relion_runs or not ours_path.is_file():
        return None
    last = relion_runs[-1]
    with mrcfile.open(ours_path, permissive=True) as handle:
        ours = np.asarray(handle.data, dtype=float)
    with mrcfile.open(last, permissive=True) as handle:
        theirs = np.asarray(handle.data, dtype=float)
    ours_sizes = pd.read_csv(folder / "ours" / "classes.csv")["size"].to_numpy()
    model = starfile.read(str(last).replace("_classes.mrcs", "_model.star"), always_dict=True)
    theirs_sizes = model["model_classes"]["rlnClassDistribution"].to_numpy() * len(
        pd.read_csv(folder / "ours" / "particles.csv")
    )
    iteration = int(last.name.split("_it")[1][:3])
    rows = [
        ("cryosegnet classify (15 iterations)", ours, ours_sizes),
        (f"RELION 3.1 relion_refine (iteration {iteration})", theirs, theirs_sizes),
    ]
    k = max(len(ours), len(theirs))
    figure, axes = plt.subplots(2, k, figsize=(0.9 * k, 2.4), dpi=110)
    for row, (title, images, sizes) in enumerate(rows):
        order = np.argsort(-sizes)
        for column in range(k):
            ax = axes[row, column]
            ax.set_axis_off()
            if column < len(images):
                ax.imshow(images[order[column]], cmap="gray")
                ax.set_title(f"{sizes[order[column]]:.0f}", fontsize=6)
        axes[row, 0].text(0, -0.35, title, transform=axes[row, 0].transAxes, fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)
    return out


PARTS = ("accuracy", "speed", "relion", "apoferritin_train", "apoferritin", "ablation")
#: The apoferritin class averages (train split), relative to the repository.
APOFERRITIN_IMAGE = "docs/img/apoferritin_classes.png"
#: Picks of a hollow particle need the labelled size and centring (BENCHMARKS "Centred picks").
APOFERRITIN_PICK = ["--diameter", "68", "--centre-picks"]


def _apoferritin_scores(
    particles, labels: dict, kept_only: bool, recentred: bool, rerank: bool, column="score"
) -> dict:
    """Pooled figures of the classified picks against the labels (``rerank``: kept first;
    ``column``: the ranking score, the picker's by default)."""
    import pandas as pd

    from cryosegnet.evaluation import evaluate_picks

    by_stem = {Path(str(m)).stem: rows for m, rows in particles.groupby("micrograph")}
    tables = {}
    for stem in labels:
        rows = by_stem.get(stem, particles.iloc[0:0])
        if kept_only:
            rows = rows[rows["kept"]]
        x, y = ("recentred_x", "recentred_y") if recentred else ("x", "y")
        score = rows[column].to_numpy(float) + (1e3 * rows["kept"].to_numpy() if rerank else 0)
        tables[stem] = pd.DataFrame({"x": rows[x], "y": rows[y], "score": score, "diameter": 68.0})
    pooled = evaluate_picks(tables, labels).pooled
    keys = ("best_f1", "auprc", "best_f1_quarter", "auprc_quarter", "median_centre_error")
    return {k: float(pooled[k]) for k in (*keys, "grid_best_f1", "n_picks")}


def _ring_contrast(average, diameter_px: float) -> float:
    """Centre minus darkest shell level of a class average (dark particles, working px):
    positive for a ring with a lighter centre (a hollow particle), negative for a dark blob.
    The same measure as bench/centring.py's, in the normalised particles' units."""
    import numpy as np

    size = average.shape[-1]
    coords = np.arange(size) - size // 2
    radius = np.hypot(*np.meshgrid(coords, coords, indexing="ij"))
    centre = average[radius <= 0.1 * diameter_px].mean()
    shell = min(
        average[(radius > r) & (radius <= r + 0.05 * diameter_px)].mean()
        for r in np.arange(0.2, 0.5, 0.05) * diameter_px
    )
    return float(centre - shell)


def _classified_run(split: str, folder: Path, extra: list[str]) -> tuple:
    """Pick ``split`` with :data:`APOFERRITIN_PICK`, classify with the defaults, ``--auto``
    ``--recentre`` and ``extra``: (particles table with ``kept``, classes table, labels, wall s)."""
    import pandas as pd
    from benchlib import apoferritin_labels

    paths, labels = apoferritin_labels(split)
    picks, classes = folder / "picks", folder / "classes"
    pick = [*cryosegnet_command(), "pick", *map(str, paths), "-o", str(picks), *APOFERRITIN_PICK]
    if not run_timed(pick, folder / "pick.log", timeout=3600).ok:
        raise SystemExit(f"pick failed, see {folder / 'pick.log'}")
    classify = [*cryosegnet_command(), "classify", str(picks), *map(str, paths)]
    classify += ["-o", str(classes), "--auto", "--recentre", *extra]
    timed = run_timed(classify, folder / "classify.log", timeout=3600)
    if not timed.ok:
        raise SystemExit(f"classify failed, see {folder / 'classify.log'}")
    particles = pd.read_csv(classes / "particles.csv")
    particles["kept"] = particles["auto_kept"].astype(bool)
    return particles, pd.read_csv(classes / "classes.csv"), labels, timed.wall_s


def _ranked_rows(particles, labels: dict) -> dict:
    """Every pick ranked by the picker, by the classification's evidence, and kept first."""
    return {
        "all picks": _apoferritin_scores(particles, labels, False, False, False),
        "all picks, by evidence": _apoferritin_scores(
            particles, labels, False, False, False, "evidence"
        ),
        "all picks, kept first": _apoferritin_scores(particles, labels, False, False, True),
        "kept picks": _apoferritin_scores(particles, labels, True, False, False),
        "kept picks, re-centred": _apoferritin_scores(particles, labels, True, True, False),
    }


def apoferritin_train() -> dict:
    """Classify the centred picks of the apoferritin ``train`` split (where the classification
    settings were chosen): class averages, ring contrast, what ``--auto`` keeps, re-ranking."""
    import mrcfile
    import numpy as np
    import pandas as pd

    folder = WORK / "apoferritin_train"
    particles, classes, labels, seconds = _classified_run("train", folder, ["--low-snr"])
    truth = _labelled(particles, labels)
    with mrcfile.open(folder / "classes" / "class_averages.mrcs", permissive=True) as mrc:
        averages = np.asarray(mrc.data, dtype=np.float64)
    record = json.loads((folder / "classes" / "classification.json").read_text())
    settings = record["settings"]
    diameter_px = settings["working_box"] / settings["box_factor"]
    rings = [_ring_contrast(a, diameter_px) for a in averages]
    per_class = pd.DataFrame(
        {
            "class": classes["class"],
            "size": classes["size"],
            "ring_contrast": np.round(rings, 3),
            "auto_selected": classes["auto_selected"].astype(bool),
            "labelled_fraction": [
                round(float(truth[particles["class"] == c].mean()), 3) for c in classes["class"]
            ],
        }
    )
    REPO.joinpath(APOFERRITIN_IMAGE).parent.mkdir(parents=True, exist_ok=True)
    REPO.joinpath(APOFERRITIN_IMAGE).write_bytes(
        (folder / "classes" / "class_averages.png").read_bytes()
    )
    return {
        "split": "train",
        **_kept_figures(particles, truth),
        "classes_with_a_ring": int((np.array(rings) > 0).sum()),
        "classes": per_class.to_dict(orient="list"),
        "classify_seconds": seconds,
        "settings": settings,
        "image": APOFERRITIN_IMAGE,
        **_ranked_rows(particles, labels),
    }


def _kept_figures(particles, truth) -> dict:
    """Picks, kept picks, and the share of each near a label (``truth``: :func:`_labelled`)."""
    kept = particles["kept"]
    return {
        "picks": int(len(particles)),
        "kept": int(kept.sum()),
        "labelled_fraction_all": round(float(truth.mean()), 3),
        "labelled_fraction_kept": round(float(truth[kept].mean()), 3) if kept.any() else None,
    }


def _labelled(particles, labels: dict):
    """Whether each pick lies within half a diameter (34 px) of a labelled particle."""
    import numpy as np
    from scipy.spatial import cKDTree

    truth = np.zeros(len(particles), dtype=bool)
    for micrograph, rows in particles.groupby("micrograph"):
        table = labels.get(Path(str(micrograph)).stem)
        if table is None or not len(table):
            continue
        distance, _ = cKDTree(table[["x", "y"]].to_numpy(float)).query(
            rows[["x", "y"]].to_numpy(float)
        )
        truth[particles.index.get_indexer(rows.index)] = distance <= 34.0
    return truth


def apoferritin() -> dict:
    """Classify the centred picks of the apoferritin ``test`` split (measured once, nothing
    chosen on it) with ``--low-snr``, ``--auto`` and ``--recentre``; score the ranking."""
    import numpy as np

    folder = WORK / "apoferritin_test"
    particles, _, labels, seconds = _classified_run("test", folder, ["--low-snr"])
    truth = _labelled(particles, labels)
    run = {
        **_kept_figures(particles, truth),
        "classify_seconds": seconds,
        **_ranked_rows(particles, labels),
    }
    print(json.dumps(run, indent=1), flush=True)
    return {
        "sets": {"centred, diameter 68": run},
        "n_micrographs": len(labels),
        "split": "test",
        "np": np.__version__,
    }


def fmt3(value) -> str:
    """A figure with 3 decimals, or a dash."""
    return "-" if value is None or value != value else f"{value:.3f}"


def _speed_conditions(run: dict) -> str:
    """The speed run's ``--auto`` time and the machine's load average, where recorded."""
    text = ""
    if "auto_selection_s" in run:
        text += f"; `--auto` selection {run['auto_selection_s']:.1f} s of it"
    if "load_average_before" in run:
        before, after = run["load_average_before"], run["load_average_after"]
        text += (
            f"; load average (1, 5, 15 min) before {', '.join(f'{v:.1f}' for v in before)}, "
            f"after {', '.join(f'{v:.1f}' for v in after)} on {run['cpu_count']} cores"
        )
    return text


def markdown(results: dict) -> str:
    """The results as tables (bench/results/classify.md, included in BENCHMARKS.md)."""
    lines = ["Generated by `python bench/classify.py` from `classify.json`.", ""]
    junk = results.get("junk_and_recentring")
    if junk:
        lines += [
            f"Junk and re-centring: {junk['micrographs']} simulated micrographs of one protein "
            f"with junk (seed {junk['seed']}), default picks, `classify --auto --recentre`.",
            "",
            "| picks | true among them | kept | precision kept (target 0.95) | recall of true "
            "(target 0.90) | junk rejected | centre error before -> after (px) |",
            "|---|---|---|---|---|---|---|",
            f"| {junk['picks_classified']} | {junk['true_picks']} | {junk['kept']} | "
            f"{fmt3(junk['precision_kept'])} | {fmt3(junk['recall_true_among_picks'])} | "
            f"{fmt3(junk['junk_rejected'])} | {junk['median_centre_error_before_px']:.1f} -> "
            f"{junk['median_centre_error_after_px']:.1f} |",
            "",
        ]
        if junk.get("unlabelled_kept_on"):
            named = ", ".join(f"{v} {k}" for k, v in junk["unlabelled_kept_on"].items())
            lines += [f"Kept picks that find no labelled particle sit on: {named}.", ""]
        if junk.get("image"):
            lines += [f"Its class averages (`--auto`'s choice framed): `{junk['image']}`.", ""]
    ablation_run = results.get("ablation_choice_seeds")
    if ablation_run:
        seeds = " and ".join(str(seed) for seed in ablation_run["seeds"])
        lines += [
            f"Ablation on the seeds the settings were chosen on ({seeds}; "
            f"{ablation_run['micrographs']} micrographs each, the same picks): each "
            "classification, and `--auto` with one of its per-particle tests changed.",
            "",
            "| seed | classification | selection | kept | precision kept | recall of true |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {row['seed']} | {row['classification']} | {row['selection']} | {row['kept']} "
            f"| {fmt3(row['precision_kept'])} | {fmt3(row['recall_true_among_picks'])} |"
            for row in ablation_run["rows"]
        ]
        lines.append("")
    speed_run = results.get("speed_10k_50_classes")
    if speed_run:
        lines += [
            f"Speed: {speed_run['particles']} particles, {speed_run['classes']} classes, "
            f"{len(speed_run['changed_per_iteration'])} iterations: "
            f"{speed_run['process_wall_s']:.0f} s wall (target {speed_run['target_s']}; "
            f"{speed_run['cpu_s']:.0f} s CPU), "
            f"peak RSS {speed_run['peak_rss_mb']:.0f} MB (target {speed_run['target_rss_mb']})"
            + _speed_conditions(speed_run)
            + ".",
            "",
        ]
    relion_run = results.get("relion_comparison")
    if relion_run:
        refine = relion_run["relion_refine"]
        done = refine.get("iterations_done")
        if refine["returncode"] == 0:
            outcome = (
                f"RELION {refine['wall_s']:.0f} s wall and {refine['cpu_s']:.0f} s CPU for its "
                f"{done} iterations, measured (ours / RELION wall: "
                f"{relion_run['ours_wall_s'] / refine['wall_s']:.3f})"
            )
        else:
            times = ", ".join(f"{t:.0f}" for t in refine.get("iteration_s", []))
            outcome = (
                f"RELION stopped (exit {refine['returncode']}) after {done} of "
                f"{RELION_ITERATIONS} iterations, {refine['wall_s']:.0f} s wall and "
                f"{refine['cpu_s']:.0f} s CPU; its iterations took {times} s; EXTRAPOLATED at "
                f"the pace of the last ones, the {RELION_ITERATIONS} would take about "
                f"{refine['extrapolated_s']:.0f} s (not measured)"
            )
        lines += [
            f"RELION 3.1 `relion_refine` on the same {relion_run['particles']} picks, 20 classes, "
            f"`--j 2`, boxes downscaled to 48 px at extraction, `--dont_check_norm`, both "
            f"under `nice` on a shared, loaded 2-core machine: ours "
            f"{relion_run['ours_wall_s']:.0f} s for {relion_run['ours_iterations']} "
            f"iterations; {outcome}.",
            "",
        ]
    rows = (
        "all picks",
        "all picks, by evidence",
        "all picks, kept first",
        "kept picks",
        "kept picks, re-centred",
    )
    header = [
        "| split | picks scored | n | best F1 d/2 | AUPRC d/2 | best F1 d/4 | AUPRC d/4 | "
        "centre error px |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def ranked(split: str, run: dict) -> list[str]:
        return [
            f"| {split} | {row} | {int(run[row]['n_picks'])} | {fmt3(run[row]['best_f1'])} | "
            f"{fmt3(run[row]['auprc'])} | {fmt3(run[row]['best_f1_quarter'])} | "
            f"{fmt3(run[row]['auprc_quarter'])} | {fmt3(run[row]['median_centre_error'])} |"
            for row in rows
            if row in run
        ]

    train = results.get("apoferritin_train")
    apo = results.get("apoferritin_test")
    if train or apo:
        lines += [
            "Apoferritin: picks made with `pick --diameter 68 --centre-picks`, classified with "
            "`--low-snr --auto --recentre` (defaults otherwise: 20 classes); radius d/2 = "
            "34 px, d/4 = 17 px. Ranked "
            "by the picker's score, by the classification's pose-marginalised evidence, or "
            "with the picks `--auto` keeps first (then the picker's score).",
            "",
        ]
    if train:
        classes = train["classes"]
        lines += [
            f"Train split (settings chosen here): {train['picks']} picks, "
            f"{train['labelled_fraction_all']:.0%} within d/2 of a label; `--auto` keeps "
            f"{train['kept']}, {fmt3(train['labelled_fraction_kept'])} of them within d/2; "
            f"{train['classes_with_a_ring']} of {len(classes['class'])} class averages show "
            f"a ring (centre lighter than the shell): `{train['image']}`.",
            "",
            "| class | size | ring contrast | within d/2 of a label | kept by --auto |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {c} | {n} | {r:.3f} | {f:.3f} | {'yes' if a else 'no'} |"
            for c, n, r, f, a in zip(
                classes["class"],
                classes["size"],
                classes["ring_contrast"],
                classes["labelled_fraction"],
                classes["auto_selected"],
                strict=True,
            )
        ]
        lines += ["", *header, *ranked("train", train), ""]
    if apo:
        lines += [
            f"Test split ({apo['n_micrographs']} micrographs, measured once, nothing chosen on "
            "it):",
            "",
            *header,
        ]
        for run in apo["sets"].values():
            lines += ranked("test", run)
        lines.append("")
        for run in apo["sets"].values():
            if "labelled_fraction_all" in run:
                lines += [
                    f"Test: {run['picks']} picks, {run['labelled_fraction_all']:.0%} within d/2 "
                    f"of a label; `--auto` keeps {run['kept']}, "
                    f"{fmt3(run['labelled_fraction_kept'])} of them within d/2.",
                    "",
                ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_bench_options(parser, "classify", "8 micrographs instead of 24")
    parser.add_argument(
        "--parts",
        default="accuracy,speed",
        help=f"comma-separated parts to run, of {','.join(PARTS)} (relion needs accuracy's "
        "picks); the others are kept from an existing results file",
    )
    parser.add_argument(
        "--seed", type=int, default=23, help="simulation seed (not the one settings were chosen on)"
    )
    parser.add_argument("--speed-child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument(
        "--table-only",
        action="store_true",
        help="rewrite classify.md and the side-by-side image from the last runs only",
    )
    args = parser.parse_args(argv)
    path = results_json(args, "classify")
    if args.table_only:
        path.with_suffix(".md").write_text(markdown(json.loads(path.read_text())))
        side_by_side(WORK / f"seed{args.seed}" / "relion", REPO / DOCS_IMAGE)
        return 0
    if args.speed_child:
        n, k, out = args.speed_child
        speed_child(int(n), int(k), Path(out))
        return 0
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s): {', '.join(unknown)}")
    WORK.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    if "accuracy" in parts:
        n_micrographs = 8 if args.quick else 24
        results["junk_and_recentring"] = accuracy(n_micrographs, 20, seed=args.seed)
        results["junk_and_recentring"]["command"] = command_line(args)
        if not args.quick and args.json is None:  # the committed figures: their picture too
            averages = WORK / f"seed{args.seed}" / "classes" / "class_averages.png"
            REPO.joinpath(CLASSES_IMAGE).write_bytes(averages.read_bytes())
            results["junk_and_recentring"]["image"] = CLASSES_IMAGE
        shown = {
            k: v
            for k, v in results["junk_and_recentring"].items()
            if k not in ("classes", "settings", "simulation")
        }
        print(json.dumps(shown, indent=1))
    if "ablation" in parts:
        results["ablation_choice_seeds"] = ablation(8 if args.quick else 24, 20)
        results["ablation_choice_seeds"]["command"] = command_line(args)
    if "speed" in parts:
        results["speed_10k_50_classes"] = speed(10_000, 50)
        results["speed_10k_50_classes"]["command"] = command_line(args)
        print(json.dumps(results["speed_10k_50_classes"], indent=1))
    if "apoferritin_train" in parts:
        results["apoferritin_train"] = apoferritin_train()
        results["apoferritin_train"]["command"] = command_line(args)
        print(json.dumps(results["apoferritin_train"], indent=1), flush=True)
    if "apoferritin" in parts:
        results["apoferritin_test"] = apoferritin()
        results["apoferritin_test"]["command"] = command_line(args)
    if "relion" in parts:
        results["relion_comparison"] = relion(20, seed=args.seed)
        results["relion_comparison"]["command"] = command_line(args)
        image = side_by_side(WORK / f"seed{args.seed}" / "relion", REPO / DOCS_IMAGE)
        results["relion_comparison"]["image"] = DOCS_IMAGE if image else None
        print(json.dumps(results["relion_comparison"], indent=1))
    # Read the file only now: a long part (RELION) may run beside shorter ones.
    results = {**(json.loads(path.read_text()) if path.is_file() else {}), **results}
    write_results(path, results, markdown(results), indent=2)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

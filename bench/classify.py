"""2D classification of picks: junk rejection, re-centring and speed (``cryosegnet classify``).

(a) Simulated micrographs with known particles and junk (ice contamination, aggregates,
carbon, empty fields) are picked with the default picker, classified, and auto-selected;
against the simulator's truth: precision of the kept picks, recall of the true particles among
the picks, and the median centre error of the true picks before and after re-centring.
(b) Speed: a synthetic stack of 10 000 particles in 50 classes at the default settings, in a
child process (wall time and its own peak RSS).
(c) With ``--relion``: RELION's ``relion_refine`` 2D classification of the same simulated picks
(RELION 3.1), timed against ours.

    python bench/classify.py [--quick] [--relion]

Figures go to bench/results/classify.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from benchlib import RESULTS, SHARED, command_line, cryosegnet_command, run_timed

WORK = Path("/tmp/cryosegnet-bench-classify")


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


def score_selection(sim: Path, classes: Path) -> dict:
    """Precision/recall of the kept picks and centre errors, against the simulator's truth."""
    import numpy as np
    import pandas as pd

    from cryosegnet.evaluation.matching import match_picks

    particles = pd.read_csv(classes / "particles.csv")
    quality = pd.read_csv(classes / "classes.csv")
    kept_classes = set(quality.loc[quality["auto_selected"], "class"])
    is_true = np.zeros(len(particles), dtype=bool)
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
    kept = (particles["class"].isin(kept_classes) & particles["above_decoys"]).to_numpy()
    near_any = np.zeros(len(particles), dtype=bool)
    for micrograph, rows in particles.groupby("micrograph"):
        every = pd.read_csv(sim / "truth" / (Path(str(micrograph)).stem + "_all.csv"))
        if len(every):
            from scipy.spatial import cKDTree

            distance, _ = cKDTree(every[["x", "y"]].to_numpy(float)).query(
                rows[["x", "y"]].to_numpy(float)
            )
            near_any[rows.index.to_numpy()] = distance <= every["diameter"].median() / 2
    n_true, n_junk = int(is_true.sum()), int((~is_true).sum())
    return {
        "picks_classified": len(particles),
        "true_picks": n_true,
        "junk_picks": n_junk,
        "precision_before_selection": n_true / max(len(particles), 1),
        "kept": int(kept.sum()),
        "kept_classes": sorted(int(c) for c in kept_classes),
        "precision_kept": float(is_true[kept].mean()) if kept.any() else float("nan"),
        "kept_near_any_simulated_particle": float(near_any[kept].mean())
        if kept.any()
        else float("nan"),
        "picks_near_any_simulated_particle": float(near_any.mean()),
        "recall_true_among_picks": float(kept[is_true].mean()) if n_true else float("nan"),
        "junk_rejected": float((~kept[~is_true]).mean()) if n_junk else float("nan"),
        "median_centre_error_before_px": float(np.nanmedian(before)),
        "median_centre_error_after_px": float(np.nanmedian(after)),
        "median_centre_error_kept_before_px": float(np.nanmedian(before[kept])),
        "median_centre_error_kept_after_px": float(np.nanmedian(after[kept])),
        "classes": quality.to_dict(orient="records"),
    }


def accuracy(n_micrographs: int, n_classes: int, seed: int) -> dict:
    from cryosegnet.classification.pipeline import classify_picks
    from cryosegnet.classification.settings import ClassifySettings

    sim, picks, classes = WORK / "sim", WORK / "picks", WORK / "classes"
    if not (sim / "micrographs.csv").is_file():
        simulate(sim, n_micrographs, seed)
    pick = run_timed(
        [
            *cryosegnet_command(),
            "pick",
            *sorted(str(p) for p in sim.glob("*.mrc")),
            "-o",
            str(picks),
        ],
        WORK / "pick.log",
        stamp=False,
    )
    if not pick.ok:
        raise SystemExit(f"pick failed, see {pick.log}")
    settings = ClassifySettings(n_classes=n_classes)
    start = time.perf_counter()
    summary = classify_picks(
        picks, [str(sim)], classes, settings, recentre=True, auto=True, progress=False
    )
    seconds = time.perf_counter() - start
    figures = score_selection(sim, classes)
    return {
        "micrographs": n_micrographs,
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
    out.write_text(
        json.dumps(
            {
                "particles": n,
                "classes": k,
                "classify_s": seconds,
                "torch_threads": torch.get_num_threads(),
                "changed_per_iteration": result.changed,
                "settings": asdict(replace(settings)),
            }
        )
    )


def speed(n: int, k: int) -> dict:
    out = WORK / "speed.json"
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
        "process_wall_s": child.wall_s,
        "cpu_s": child.cpu_s,
        "peak_rss_mb": child.max_rss_mb,
        "target_s": 180,
        "target_rss_mb": 3072,
    }


def relion(n_classes: int) -> dict:
    """relion_refine 2D classification of the simulated picks (extracted by relion_preprocess)."""
    import shutil

    if shutil.which("relion_refine") is None:
        return {"skipped": "relion_refine is not on PATH"}
    return {"skipped": "not run"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer micrographs")
    parser.add_argument("--relion", action="store_true", help="also time relion_refine")
    parser.add_argument("--skip-speed", action="store_true", help="no 10 000-particle run")
    parser.add_argument(
        "--speed-only",
        action="store_true",
        help="only the 10 000-particle run, added to an existing classify.json",
    )
    parser.add_argument("--speed-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.speed_child:
        n, k, out = args.speed_child
        speed_child(int(n), int(k), Path(out))
        return 0
    WORK.mkdir(parents=True, exist_ok=True)
    results: dict = {"command": command_line(args)}
    n_micrographs = 8 if args.quick else 24
    results["junk_and_recentring"] = accuracy(n_micrographs, 20, seed=11)
    print(
        json.dumps(
            {
                k: v
                for k, v in results["junk_and_recentring"].items()
                if k != "classes" and k != "settings"
            },
            indent=1,
        )
    )
    if not args.skip_speed:
        results["speed_10k_50_classes"] = speed(10_000, 50)
        print(json.dumps(results["speed_10k_50_classes"], indent=1))
    if args.relion:
        results["relion"] = relion(20)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "classify.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS / 'classify.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Bad-region masking of the default ``pick``: picks on contamination and carbon, with and
without the mask, and what it costs the true particles (no evaluation set).

    python bench/bad_regions.py            # about 6 minutes on 2 cores
    python bench/bad_regions.py --quick    # about 2 minutes: fewer simulated fields and
                                           # apoferritin micrographs
    python bench/bad_regions.py --table-only   # rewrite the .md from the JSON

The default picker runs once per micrograph (denoise, U-Net); its instance stage then runs
twice on the same map, with the bad-region mask (the default) and without it
(``--keep-bad-regions``), so the two differ by the mask alone. Measured:

* the UCSF contamination micrograph: the share of picks inside the shared expert mask
  (> 0.5) and within half a pick's diameter of it (its rim);
* simulated fields with contamination and carbon (the simulator's footprints; easy, medium
  and hard presets, several seeds): the share of picks on or within half a diameter of a
  footprint, and the recall of the true (pickable) particles;
* simulated clean fields: the share of the field masked, and the recall;
* the apoferritin ``train`` split (crowded, low-contrast particles): recall and precision.
  The ``test`` split is an evaluation set and is not read;
* unlabelled real micrographs with visible particles (EPU, FEI, T20S, 80S ribosome): the
  share masked and the picks dropped (not with ``--quick``);
* the mask's own time on a 1024-px working image.

The thresholds (``BadRegionSettings``) were chosen on these same data: the figures show that
the chosen defaults meet the goals there, not an independent test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import cv2
import mrcfile
import numpy as np
import pandas as pd
import torch
from benchlib import (
    SHARED,
    UNLABELLED,
    add_bench_options,
    apoferritin_labels,
    command_line,
    fmt,
    results_json,
)

from cryosegnet.evaluation.matching import match_picks
from cryosegnet.io.micrographs import read_micrograph
from cryosegnet.picking.picker import Picker
from cryosegnet.postprocessing.bad_regions import BadRegionSettings, bad_region_mask
from cryosegnet.simulation import SimulationConfig, micrograph_seed, simulate_micrograph

SEED = 7100  # simulated fields with contamination and carbon
CLEAN_SEED = 7200  # simulated fields without
UCSF = SHARED / "data" / "real" / "ucsf-contamination"
DIFFICULTIES = ("easy", "medium", "hard")


def near(picks: pd.DataFrame, region: np.ndarray) -> tuple[int, int]:
    """(picks inside ``region``, picks inside or within half their diameter of it)."""
    if picks.empty or not region.any():
        return 0, 0
    gap = cv2.distanceTransform((~region).astype(np.uint8), cv2.DIST_L2, 5)
    row = np.clip(picks["y"].round().astype(int), 0, region.shape[0] - 1)
    col = np.clip(picks["x"].round().astype(int), 0, region.shape[1] - 1)
    distance = gap[row, col]
    return int((distance == 0).sum()), int((distance <= picks["diameter"] / 2).sum())


def found(picks: pd.DataFrame, truth: pd.DataFrame, radius: float) -> int:
    """True particles matched one-to-one by a pick within ``radius``."""
    if picks.empty or truth.empty:
        return 0
    xy, scores = picks[["x", "y"]].to_numpy(), picks["score"].to_numpy()
    matched = match_picks(xy, scores, truth[["x", "y"]].to_numpy(), radius)
    return int(matched.is_tp.sum())


class Pair:
    """The default picker and the same picker keeping bad regions, sharing one U-Net pass."""

    def __init__(self) -> None:
        self.masked = Picker(device="cpu")
        self.kept = Picker(device="cpu", mask_bad_regions=False)

    def __call__(self, image: np.ndarray) -> dict:
        denoised = self.masked.preprocess(image)
        probability = self.masked.probability_maps([denoised])[0]
        masked = self.masked.instances(probability, image.shape, denoised)
        kept = self.kept.instances(probability, image.shape, denoised)
        masked_share = 0.0 if masked.bad_regions is None else float(masked.bad_regions.mean())
        return {"masked": masked.picks, "kept": kept.picks, "mask_share": masked_share}


def ucsf_row(pair: Pair) -> dict | None:
    if not (UCSF / "micrograph.mrc").exists():
        return None
    truth = mrcfile.read(UCSF / "bad-region-mask.mrc") > 0.5
    picks = pair(read_micrograph(UCSF / "micrograph.mrc").data)
    row: dict = {"group": "UCSF contamination micrograph", "mask_share": picks["mask_share"]}
    for which in ("kept", "masked"):
        inside, rim = near(picks[which], truth)
        n = len(picks[which])
        row[which] = {"picks": n, "inside": inside, "inside_or_rim": rim, "share": rim / n}
    return row


def unlabelled_rows(pair: Pair) -> list[dict]:
    """Real micrographs with visible particles and no labels: what the mask takes there."""
    rows = []
    for name, path in UNLABELLED.items():
        if not path.exists():
            continue
        picks = pair(read_micrograph(path).data)
        rows.append(
            {
                "group": f"unlabelled real: {name}",
                "mask_share": picks["mask_share"],
                "kept": {"picks": len(picks["kept"])},
                "masked": {"picks": len(picks["masked"])},
            }
        )
    return rows


def simulated_rows(pair: Pair, n: int, clean: bool) -> list[dict]:
    rows = []
    for difficulty in DIFFICULTIES:
        totals: dict = {
            w: {"picks": 0, "inside": 0, "inside_or_rim": 0, "found": 0} for w in ("kept", "masked")
        }
        n_true, shares = 0, []
        for i in range(n):
            config = SimulationConfig(
                size=1024,
                difficulty=difficulty,
                contamination=0 if clean else (1, 4),
                carbon=False if clean else i % 2 == 0,
            )
            seed = micrograph_seed(CLEAN_SEED if clean else SEED, i)
            sim = simulate_micrograph(config, np.random.default_rng(seed))
            footprint = sim.contamination_mask | sim.carbon_mask
            truth = sim.picks
            radius = float(truth["diameter"].median()) / 2 if len(truth) else 1.0
            picks = pair(sim.image)
            shares.append(picks["mask_share"])
            n_true += len(truth)
            for which in ("kept", "masked"):
                inside, rim = near(picks[which], footprint)
                total = totals[which]
                total["picks"] += len(picks[which])
                total["inside"] += inside
                total["inside_or_rim"] += rim
                total["found"] += found(picks[which], truth, radius)
        for total in totals.values():
            total["share"] = total["inside_or_rim"] / max(1, total["picks"])
            total["recall"] = total["found"] / max(1, n_true)
        what = "clean" if clean else "contamination and carbon"
        rows.append(
            {
                "group": f"simulated {difficulty}, {what}",
                "fields": n,
                "true_particles": n_true,
                "mask_share": float(np.mean(shares)),
                **totals,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def apoferritin_row(pair: Pair, limit: int | None) -> dict | None:
    paths, labels = apoferritin_labels("train")
    paths = [p for p in paths if p.exists()][:limit]
    if not paths:
        return None
    totals = {w: {"picks": 0, "found": 0} for w in ("kept", "masked")}
    n_true, shares = 0, []
    for path in paths:
        truth = labels[path.stem]
        picks = pair(read_micrograph(path).data)
        shares.append(picks["mask_share"])
        n_true += len(truth)
        radius = float(truth["diameter"].median()) / 2
        for which in ("kept", "masked"):
            totals[which]["picks"] += len(picks[which])
            totals[which]["found"] += found(picks[which], truth, radius)
    for total in totals.values():
        total["recall"] = total["found"] / n_true
        total["precision"] = total["found"] / max(1, total["picks"])
    return {
        "group": "apoferritin `train` split",
        "micrographs": len(paths),
        "true_particles": n_true,
        "mask_share": float(np.mean(shares)),
        **totals,
    }


def mask_seconds(repeats: int = 5) -> float:
    """Median time of the mask on a 1024-px working image (a simulated contaminated field)."""
    sim = simulate_micrograph(
        SimulationConfig(size=1024, difficulty="medium", contamination=3), np.random.default_rng(1)
    )
    denoised = Picker(device="cpu").preprocess(sim.image)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        bad_region_mask(denoised, 40.0)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bench_options(parser, "bad_regions", "2 fields per preset, 4 apoferritin")
    parser.add_argument("--table-only", action="store_true", help="rewrite the .md from the JSON")
    args = parser.parse_args(argv)
    json_path = results_json(args, "bad_regions")
    if args.table_only:
        json_path.with_suffix(".md").write_text(markdown(json.loads(json_path.read_text())))
        return 0
    torch.set_num_threads(2)
    pair = Pair()
    rows = [r for r in [ucsf_row(pair)] if r]
    rows += simulated_rows(pair, 2 if args.quick else 6, clean=False)
    rows += simulated_rows(pair, 1 if args.quick else 2, clean=True)
    apoferritin = apoferritin_row(pair, 4 if args.quick else None)
    rows += [apoferritin] if apoferritin else []
    rows += [] if args.quick else unlabelled_rows(pair)
    record = {
        "command": command_line(args),
        "settings": BadRegionSettings().to_dict(),
        "mask_seconds_1024px": round(mask_seconds(), 4),
        "groups": rows,
    }
    json_path.write_text(json.dumps(record, indent=1))
    json_path.with_suffix(".md").write_text(markdown(record))
    print(markdown(record))
    return 0


def counts(row: dict) -> str:
    """Picks inside + picks on the rim only."""
    return f"{row['inside']}+{row['inside_or_rim'] - row['inside']}"


def markdown(record: dict) -> str:
    lines = [
        "Bad-region masking of the default `pick` (the same U-Net map, instance stage with and "
        "without the mask; thresholds chosen on these data; no evaluation set). "
        f"Command: `{record['command']}`. Mask time on a 1024-px working image: "
        f"{record['mask_seconds_1024px'] * 1000:.0f} ms.",
        "",
        "| micrographs | masked share | picks (kept → masked) | on/near bad region "
        "(kept → masked) | recall (kept → masked) |",
        "|---|---|---|---|---|",
    ]
    for row in record["groups"]:
        kept, masked = row["kept"], row["masked"]
        share = (
            f"{fmt(kept['share'])} ({counts(kept)}) → {fmt(masked['share'])} ({counts(masked)})"
            if "share" in kept
            else "-"
        )
        recall = f"{fmt(kept['recall'])} → {fmt(masked['recall'])}" if "recall" in kept else "-"
        lines.append(
            f"| {row['group']} | {fmt(row['mask_share'])} | {kept['picks']} → "
            f"{masked['picks']} | {share} | {recall} |"
        )
    lines += [
        "",
        "On/near: the share of picks inside the region (UCSF: the shared expert mask > 0.5; "
        "simulations: the contamination and carbon footprints) or within half their diameter "
        "of it (in brackets: inside + on the rim only). Masked share: the part of the "
        "micrograph the mask covers. Recall: true particles matched within half their "
        "diameter. The simulated fields with contamination and carbon are seeds 0-5 of "
        f"{SEED} (carbon on the even ones); the thresholds were chosen on seeds 0-3, clean "
        "fields, the UCSF micrograph, the apoferritin `train` split and the unlabelled "
        "real micrographs (on which the mask should, and does, take nothing).",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

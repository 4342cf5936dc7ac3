"""The evidence of ``pick --skip-empty`` on the data its cut was chosen on (no evaluation set).

Study, decided 2026-12-02: the cut of ``pick --skip-empty`` (``EmptySettings``: 3 standard
errors, the largest evidence over 4 LoG scales x 3 levels), and that the test is an option,
not the default: weak, crowded real particles fall below it too.

    python bench/studies/empty_evidence.py                # about 5 minutes on 2 cores
    python bench/studies/empty_evidence.py --table-only   # rewrite the .md from the JSON

The empty-micrograph test (``cryosegnet.postprocessing.empty_micrographs``) keeps no pick on a
micrograph whose particle evidence (dark LoG blobs against the same micrograph's bright ones, in
standard errors) is below ``EmptySettings.min_evidence``. This bench shows, per group of
micrographs, the spread of that evidence and how many fall below the cut:

* simulated fields without particles (``density 0``: ice, gradients, carbon, contamination, at
  the simulator's easy, medium and hard presets) and the same fields with particles;
* the apoferritin ``train`` split (weak, crowded particles);
* the unlabelled real micrographs with visible particles (EPU and FEI examples, T20S, 80S
  ribosome, the UCSF micrograph).

The apoferritin ``test`` split and the micrograph-quality set are evaluation sets and are not
read here; their figures are in ``compare_peers`` (BENCHMARKS.md, "Empty micrographs").
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib

import argparse
import json

import numpy as np
import torch
from benchlib import REAL, RESULTS, UNLABELLED, apoferritin_labels, command_line, fmt

from cryosegnet.picking.picker import Picker
from cryosegnet.postprocessing.empty_micrographs import EmptySettings
from cryosegnet.simulation import SimulationConfig, micrograph_seed, simulate_micrograph

SEED = 9000
UNLABELLED = {**UNLABELLED, "UCSF": REAL / "ucsf-contamination" / "micrograph.mrc"}


def simulated_groups(picker: Picker, n: int, size: int) -> list[dict]:
    """Evidence of ``n`` simulated fields per preset, without and with particles."""
    groups = []
    for particles in (False, True):
        for difficulty in ("easy", "medium", "hard"):
            config = SimulationConfig(
                size=size, difficulty=difficulty, density=None if particles else 0.0
            )
            values = [
                picker.pick_result(
                    simulate_micrograph(
                        config, np.random.default_rng(micrograph_seed(SEED, i))
                    ).image
                ).evidence
                for i in range(n)
            ]
            what = "with particles" if particles else "no particles"
            groups.append(group(f"simulated {difficulty}, {what}", values, particles))
    return groups


def group(name: str, values: list, particles: bool) -> dict:
    values = [round(float(v), 2) for v in values]
    return {"group": name, "particles": particles, "evidence": values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=str(RESULTS / "empty_evidence.json"))
    parser.add_argument("--table-only", action="store_true", help="rewrite the .md from the JSON")
    parser.add_argument("--n", type=int, default=8, help="simulated fields per group")
    parser.add_argument("--size", type=int, default=1024, help="simulated field size (px)")
    args = parser.parse_args()
    if args.table_only:
        record = json.loads(Path(args.json).read_text())
        Path(args.json.replace(".json", ".md")).write_text(markdown(record))
        return
    torch.set_num_threads(2)
    picker = Picker(device="cpu", skip_empty=True)
    groups = simulated_groups(picker, args.n, args.size)
    train, _ = apoferritin_labels("train")
    groups.append(
        group("apoferritin `train` split", [picker.pick_result(p).evidence for p in train], True)
    )
    present = {name: path for name, path in UNLABELLED.items() if path.exists()}
    groups.append(
        group(
            f"unlabelled real, visible particles ({', '.join(present)})",
            [picker.pick_result(path).evidence for path in present.values()],
            True,
        )
    )
    for row in groups:
        print(json.dumps(row), flush=True)
    record = {
        "command": command_line(args),
        "min_evidence": EmptySettings().min_evidence,
        "groups": groups,
    }
    Path(args.json).write_text(json.dumps(record, indent=1))
    Path(args.json.replace(".json", ".md")).write_text(markdown(record))


def markdown(record: dict) -> str:
    cut = record["min_evidence"]
    lines = [
        f"Particle evidence of `pick --skip-empty` (standard errors; below {cut:g}: judged "
        "empty, no picks) on the data the cut was chosen on; no evaluation set. "
        f"Command: `{record['command']}`.",
        "",
        "| micrographs | n | min | median | max | judged empty |",
        "|---|---|---|---|---|---|",
    ]
    for row in record["groups"]:
        values = np.asarray(row["evidence"], float)
        if not len(values):
            continue
        below = int((values < cut).sum())
        lines.append(
            f"| {row['group']} | {len(values)} | {fmt(values.min(), 1)} | "
            f"{fmt(float(np.median(values)), 1)} | {fmt(values.max(), 1)} | "
            f"{below} of {len(values)} |"
        )
    lines += [
        "",
        "Without particles every field should be judged empty; with particles none should. "
        "The simulated particles show less dark excess than real ones (a sim-vs-real gap), and "
        "the weak, crowded apoferritin micrographs show none: their dark and bright blobs come "
        "in equal numbers, which is why the test is not the default.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

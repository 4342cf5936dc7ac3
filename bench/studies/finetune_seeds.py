"""Fine-tuning noise and two ways to combine runs: map ensembles and weight averages ("soups").

    python bench/finetune_seeds.py [--seeds 1 2 3]
    python bench/finetune_seeds.py --table-only

``cryosegnet finetune``'s recipe (``FINETUNE_DEFAULTS``) from the shipped model on the 12
apoferritin ``train`` micrographs, once per training seed, always with the same 2 validation
micrographs held out (the split of seed 1, as ``cryosegnet finetune --seed 1`` makes it; only
the crops, augmentation and order change with the seed). Each run's best epoch is then
measured on the 2 validation micrographs, and so are

* the **ensemble**: the U-Net maps of all runs averaged before the peak finder (N times the
  U-Net cost at pick time);
* the **soup**: the runs' weights averaged into one network (no extra cost at pick time; it
  works when fine-tuning from one starting point leaves the runs in one basin).

Figures: best F1 and AUPRC pooled within half the labelled diameter, and F1 at the peak
finder's default threshold. The ``test`` split and the quality set are not read. Results:
``bench/results/finetune_seeds.json`` and ``.md``; runs under ``runs/finetune_seeds/``
(git-ignored, a finished run is reused). About 10 CPU minutes per seed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from benchlib import APOFERRITIN, REPO, RESULTS, command_line, fmt
from finetune_decoys import SEED, finished, training_data, validation_figures

from cryosegnet.io.micrographs import read_micrograph
from cryosegnet.model.checkpoint import load_model
from cryosegnet.picking.config import PickerConfig
from cryosegnet.picking.picker import Picker
from cryosegnet.training.finetune import finetune, finetune_config, load_starting_model

RUNS = REPO / "runs" / "finetune_seeds"
JSON = RESULTS / "finetune_seeds.json"


def run_seed(seed: int, data) -> None:
    out = RUNS / f"seed{seed}"
    config = finetune_config(seed=seed, progress=False)
    if finished(out, config.epochs):
        return
    started = time.perf_counter()
    finetune(data.train, data.validation, out, config=config, metadata={"bench": f"seed {seed}"})
    (out / "wall_s.txt").write_text(f"{time.perf_counter() - started:.0f}\n")


def scored(picker: Picker, maps: dict, inputs: dict) -> dict:
    """The validation figures of ``picker``'s instance stage run on the given maps."""
    return validation_figures(
        {
            stem: picker.instances(maps[stem], image.shape, denoised).picks
            for stem, (image, denoised) in inputs.items()
        }
    )


def soup(paths: list) -> tuple[torch.nn.Module, dict]:
    """One network whose every weight is the mean of the runs' (buffers included), and the
    first run's checkpoint record (the labelled particle size is the same in all)."""
    loaded = [load_model(path, torch.device("cpu")) for path in paths]
    models = [model for model, _, _ in loaded]
    states = [m.state_dict() for m in models]
    mean = {
        key: torch.stack([s[key].float() for s in states]).mean(0).to(states[0][key].dtype)
        for key in states[0]
    }
    models[0].load_state_dict(mean)
    return models[0].eval(), loaded[0][2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[SEED, 2, 3])
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    if args.table_only:
        (RESULTS / "finetune_seeds.md").write_text(table(json.loads(JSON.read_text())))
        return
    torch.set_num_threads(2)
    _, settings, _, _ = load_starting_model()
    data = training_data(settings, RUNS / "cache")
    for seed in args.seeds:
        run_seed(seed, data)
    paths = [RUNS / f"seed{seed}" / "best.pt" for seed in args.seeds]
    config = PickerConfig(threshold=-1e9)
    pickers = [Picker(path, device="cpu", config=config) for path in paths]
    stems = [s.name for s in data.validation]
    inputs = {}
    for stem in stems:
        image = read_micrograph(APOFERRITIN / "micrographs" / f"{stem}.png").data
        inputs[stem] = (image, pickers[0].preprocess(image))
    per_run = {
        seed: {s: picker.probability_maps([inputs[s][1]])[0] for s in stems}
        for seed, picker in zip(args.seeds, pickers)
    }
    rows = [
        {"model": f"seed {seed}", **scored(pickers[0], per_run[seed], inputs)}
        for seed in args.seeds
    ]
    ensemble = {s: np.mean([per_run[seed][s] for seed in args.seeds], axis=0) for s in stems}
    rows.append({"model": "ensemble (maps averaged)", **scored(pickers[0], ensemble, inputs)})
    network, checkpoint = soup(paths)
    souped = Picker.from_parts(
        network, pickers[0].denoise_settings, "peaks", config, "cpu", checkpoint
    )
    soup_maps = {s: souped.probability_maps([inputs[s][1]])[0] for s in stems}
    rows.append({"model": "soup (weights averaged)", **scored(souped, soup_maps, inputs)})
    for row in rows:
        print(json.dumps(row), flush=True)
    singles = rows[: len(args.seeds)]
    record = {
        "command": command_line(args),
        "validation": stems,
        "rows": rows,
        "single_mean": {k: statistics.mean(r[k] for r in singles) for k in ("best_f1", "auprc")},
        "single_sd": {k: statistics.stdev(r[k] for r in singles) for k in ("best_f1", "auprc")}
        if len(singles) > 1
        else None,
    }
    JSON.write_text(json.dumps(record, indent=1))
    (RESULTS / "finetune_seeds.md").write_text(table(record))


def table(record: dict) -> str:
    lines = [
        "Validation micrographs of the apoferritin `train` split "
        f"({', '.join(record['validation'])}), same for every run; best epoch of each. "
        f"Command: `{record['command']}`.",
        "",
        "| model | best F1 | AUPRC | F1 at 0.05 |",
        "|---|---|---|---|",
    ]
    for row in record["rows"]:
        lines.append(
            f"| {row['model']} | {fmt(row['best_f1'])} | {fmt(row['auprc'])} | {fmt(row['f1'])} |"
        )
    mean, sd = record["single_mean"], record["single_sd"]
    if sd:
        lines.append(
            f"\nSingle runs: best F1 {fmt(mean['best_f1'])} ± {fmt(sd['best_f1'])}, AUPRC "
            f"{fmt(mean['auprc'])} ± {fmt(sd['auprc'])} (mean ± SD over seeds)."
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

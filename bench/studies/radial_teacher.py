"""The loop's radial filter as a teacher: a U-Net fine-tuned on its picks, its map added back.

    python bench/studies/radial_teacher.py   # apoferritin train: bench/results/radial_teacher.*

On apoferritin the label-free loop keeps no U-Net: its radial filter, fitted on the picks the 2D
classes keep, re-picks the batch (``RefineSettings.model = "auto"``). The filter reads one
thing, a whitened rotational average; a U-Net reads texture and shape as well. On the few-label
track a U-Net fine-tuned on real labels, its map added to a filter's response, picked better
than either (``few_label_combined.py``). Here the labels are the filter's own written picks: no
label is used. For one batch of the refinement bench (``bench/refine.py``: the split told 68 px
with ``--centre-picks``, its 4 phase-randomised copies, the loop as shipped):

1. pseudo-labels per micrograph: the filter's written picks are positives; its other maxima
   scoring above ``--unsure`` (micrograph units) are ignored by the loss; the ice farther than
   a diameter from every written pick is background; a micrograph the loop flagged is
   background throughout (the copies among them);
2. the shipped U-Net fine-tuned on them with the loop's own recipe
   (``RefineSettings``: epochs, steps, learning rate, crop), ``--epochs`` times over;
3. its map resized to the micrograph, in robust z units (less its median, over 1.4826 x its
   median absolute deviation), added w x to the filter's response, and the sum picked as the
   filter picks (flagged micrographs none; copies not scored).

Scored at half a diameter (best F1 / AUPRC) and a quarter, every candidate ranked, and F1 at
the threshold that writes as many picks as the filter alone writes (a label-free threshold).

Decided (2026-12-05): not shipped (bench/results/radial_teacher.md). On ``train`` the student
alone picks worse than the filter (best F1 / AUPRC 0.587 / 0.384 after the loop's 4 epochs,
0.599 / 0.425 after 16, against the filter's 0.689 / 0.695), and added to the filter it moves
best F1 by at most +0.005 and AUPRC by at most +0.008 (w 0.1-0.2), F1 at the threshold by
+0.006, a quarter diameter by +0.006; w 0.4 loses. Four times the training moves none of it.
As with the small CNN of ``richer_model.py``, what a network learns from the filter's own picks
adds nothing the filter did not see; a student needs a judge other than its teacher. The filter
itself refitted on its own written picks (1974 instead of the 339 the classes kept) does worse:
0.667 / 0.676, F1 at its threshold 0.648 against 0.682. ``test``
was not measured: nothing was chosen.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib, refine

import argparse
from dataclasses import replace

from benchlib import RESULTS, apoferritin_labels, command_line, write_results

OPTIONS = "diameter 68, centre-picks"
WEIGHTS = (0.0, 0.025, 0.05, 0.1, 0.2, 0.4)
KEYS = ("best_f1", "auprc", "best_f1_quarter", "f1", "n_picks")


def pseudo_rows(candidates, threshold: float, unsure: float):
    """The loop's particle rows from the filter's maxima: written picks kept, the next ones
    unsure, none rejected."""
    written = candidates["score"].to_numpy() >= threshold
    rows = candidates.assign(
        recentred_x=candidates["x"],
        recentred_y=candidates["y"],
        kept=written,
        unsure=~written & (candidates["score"].to_numpy() >= unsure),
        rejected=False,
    )
    return rows


def teach(split: str, epochs: int, unsure: float, seed: int, weights: tuple) -> dict:
    import numpy as np
    import refine

    from cryosegnet.io.micrographs import read_micrograph
    from cryosegnet.picking.picker import Picker
    from cryosegnet.picking.radial_picker import RadialFilterPicker
    from cryosegnet.training.finetune import finetune, round_config
    from cryosegnet.training.refine_loop import RefineSettings, _DenoisedCache, training_sample

    settings = RefineSettings()
    run = refine.apoferritin(split, OPTIONS, settings, True, False, "default")
    folder = refine.apoferritin_refine_folder(split, OPTIONS, "default")
    flagged = set(run.get("flagged", []))
    paths, labels = apoferritin_labels(split)
    batch, labels, decoys = refine._with_decoys(paths, labels, min(refine.N_DECOYS, len(paths)))
    radial = RadialFilterPicker.load(folder / "radial_filter.json").radial
    picker = Picker(device="cpu", **refine.PICKER_OPTIONS[OPTIONS])
    cache = _DenoisedCache(picker)
    images, responses, samples = {}, {}, []
    for path in batch:
        image = np.asarray(read_micrograph(path).data, np.float32)
        images[path.stem] = image
        responses[path.stem] = radial.response(image)
        candidates = radial.pick_response(responses[path.stem], -np.inf)
        rows = pseudo_rows(candidates, radial.threshold, unsure)
        denoised, scale, pixel_size = cache.get(path)
        bad = path.stem in flagged
        samples.append(
            training_sample(
                path.stem, denoised, scale, rows, radial.diameter, bad, settings, pixel_size
            )
        )
    out = refine.WORK / "radial_teacher" / f"{split}_e{epochs}_u{unsure:g}_s{seed}"
    model = out / "last.pt"
    if not model.is_file():
        recipe = replace(settings, epochs=settings.epochs * epochs)
        config = round_config(recipe, seed, "cpu", False)
        finetune(samples, [], out, config=config, metadata={"study": "radial_teacher"})
    student = Picker(model, device="cpu", **refine.PICKER_OPTIONS[OPTIONS])
    scored = [p.stem for p in paths if p.stem not in flagged and len(labels[p.stem])]
    record = combined(radial, student, images, responses, labels, scored, weights)
    record["rows"]["the filter refitted on its own written picks"] = refitted(
        radial, images, responses, labels, scored, flagged
    )
    return {
        "split": split,
        "epochs": epochs * settings.epochs,
        "unsure": unsure,
        "seed": seed,
        "flagged": sorted(flagged),
        "positives": int(sum(len(s.x) for s in samples)),
        "loop": run.get("every_candidate"),
        **record,
    }


def refitted(radial, images, responses, labels, scored, flagged) -> dict:
    """The teacher without a student: the filter fitted again on its own written picks of the
    micrographs not flagged (six times the kept picks), every candidate ranked, F1 at its own
    threshold."""
    import numpy as np

    from cryosegnet.evaluation import evaluate_picks
    from cryosegnet.training.radial_filter import RadialFilter

    written = {
        s: radial.pick_response(r)[["x", "y"]].to_numpy(float)
        for s, r in responses.items()
        if s not in flagged
    }
    refit = RadialFilter.fit(images, written, radial.diameter, seed=0, settings=radial.settings)
    picks = {s: refit.pick(images[s], min_score=-np.inf) for s in scored}
    truth = {s: labels[s] for s in scored}
    pooled = evaluate_picks(picks, truth, threshold=refit.threshold).pooled
    return {k: round(float(pooled[k]), 3) for k in KEYS}


def combined(radial, student, images, responses, labels, scored, weights) -> dict:
    """Every weight's picks of the scored micrographs, and the student U-Net alone."""
    import cv2
    import numpy as np

    from cryosegnet.evaluation import evaluate_picks
    from cryosegnet.training.radial_filter import robust_z

    maps = {}
    for stem in scored:
        probability = student.probability_maps([student.preprocess(images[stem])])[0]
        size = images[stem].shape[::-1]
        maps[stem] = robust_z(cv2.resize(probability, size, interpolation=cv2.INTER_LINEAR))
    truth = {s: labels[s] for s in scored}
    written = sum(len(radial.pick_response(responses[s])) for s in scored)
    rows = {}
    for weight in weights:
        picks = {
            s: radial.pick_response(responses[s] + np.float32(weight) * maps[s], -np.inf)
            for s in scored
        }
        scores = np.sort(np.concatenate([p["score"].to_numpy() for p in picks.values()]))[::-1]
        threshold = float(scores[min(written, len(scores)) - 1])
        pooled = evaluate_picks(picks, truth, threshold=threshold).pooled
        rows[f"{weight:g}"] = {k: round(float(pooled[k]), 3) for k in KEYS}
    alone = {s: student.pick(images[s]) for s in scored}
    pooled = evaluate_picks(alone, truth, threshold=student.threshold).pooled
    rows["student U-Net alone"] = {k: round(float(pooled[k]), 3) for k in KEYS}
    return {"written_by_filter": written, "rows": rows}


def markdown(record: dict) -> str:
    lines = [
        f"Generated by `{record['command']}`. Every candidate ranked: best F1 / AUPRC at half "
        "a diameter, best F1 at a quarter; F1 at the threshold that writes as many picks as "
        "the filter alone (the refitted filter: at its own threshold). *w*: weight of the "
        "student U-Net's map (robust z) added to the filter's response.",
        "",
        "| split | student: epochs, unsure above | positives | w | best F1 / AUPRC | d/4 | "
        "F1 at threshold | picks |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in record["runs"]:
        for key, row in run["rows"].items():
            lines.append(
                f"| {run['split']} | {run['epochs']}, {run['unsure']:g} | {run['positives']} | "
                f"{key} | {row['best_f1']:.3f} / {row['auprc']:.3f} | "
                f"{row['best_f1_quarter']:.3f} | {row['f1']:.3f} | {row['n_picks']} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="train", choices=("train", "test"))
    parser.add_argument("--epochs", default="1,4", help="times the loop's epochs (list)")
    parser.add_argument("--unsure", type=float, default=1.0, help="micrograph units")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", default=",".join(f"{w:g}" for w in WEIGHTS))
    parser.add_argument("--json", default=str(RESULTS / "radial_teacher.json"))
    args = parser.parse_args()
    weights = tuple(float(w) for w in args.weights.split(","))
    runs = [
        teach(args.split, int(e), args.unsure, args.seed, weights) for e in args.epochs.split(",")
    ]
    record = {"command": command_line(args), "runs": runs}
    write_results(args.json, record, markdown(record))
    print(markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())

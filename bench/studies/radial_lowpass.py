"""How much the radial filter low-passes a micrograph before reading its rings, in the loop.

    python bench/studies/radial_lowpass.py   # writes bench/results/radial_lowpass.{json,md}

Runs the refinement bench's two radial runs (``bench/refine.py``: the 16 simulated fields with
junk and empty fields, ``sims_radial`` in micrograph units; the apoferritin ``train`` split with
4 phase-randomised copies, told 68 px with ``--centre-picks``, variant ``low-SNR, radial filter,
micrograph units``) once per setting of ``RadialFilterSettings`` below, each in a folder of its
own beside the bench's (their round-0 picks are shared; a finished run is reused). No label is
used by the loop; the labels only score it. ``test`` is not run here.

Decided (2026-12-05): see ``RadialFilterSettings.lowpass``. The filter was first measured with
the micrograph low-passed at sigma d/45 (the ``radial_template.py`` study, with labels), which
keeps the particle's edge but leaves the ring means of a few hundred positives noisy. Stronger
low-passes were tried in the loop (and a wider reach, 1 d instead of 0.7 d: it helped
apoferritin and cost the simulations). What it showed (bench/results/radial_lowpass.md): on
the simulations the written picks rise from d/45 to a plateau at d/12-d/10 (best F1 / AUPRC
0.531 / 0.305 -> 0.560 / 0.333 and 0.562 / 0.331; a quarter diameter 0.398 -> 0.489 and
0.506) and fall at d/7 (0.525 / 0.304); on apoferritin ``train`` best F1 stays at 0.674-0.678
up to d/10 (every candidate ranked 0.677 / 0.679 -> 0.684 / 0.685 at d/12) and falls at d/7
(0.658). d/12 was chosen, the plateau's side away from that fall. A reach of 1 d gained
apoferritin 0.004-0.020 and cost the simulations 0.012: not taken; at d/12, 0.85 d and 1 d
cost the simulations 0.009-0.012 and moved apoferritin by +0.002.

Then the background's width at d/12 (measured, not adopted): 0.6 d costs the simulations
0.013; 1.5, 2.5, 5 and 10 d raise them steadily (written picks 0.560 / 0.333 -> 0.570 / 0.360,
0.582 / 0.431, 0.634 / 0.516 and 0.650 / 0.530) while apoferritin stays at 0.676-0.681, its
real micrographs' tail ratios and its copies' unchanged. On the simulations the filter learnt
with a wide background sees no particle on any field (tail ratios 0.12-1.20), so the loop's
default (``auto``) never keeps it there and would fine-tune the U-Net as before: the gain is on
a route users reach only with ``--refine-model radial``. The background removal is there for
real ice gradients and carbon edges, and no labelled real set here has them; apoferritin's ice
is flat. So 0.9 d stays until a real set can show what a wider one does.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: benchlib, refine

import argparse
from dataclasses import replace

from benchlib import RESULTS, apoferritin_labels, command_line, write_results

#: Settings tried, by the tag of their run folders: changes of ``RadialFilterSettings`` (the
#: low-passes as the decimals they were run with).
SETTINGS = {
    "lowpass45": {"lowpass": 1 / 45},
    "lowpass25": {"lowpass": 0.04},
    "lowpass15": {"lowpass": 0.0666667},
    "lowpass12": {"lowpass": 0.0833333},
    "lowpass10": {"lowpass": 0.1},
    "lowpass7": {"lowpass": 0.142857},
    "reach1": {"reach": 1.0, "lowpass": 1 / 45},
    # then, at the chosen low-pass, the reach and the background's width again
    "reach085_lp12": {"lowpass": 1 / 12, "reach": 0.85},
    "reach1_lp12": {"lowpass": 1 / 12, "reach": 1.0},
    "bg06_lp12": {"lowpass": 1 / 12, "background": 0.6},
    "bg15_lp12": {"lowpass": 1 / 12, "background": 1.5},
    "bg25_lp12": {"lowpass": 1 / 12, "background": 2.5},
    "bg5_lp12": {"lowpass": 1 / 12, "background": 5.0},
    "bg10_lp12": {"lowpass": 1 / 12, "background": 10.0},
}
KEYS = ("best_f1", "auprc", "best_f1_quarter", "f1")


def _figures(run: dict) -> dict:
    def pick(figures: dict | None) -> dict | None:
        return None if not figures else {k: round(float(figures[k]), 3) for k in KEYS}

    return {
        "written": pick(run.get("final_triaged")),
        "every_candidate": pick(run.get("every_candidate")),
        "flagged": run.get("flagged", []),
        "refused": run.get("refused"),
    }


def sims(tag: str, change: dict) -> dict:
    import refine as bench

    from cryosegnet.training.refine_loop import RefineSettings

    name, micrographs, labels = bench._sim_set(False, 23, None)
    settings = RefineSettings()
    radial = replace(settings.radial, score_units="micrograph", **change)
    one = replace(settings, model="radial", rounds=1, radial=radial)
    variant = f"radial_micrograph_units_{tag}"
    return _figures(bench.run_loop(name, variant, micrographs, labels, one, {}, True))


def apoferritin_train(tag: str, change: dict) -> dict:
    import refine as bench

    from cryosegnet.training.refine_loop import RefineSettings

    paths, labels = apoferritin_labels("train")
    paths, labels, decoys = bench._with_decoys(paths, labels, bench.N_DECOYS)
    variant, options_name = bench.RADIAL_VARIANT, "diameter 68, centre-picks"
    chosen = bench.variant_settings(RefineSettings(), bench.LOOP_VARIANTS[variant])
    chosen = replace(chosen, radial=replace(chosen.radial, **change))
    options = bench.PICKER_OPTIONS[options_name]
    folder = f"{bench.variant_slug(variant)}_{tag}"
    name = bench.apoferritin_set_name("train", options_name)
    return _figures(bench.run_loop(name, folder, paths, labels, chosen, options, True, decoys))


def markdown(record: dict) -> str:
    lines = [
        f"Generated by `{record['command']}`. The loop's radial filter (no label) under each "
        "setting: best F1 / AUPRC at half a diameter, best F1 at a quarter, F1 at the "
        "filter's threshold; *written*: the picks the loop writes (flagged micrographs "
        "emptied), *every candidate*: `-t` lowered.",
        "",
        "| setting | set | written: best F1 / AUPRC | d/4 | F1 at threshold "
        "| every candidate: best F1 / AUPRC | flagged |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in record["rows"]:
        for part in ("sims", "apoferritin train"):
            one = row[part]
            written, every = one["written"], one["every_candidate"]
            if not written:
                lines.append(f"| {row['setting']} | {part} | refused | | | | |")
                continue
            lines.append(
                f"| {row['setting']} | {part} | {written['best_f1']:.3f} / "
                f"{written['auprc']:.3f} | {written['best_f1_quarter']:.3f} | "
                f"{written['f1']:.3f} | {every['best_f1']:.3f} / {every['auprc']:.3f} | "
                f"{len(one['flagged'])} |"
            )
    return "\n".join(lines) + "\n"


def _shown(change: dict) -> str:
    def value(key: str, v: float) -> str:
        return f"d/{round(1 / v)}" if key == "lowpass" else f"{v:g} d"

    ordered = sorted(change.items(), key=_lowpass_first)
    return ", ".join(f"{key} {value(key, v)}" for key, v in ordered)


def _lowpass_first(item: tuple[str, float]) -> bool:
    return item[0] != "lowpass"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=str(RESULTS / "radial_lowpass.json"))
    args = parser.parse_args()
    rows = [
        {
            "setting": _shown(change),
            "sims": sims(tag, change),
            "apoferritin train": apoferritin_train(tag, change),
        }
        for tag, change in SETTINGS.items()
    ]
    record = {"command": command_line(), "rows": rows}
    write_results(args.json, record, markdown(record))
    print(markdown(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

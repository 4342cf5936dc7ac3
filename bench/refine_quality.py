"""The label-free refinement loop on the micrograph-quality set, one session at a time.

    python bench/refine_quality.py [--quick] [--reuse] [--table-only]

A user runs ``pick --refine`` on one session's micrographs, so each session of the quality set
is one batch here: its micrographs are named ``<session>_<grid square>gr_...``, and the 30 of
them come from 25 sessions (five sessions give two or three micrographs of different classes,
such as a great one beside empty ice). Each batch runs the loop as ``cryosegnet pick MICS -o
PICKS --refine REFINE`` does with no option (the size read off the micrographs), through
``bench/refine.py``'s :func:`run_loop`.

Per micrograph it records the picks the picker wrote (round 0), what the loop did (ran, or
refused with its one-line reason) and the picks the user is left with: the loop's where it ran
(none on a micrograph it flagged), the picker's where it refused, since a refusal writes no
refined pick and leaves the picker's as the only ones. Per expert class: the median of each
per micrograph, and its share of the median of classes 0 and 1 (the goal: classes 3 and 5 at
most 5 %, class 4 at most 25 %).

The quality set is for evaluation only: nothing is chosen on these figures.
Figures go to bench/results/refine_quality.json and .md (``--quick``: 3 sessions, runs/quick/).
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import asdict
from pathlib import Path

from benchlib import REAL, command_line, median, results_json, stem_of, write_results

QUALITY = REAL / "micrograph-quality" / "Examples"
GOOD_CLASSES = ("0Great", "1Decent")
# the issue's goal: a class's median picks per micrograph over the good classes' median
GOALS = {"3Empty_no_ice": 0.05, "5Empty_ice_no_particles_but_vitreous_ice": 0.05}
GOALS["4Crystalline_ice"] = 0.25
SESSION = re.compile(r"(.+?)_+\d+gr_")
VARIANT = "default"


def session_of(name: str) -> str:
    """The session a quality-set micrograph came from (its name up to the grid square)."""
    found = SESSION.match(name)
    return found.group(1) if found else name


def quality_sessions(limit: int | None = None) -> tuple[dict[str, list[Path]], dict[str, str]]:
    """The quality set's micrographs by session, and each micrograph's expert class."""
    sessions: dict[str, list[Path]] = {}
    classes: dict[str, str] = {}
    for folder in sorted(p for p in QUALITY.iterdir() if p.is_dir()):
        for png in sorted(folder.glob("*.png")):
            classes[stem_of(png)] = folder.name
            sessions.setdefault(session_of(png.name), []).append(png)
    chosen = sorted(sessions, key=lambda s: (-len(sessions[s]), s))[: limit or None]
    return {s: sessions[s] for s in chosen}, classes


def _pick_counts(folder: Path) -> dict[str, int]:
    from cryosegnet.inspection.picksets import find_pick_files, read_picks

    if not folder.is_dir():
        return {}
    return {f.stem: len(read_picks(f.path)) for f in find_pick_files(folder)}


def run_session(session: str, micrographs: list[Path], settings, reuse: bool) -> dict:
    """One session's loop (``refine.run_loop``), and its picks per micrograph."""
    import refine

    name = f"quality_{session}"
    run = refine.run_loop(name, VARIANT, micrographs, None, settings, {}, reuse)
    if run.get("not_run"):
        return run
    picker = _pick_counts(refine.WORK / name / "picks")
    ran = "refused" not in run
    loop = _pick_counts(refine.WORK / name / VARIANT / "refine" / "picks") if ran else picker
    flagged = set(run.get("flagged") or [])
    per = {}
    for path in micrographs:
        stem = stem_of(path)
        per[stem] = {
            "picker": picker.get(stem, 0),
            "user": loop.get(stem, 0),
            "outcome": ("flagged" if stem in flagged else "ran") if ran else "refused",
        }
    keys = ("refused", "stop_reason", "loop_s", "peak_rss_mb", "final_round", "flagged")
    return {"micrographs": per, **{k: run[k] for k in keys if k in run}}


def class_table(sessions: dict, classes: dict[str, str]) -> dict:
    """Per class: micrographs, the medians of picks per micrograph, outcomes, share of good."""
    rows: dict[str, dict] = {}
    for run in sessions.values():
        for stem, one in run.get("micrographs", {}).items():
            row = rows.setdefault(classes[stem], {"picker": [], "user": [], "outcomes": {}})
            row["picker"].append(one["picker"])
            row["user"].append(one["user"])
            row["outcomes"][one["outcome"]] = row["outcomes"].get(one["outcome"], 0) + 1
    good = {
        k: [v for c in GOOD_CLASSES for v in rows.get(c, {}).get(k, [])] for k in ("picker", "user")
    }
    table = {}
    for name in sorted(rows):
        row = rows[name]
        entry = {"n": len(row["user"]), "outcomes": row["outcomes"]}
        for k in ("picker", "user"):
            entry[f"median_{k}"] = median(row[k])
            entry[f"{k}_share_of_good"] = (
                median(row[k]) / max(median(good[k]), 1) if good[k] else None
            )
        entry["goal"] = GOALS.get(name)
        table[name] = entry
    return table


def markdown(results: dict) -> str:
    lines = [
        f"Generated by `{results['command']}` from `refine_quality.json`: `pick --refine` "
        "with no option, one session per batch; the quality set is evaluation only.",
        "",
        "| class | micrographs | loop: ran / flagged / refused | picker: median picks | "
        "share of classes 0-1 | left to the user: median picks | share of classes 0-1 | goal |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in results["classes"].items():
        o = row["outcomes"]
        share = {k: row[f"{k}_share_of_good"] for k in ("picker", "user")}
        goal = "-" if row["goal"] is None else f"<= {row['goal']:.0%}"
        fmt = {k: "-" if v is None else f"{v:.0%}" for k, v in share.items()}
        lines.append(
            f"| {name} | {row['n']} | {o.get('ran', 0)} / {o.get('flagged', 0)} / "
            f"{o.get('refused', 0)} | {row['median_picker']:g} | {fmt['picker']} | "
            f"{row['median_user']:g} | {fmt['user']} | {goal} |"
        )
    reasons: dict[str, int] = {}
    for run in results["sessions"].values():
        if "refused" in run:
            # one line per kind of refusal: the counts in it differ by session
            reason = re.sub(r"\d+", "N", run["refused"].split(": ", 1)[-1])
            reasons[reason] = reasons.get(reason, 0) + 1
    measured = sum("micrographs" in run for run in results["sessions"].values())
    lines += [
        "",
        f"{measured} of {len(results['sessions'])} sessions measured; why the loop refused "
        "(sessions):",
        "",
    ]
    lines += [f"- {n} x {reason}" for reason, n in sorted(reasons.items(), key=lambda x: -x[1])]
    return "\n".join(lines) + "\n"


def main() -> None:
    import refine
    from benchlib import add_bench_options

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bench_options(parser, "refine_quality", "the 3 sessions with the most micrographs")
    parser.add_argument("--reuse", action="store_true", help="take runs already made from WORK")
    parser.add_argument("--table-only", action="store_true", help="run nothing: runs made only")
    args = parser.parse_args()
    refine.TABLE_ONLY[0] = args.table_only
    from cryosegnet.training.refine_loop import RefineSettings

    settings = RefineSettings()
    sessions, classes = quality_sessions(3 if args.quick else None)
    runs = {}
    for session, micrographs in sessions.items():
        runs[session] = run_session(session, micrographs, settings, args.reuse)
        print(session, json.dumps(runs[session].get("micrographs")), flush=True)
    results = {
        "command": command_line(args),
        "settings": asdict(settings),
        "classes": class_table(runs, classes),
        "sessions": runs,
    }
    table = markdown(results)
    write_results(results_json(args, "refine_quality"), results, table)
    print(table)


if __name__ == "__main__":
    main()

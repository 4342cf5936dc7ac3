"""Evaluation output: ``metrics.json``, ``per_micrograph.csv``, ``pr_curve.png`` and a text table.

Every file is written atomically so a crashed or interrupted run never leaves a half report
that a benchmark script could mistake for a result.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from cryosegnet.evaluation.metrics import EvaluationResult
from cryosegnet.io.atomic import atomic_path, atomic_write
from cryosegnet.io.jsonsafe import json_safe


def write_report(
    result: EvaluationResult,
    out_dir: str | os.PathLike,
    extra: dict | None = None,
    plot: bool = True,
) -> dict[str, Path]:
    """Write the report files into ``out_dir`` (created); returns {kind: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "metrics.json", "csv": out / "per_micrograph.csv"}
    payload = result.to_dict()
    if extra:
        payload["inputs"] = extra
    with atomic_write(paths["json"]) as handle:
        json.dump(json_safe(payload), handle, indent=2)
        handle.write("\n")
    with atomic_write(paths["csv"], newline="") as handle:
        result.frame().to_csv(handle, index=False, float_format="%.6g")
    if plot:
        paths["png"] = out / "pr_curve.png"
        plot_pr_curve(result, paths["png"])
    return paths


def plot_pr_curve(result: EvaluationResult, path: str | os.PathLike, title: str = "") -> None:
    """Pooled precision-recall curve with the picks' own operating point and the best-F1 point."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    curve, pooled = result.curve, result.pooled
    fig, ax = plt.subplots(figsize=(5, 4.5), dpi=120)
    try:
        if len(curve.thresholds):
            ax.step(
                curve.recall,
                curve.precision,
                where="post",
                color="C0",
                label=f"AUPRC {_fmt(pooled['auprc'])}",
            )
        ax.plot(
            [pooled["recall"]],
            [pooled["precision"]],
            "o",
            color="C3",
            label=f"at threshold: F1 {_fmt(pooled['f1'])}",
        )
        f1s = curve.f1
        if len(f1s):
            k = int(f1s.argmax())
            ax.plot(
                [curve.recall[k]],
                [curve.precision[k]],
                "s",
                color="C2",
                label=f"best F1 {_fmt(pooled['best_f1'])} (score >= "
                f"{_fmt(pooled['best_threshold'])})",
            )
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        n = pooled["n_micrographs"]
        ax.set_title(
            title
            or f"{n} micrograph{'s' if n != 1 else ''}, {pooled['n_labels']} labelled particles"
        )
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def format_table(result: EvaluationResult, max_rows: int = 50) -> str:
    """A short plain-text table: one line per micrograph, then the pooled line."""
    header = (
        f"{'micrograph':<28} {'picks':>6} {'labels':>6} {'TP':>5} {'prec':>6} {'recall':>6}"
        f" {'F1':>6} {'bestF1':>6} {'AUPRC':>6} {'Dice':>6}"
    )
    lines = [header, "-" * len(header)]
    rows = result.per_micrograph
    for m in rows[:max_rows]:
        name = m.micrograph if len(m.micrograph) <= 28 else "…" + m.micrograph[-27:]
        lines.append(
            f"{name:<28} {m.n_picks:>6} {m.n_labels:>6} {m.tp:>5} {_fmt(m.precision):>6}"
            f" {_fmt(m.recall):>6} {_fmt(m.f1):>6} {_fmt(m.best_f1):>6} {_fmt(m.auprc):>6}"
            f" {_fmt(m.dice):>6}"
        )
    if len(rows) > max_rows:
        lines.append(f"... {len(rows) - max_rows} more in per_micrograph.csv")
    p = result.pooled
    lines.append("-" * len(header))
    lines.append(
        f"{'pooled':<28} {p['n_picks']:>6} {p['n_labels']:>6} {p['tp']:>5}"
        f" {_fmt(p['precision']):>6} {_fmt(p['recall']):>6} {_fmt(p['f1']):>6}"
        f" {_fmt(p['best_f1']):>6} {_fmt(p['auprc']):>6} {_fmt(p['dice_mean']):>6}"
    )
    lines.append(
        f"best F1 at score >= {_fmt(p['best_threshold'], 4)}; Dice is the mean over micrographs"
    )
    if "best_f1_quarter" in p:
        lines.append(
            f"centring: best F1 {_fmt(p['best_f1_quarter'])} / AUPRC {_fmt(p['auprc_quarter'])} "
            f"at half the radius; median centre error {_fmt(p['median_centre_error'], 1)} px; "
            f"a blind grid at the best-F1 density scores F1 {_fmt(p['grid_best_f1'])} "
            f"({_fmt(p['grid_best_f1_quarter'])} at half the radius)"
        )
    if p.get("lowest_score") is not None:
        lines.append(
            f"PR curve and AUPRC cover picks with score >= {_fmt(p['lowest_score'], 4)}"
            f" (the lowest in the files), up to recall {_fmt(p['max_recall'])}"
        )
    lines += [f"warning: {w}" for w in result.warnings]
    return "\n".join(lines)

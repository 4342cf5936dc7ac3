"""``cryosegnet demo``: the whole job end to end on micrographs the project makes itself.

Simulates a few small micrographs with ground truth (fixed seed, so every run gives the same
figures), picks them with the shipped model, scores the picks against the simulated truth,
and writes the HTML report and one picture, all under one folder::

    from cryosegnet.demo import run_demo
    result = run_demo("demo")
    print(result.text())
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryosegnet.errors import CryoSegNetError

# The demo is a quick first run: larger micrographs belong to `simulate` and `pick`.
DEMO_MAX_SIZE = 2048


@dataclass(frozen=True)
class DemoSettings:
    """What the demo simulates and how it picks; the CLI's defaults are these.

    Attributes
    ----------
    n_micrographs : int
        Micrographs to simulate.
    size : int
        Side of each micrograph in pixels.
    difficulty : str
        Simulation preset (``easy``, ``medium``, ``hard``).
    pixel_size : float
        Å per pixel of the simulated micrographs: 4 Å/px gives the particles the size in
        pixels they have on ``cryosegnet simulate``'s default 1024-px micrographs (4096 Å
        across), which the shipped model was tuned on, on a smaller field of view.
    seed : int
        Simulation seed: the same seed gives the same micrographs, picks and figures.
    device : str
        Device for the U-Net (``auto``: CUDA when available).
    """

    n_micrographs: int = 4
    size: int = 512
    difficulty: str = "medium"
    pixel_size: float = 4.0
    seed: int = 1
    device: str = "auto"


@dataclass(frozen=True)
class DemoFolder:
    """Where the demo writes: its folder and the layout under it, defined here once."""

    root: Path
    micrographs: Path
    picks: Path
    evaluation: Path
    report: Path

    @classmethod
    def under(cls, root: str | os.PathLike) -> DemoFolder:
        """``root/micrographs``, ``root/picks``, ``root/evaluation``, ``root/report.html``."""
        top = Path(root)
        return cls(top, top / "micrographs", top / "picks", top / "evaluation", top / "report.html")


@dataclass
class DemoResult:
    """What the demo wrote, and the figures it measured."""

    folder: DemoFolder
    picture: Path
    pooled: dict
    n_truth: int
    n_picks: int
    seconds: float
    settings: DemoSettings = field(default_factory=DemoSettings)

    def text(self) -> str:
        """What to open and the figures obtained, for a person."""
        p = self.pooled
        s = self.settings
        best_t = p.get("best_threshold")
        lines = [
            f"cryosegnet demo: {s.n_micrographs} simulated micrographs of {s.size} px "
            f"({s.pixel_size:g} Å/px, {s.difficulty}, seed {s.seed}), picked with the shipped "
            f"model ({self.seconds:.0f} s)",
            "",
            f"  particles in the simulated truth: {self.n_truth}",
            f"  picks:                            {self.n_picks}",
            f"  precision {p['precision']:.2f}  recall {p['recall']:.2f}  F1 {p['f1']:.2f}"
            "  (at the default threshold)",
            f"  best F1 {p['best_f1']:.2f}"
            + (f" at threshold {best_t:.3g}" if best_t is not None else "")
            + f", AUPRC {p['auprc']:.2f}",
            "",
            "Open:",
            f"  {self.folder.report}   the picks on every micrograph, threshold slider (a browser)",
            f"  {self.picture}   one micrograph with its picks",
            f"  {self.folder.evaluation / 'pr_curve.png'}   precision-recall curve",
            f"  {self.folder.evaluation / 'metrics.json'}   every figure, per micrograph "
            "and pooled",
            "Files:",
            f"  {self.folder.micrographs}/   micrographs (MRC) and their truth (CSV, STAR)",
            f"  {self.folder.picks}/   picks as RELION/CryoSPARC read them (autopick.star, "
            "particles.star)",
            "The same seed gives the same figures on every run; the README's Demo section "
            "lists them.",
        ]
        return "\n".join(lines)


def run_demo(
    folder: str | os.PathLike = "demo",
    settings: DemoSettings | None = None,
    progress: bool = False,
) -> DemoResult:
    """Simulate, pick, evaluate and write the report and a picture under ``folder``.

    ``folder/micrographs`` (simulated micrographs and truth), ``folder/picks`` (``pick``'s
    output), ``folder/evaluation`` (``evaluate``'s report), ``folder/report.html`` and
    ``folder/<first micrograph>.png``. Re-running reuses the simulated micrographs and picks
    that are already there (both resume).

    Raises
    ------
    CryoSegNetError
        If a step fails (the message says which).
    """
    from cryosegnet.evaluation.metrics import evaluate_picks
    from cryosegnet.evaluation.pairing import load_coordinate_sets, micrograph_key
    from cryosegnet.evaluation.report import write_report as write_evaluation
    from cryosegnet.inspection.report import write_report as write_html_report
    from cryosegnet.inspection.show import show_picks
    from cryosegnet.io.micrographs import find_micrographs, read_micrograph
    from cryosegnet.picking.batch import pick_batch
    from cryosegnet.picking.picker import Picker
    from cryosegnet.simulation.micrograph import SimulationConfig
    from cryosegnet.simulation.writer import write_dataset

    settings = settings or DemoSettings()
    start = time.monotonic()
    layout = DemoFolder.under(folder)
    mic_dir, picks_dir, eval_dir = layout.micrographs, layout.picks, layout.evaluation
    config = SimulationConfig(
        size=settings.size, difficulty=settings.difficulty, pixel_size=settings.pixel_size
    )
    write_dataset(
        mic_dir, config, settings.n_micrographs, seed=settings.seed, command="cryosegnet demo"
    )
    micrographs = find_micrographs([str(mic_dir)])
    picker = Picker(device=settings.device)
    batch = pick_batch(picker, micrographs, picks_dir, progress=progress)
    if batch.failures or batch.index_failure or batch.interrupted:
        problems = list(batch.failures.values()) + [batch.index_failure or ""]
        raise CryoSegNetError("demo: picking failed: " + "; ".join(p for p in problems if p))

    labels = load_coordinate_sets(mic_dir)
    picks = load_coordinate_sets(picks_dir)
    shapes = {micrograph_key(p.name): read_micrograph(p).shape for p in micrographs}
    result = evaluate_picks(picks, labels, shapes=shapes)
    write_evaluation(result, eval_dir, extra={"demo": settings.__dict__})
    write_html_report(
        picks_dir,
        layout.report,
        [str(mic_dir)],
        command=f"cryosegnet report {picks_dir} {mic_dir} -o {layout.report}",
    )
    first = micrographs[0]
    picture = layout.root / f"{first.stem}.png"
    show_picks(first, picture, picks=picks_dir)
    return DemoResult(
        folder=layout,
        picture=picture,
        pooled=result.pooled,
        n_truth=int(result.pooled["n_labels"]),
        n_picks=int(result.pooled["n_picks"]),
        seconds=time.monotonic() - start,
        settings=settings,
    )

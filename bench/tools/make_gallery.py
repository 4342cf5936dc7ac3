"""Gallery: simulated easy / medium / hard micrographs next to real ones, same display scale.

Run:  python bench/tools/make_gallery.py [--out docs/img/simulation_gallery.png]
                                         [--shared ../shared]
      python bench/tools/make_gallery.py --stats      # the realism table of docs/simulation.md

Every image is brought to the picker's working scale (the U-Net sees micrographs resized to
1024 px on the long side, as in the paper) and shown three ways with the same normalisation
(z-score, clipped to ±3σ): the whole field binned to 512 px (context: carbon, ice), a 512-px
centre crop as recorded (noise level), and that crop after a Gaussian low-pass (σ = 2 px) so
particles can be compared by eye.
Real micrographs come from ../shared/data/real when present; without them the gallery shows
the simulated columns only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mrcfile  # noqa: E402
import numpy as np  # noqa: E402

from cryosegnet.simulation import SimulationConfig, simulate_micrograph  # noqa: E402

WORKING = 1024
CROP = 512
SEEDS = {"easy": 14, "medium": 8, "hard": 4}


def to_working(image: np.ndarray) -> np.ndarray:
    """Resize so the long side is 1024 px (area averaging when shrinking)."""
    image = image.astype(np.float32)
    h, w = image.shape
    scale = WORKING / max(h, w)
    if abs(scale - 1) < 1e-6:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def centre_crop(image: np.ndarray, size: int = CROP) -> np.ndarray:
    h, w = image.shape
    y0, x0 = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return image[y0 : y0 + size, x0 : x0 + size]


def display(image: np.ndarray) -> np.ndarray:
    """Same normalisation for every panel: z-score over the crop, clipped to ±3σ."""
    z = (image - image.mean()) / (image.std() + 1e-8)
    return np.clip(z, -3, 3)


def real_panels(shared: Path) -> list[tuple[str, np.ndarray]]:
    panels = []
    png = shared / "data/real/empiar10146-apoferritin/micrographs/May08_03.13.02.bin.png"
    if png.exists():
        img = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        panels.append(("real: EMPIAR-10146 apoferritin\n(16-bit PNG, 1240×1200)", img))
    epu = shared / "data/real/unlabeled-raw/epu2.9_example.mrc"
    if epu.exists():
        with mrcfile.open(epu, permissive=True) as mrc:
            panels.append(("real: EPU raw MRC\n(4096², 0.667 Å/px)", np.asarray(mrc.data)))
    return panels


def texture_stats(image: np.ndarray) -> np.ndarray:
    """Block-mean std × block size at 4, 16, 64 px (1 for white noise), and neighbour corr."""
    a = image.astype(np.float32)
    a = (a - a.mean()) / a.std()
    out = []
    for b in (4, 16, 64):
        h, w = (a.shape[0] // b) * b, (a.shape[1] // b) * b
        out.append(a[:h, :w].reshape(h // b, b, w // b, b).mean(axis=(1, 3)).std() * b)
    out.append(np.corrcoef(a[:, 1:].ravel(), a[:, :-1].ravel())[0, 1])
    return np.array(out)


def print_stats(shared: Path, n: int = 8) -> None:
    """The realism table of docs/simulation.md: real apoferritin vs presets at its scale."""

    def row(name: str, stats: list[np.ndarray]) -> None:
        med, lo, hi = np.median(stats, 0), np.min(stats, 0), np.max(stats, 0)
        cells = [f"{m:.3f} ({a:.3f}–{b:.3f})" for m, a, b in zip(med, lo, hi, strict=True)]
        print(f"| {name} | " + " | ".join(cells) + " |")

    print("| | 4 px | 16 px | 64 px | neighbour corr. |\n|---|---|---|---|---|")
    pngs = sorted((shared / "data/real/empiar10146-apoferritin/micrographs").glob("*.png"))
    if pngs:
        row(
            "real apoferritin",
            [texture_stats(cv2.imread(str(p), cv2.IMREAD_UNCHANGED)) for p in pngs],
        )
    for difficulty in SEEDS:
        cfg = SimulationConfig(
            size=(1200, 1240),
            difficulty=difficulty,
            diameter_px=68.0,
            carbon=False,
            contamination=0,
        )
        row(
            f"sim {difficulty}",
            [texture_stats(simulate_micrograph(cfg, i).image) for i in range(n)],
        )


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parents[2]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(here / "docs/img/simulation_gallery.png"))
    parser.add_argument("--shared", default=str(here.parent / "shared"))
    parser.add_argument(
        "--stats", action="store_true", help="print the realism table (texture statistics) instead"
    )
    args = parser.parse_args(argv)
    if args.stats:
        print_stats(Path(args.shared))
        return 0

    panels: list[tuple[str, np.ndarray]] = []
    for difficulty, seed in SEEDS.items():
        sim = simulate_micrograph(SimulationConfig(size=WORKING, difficulty=difficulty), seed)
        s = sim.info
        title = (
            f"simulated: {difficulty} (seed {seed})\n{s['species'][0]['name']}, "
            f"SNR {s['snr']:.3f}, {s['ctf']['defocus_u']:.1f} µm"
        )
        panels.append((title, sim.image))
    panels += real_panels(Path(args.shared))

    fig, axes = plt.subplots(3, len(panels), figsize=(3.2 * len(panels), 10.2), squeeze=False)
    for col, (title, image) in enumerate(panels):
        working = to_working(image)
        crop = centre_crop(working)
        h, w = working.shape
        whole = display(cv2.resize(working, (w // 2, h // 2), interpolation=cv2.INTER_AREA))
        raw = display(crop)
        low = display(cv2.GaussianBlur(crop, (0, 0), 2.0))
        for row, shown in enumerate((whole, raw, low)):
            ax = axes[row, col]
            ax.imshow(shown, cmap="gray", vmin=-3, vmax=3, interpolation="lanczos")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, col].set_title(title, fontsize=8)
    axes[0, 0].set_ylabel("whole field (binned to 512 px)", fontsize=9)
    axes[1, 0].set_ylabel("512-px centre crop, as recorded", fontsize=9)
    axes[2, 0].set_ylabel("same crop, low-pass σ = 2 px", fontsize=9)
    fig.suptitle(
        "All at the picker's 1024-px working scale with the same normalisation (z-score, ±3σ)",
        fontsize=10,
    )
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Noise does not compress: store 8-bit grey rather than matplotlib's RGBA (4x smaller).
    fig.set_dpi(100)
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    grey = cv2.cvtColor(rgba, cv2.COLOR_RGBA2GRAY)
    if not cv2.imwrite(str(out), grey, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"could not write {out}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

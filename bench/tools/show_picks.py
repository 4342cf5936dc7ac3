"""Picture of what the picker did on one micrograph: denoised image with picks, and the U-Net map.

    python bench/tools/show_picks.py ../shared/data/real/unlabeled-raw/epu2.9_example.mrc \
        -o docs/img/epu_picks.jpg

A thin wrapper over ``cryosegnet show MICROGRAPH --map --stage peaks`` (the library function
:func:`cryosegnet.inspection.show.show_picks`) that keeps the figures of BENCHMARKS.md
reproducible. Left: the denoised micrograph with a circle of the picked diameter at every pick
above the default threshold. Right: the U-Net probability map. ``--bad-mask`` counts picks
that land on contamination.
"""

from __future__ import annotations

import argparse

from cryosegnet.inspection.show import ShowSettings, show_picks
from cryosegnet.io.micrographs import read_micrograph


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("micrograph")
    parser.add_argument("-o", "--output", required=True, help="PNG to write")
    parser.add_argument("--model", default=None)
    parser.add_argument("--diameter", type=float, default=None, help="micrograph pixels")
    parser.add_argument("--size", type=int, default=600, help="height of each panel (px)")
    parser.add_argument(
        "--bad-mask",
        default=None,
        help="MRC mask (1 = contamination) at micrograph size: report the "
        "fraction of picks that fall on it",
    )
    args = parser.parse_args()

    settings = ShowSettings(
        height=args.size,
        diameter=args.diameter,
        probability_map=True,
        model=args.model,
        stage="peaks",
        device="cpu",
    )
    result = show_picks(args.micrograph, args.output, settings=settings)
    picks = result.picks
    diameter = picks["diameter"].median() if len(picks) else float("nan")
    print(f"{args.micrograph}: {len(picks)} picks, diameter {diameter:.0f} px -> {args.output}")
    if args.bad_mask:
        image_shape = read_micrograph(args.micrograph).shape
        bad = read_micrograph(args.bad_mask).data > 0.5
        if bad.shape != image_shape:
            raise SystemExit(f"{args.bad_mask}: shape {bad.shape} is not the micrograph's")
        cols = picks["x"].round().astype(int).clip(0, bad.shape[1] - 1)
        rows = picks["y"].round().astype(int).clip(0, bad.shape[0] - 1)
        print(
            f"picks on the bad-region mask: {bad[rows, cols].mean():.1%} "
            f"(mask covers {bad.mean():.1%} of the micrograph)"
        )


if __name__ == "__main__":
    main()

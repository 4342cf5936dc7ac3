"""Picture of what the picker did on one micrograph: denoised image with picks, and the U-Net map.

    python bench/show_picks.py ../shared/data/real/unlabeled-raw/epu2.9_example.mrc \
        -o docs/img/epu_picks.jpg

Left: the denoised micrograph at working resolution with a circle of the picked diameter at
every pick above the default threshold. Right: the U-Net probability map. For eyeballing picks
on micrographs without labels; ``--bad-mask`` counts picks that land on contamination.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

from cryosegnet.io.atomic import atomic_path
from cryosegnet.io.micrographs import read_micrograph
from cryosegnet.picking.picker import Picker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("micrograph")
    parser.add_argument("-o", "--output", required=True, help="PNG to write")
    parser.add_argument("--model", default=None)
    parser.add_argument("--diameter", type=float, default=None, help="micrograph pixels")
    parser.add_argument("--size", type=int, default=600, help="height of each panel (px)")
    parser.add_argument("--bad-mask", default=None,
                        help="MRC mask (1 = contamination) at micrograph size: report the "
                             "fraction of picks that fall on it")
    args = parser.parse_args()

    picker = Picker(model=args.model, device="cpu", stage="builtin", diameter=args.diameter)
    image = read_micrograph(args.micrograph).data
    denoised = picker.preprocess(image)
    probability = picker.probability_maps([denoised])[0]
    result = picker.instances(probability, image.shape)
    scale = probability.shape[1] / image.shape[1]
    panel = cv2.cvtColor(denoised, cv2.COLOR_GRAY2BGR)
    for x, y, d in result.picks[["x", "y", "diameter"]].to_numpy(float):
        centre = (int(round((x + 0.5) * scale - 0.5)), int(round((y + 0.5) * scale - 0.5)))
        cv2.circle(panel, centre, max(1, int(d * scale / 2)), (0, 0, 255), 2)
    heat = cv2.applyColorMap((np.clip(probability, 0, 1) * 255).astype(np.uint8),
                             cv2.COLORMAP_VIRIDIS)
    width = int(round(args.size * panel.shape[1] / panel.shape[0]))
    figure = np.hstack([cv2.resize(p, (width, args.size), interpolation=cv2.INTER_AREA)
                        for p in (panel, heat)])
    with atomic_path(args.output) as tmp:
        if not cv2.imwrite(str(tmp), figure):
            raise SystemExit(f"{args.output}: could not write the image")
    print(f"{args.micrograph}: {len(result.picks)} picks, diameter {result.diameter:.0f} px "
          f"-> {args.output}")
    if args.bad_mask:
        bad = read_micrograph(args.bad_mask).data > 0.5
        if bad.shape != image.shape:
            raise SystemExit(f"{args.bad_mask}: shape {bad.shape} is not the micrograph's")
        cols = result.picks["x"].round().astype(int).clip(0, bad.shape[1] - 1)
        rows = result.picks["y"].round().astype(int).clip(0, bad.shape[0] - 1)
        print(f"picks on the bad-region mask: {bad[rows, cols].mean():.1%} "
              f"(mask covers {bad.mean():.1%} of the micrograph)")


if __name__ == "__main__":
    main()

"""picking/config.py: every default once, stage names, options that cannot apply."""

from __future__ import annotations

import dataclasses
import math

import pytest

from cryosegnet.cli import main as cli_main
from cryosegnet.cli.main import main
from cryosegnet.masks.sam import SamSettings
from cryosegnet.picking.config import (
    DEFAULT_THRESHOLDS,
    STAGES,
    PickerConfig,
    canonical_stage,
    inapplicable,
)
from cryosegnet.picking.picker import Picker
from cryosegnet.postprocessing.algorithm1 import PostprocessSettings


def test_the_former_stage_name_is_an_alias_and_watershed_is_gone():
    assert canonical_stage("builtin") == "peaks"
    assert PickerConfig(stage="builtin").stage == "peaks"
    assert "watershed" not in STAGES and "builtin" not in STAGES
    with pytest.raises(ValueError, match="unknown instance stage 'watershed'"):
        PickerConfig(stage="watershed")


def test_picker_settings_come_from_the_config(tiny_model):
    picker = Picker(model=tiny_model, device="cpu", stage="builtin")
    assert picker.stage == "peaks" and picker.config.stage == "peaks"
    assert picker.threshold == DEFAULT_THRESHOLDS["peaks"]
    assert picker.postprocess_settings.tolerance_factor == PickerConfig().size_tolerance
    assert picker.border_fraction == PickerConfig().border_fraction
    given = Picker(model=tiny_model, device="cpu", config=PickerConfig(threshold=0.3), diameter=40)
    assert given.threshold == 0.3 and given.postprocess_settings.diameter_override == 40
    with pytest.raises(TypeError, match="mask_threshold"):
        Picker(model=tiny_model, device="cpu", mask_threshold=0.2)


def test_algorithm1_and_the_picker_share_their_defaults():
    """One value each: the SAM threshold and the size window live in PostprocessSettings."""
    assert DEFAULT_THRESHOLDS["sam"] == PostprocessSettings().score_threshold == 0.94
    assert PickerConfig().size_tolerance == PostprocessSettings().tolerance_factor == 0.4


def test_config_refuses_numbers_that_cannot_work():
    for bad in (
        dict(threshold=math.nan),
        dict(diameter=0.0),
        dict(size_tolerance=-1.0),
        dict(border_fraction=1.0),
        dict(denoise_order="slow"),
    ):
        with pytest.raises(ValueError):
            PickerConfig(**bad)


def test_sam_only_options_are_named_when_the_stage_is_not_sam(tiny_model):
    config = PickerConfig(size_tolerance=0.2, sam=SamSettings(points_per_side=8))
    assert inapplicable(config, "peaks") == ["--size-tolerance", "--points-per-side"]
    assert inapplicable(config, "sam") == []
    assert inapplicable(PickerConfig(), "peaks") == []
    with pytest.raises(Exception, match="--size-tolerance: option"):
        Picker(model=tiny_model, device="cpu", stage="peaks", size_tolerance=0.2)


@pytest.mark.parametrize(
    "option",
    [
        ["--size-tolerance", "0.2"],
        ["--points-per-side", "8"],
        ["--pred-iou-thresh", "0.5"],
        ["--sam-model-type", "vit_b"],
    ],
)
def test_pick_refuses_sam_options_with_another_stage(tmp_path, tiny_model, capsys, option):
    import numpy as np
    from PIL import Image

    image = tmp_path / "m.png"
    Image.fromarray((np.random.default_rng(0).random((96, 96)) * 255).astype(np.uint8)).save(image)
    code = main(
        ["pick", str(image), "-o", str(tmp_path / "out"), "--model", str(tiny_model)]
        + ["--stage", "peaks", "--device", "cpu", *option]
    )
    err = capsys.readouterr().err
    assert code != 0 and option[0] in err and "SAM stage" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.star"))


def test_pick_help_quotes_the_config_defaults():
    parser = cli_main.build_parser()
    pick = parser._subparsers._group_actions[0].choices["pick"]  # type: ignore[union-attr]
    text = " ".join(pick.format_help().split())
    assert f"(default: {PickerConfig().size_tolerance:g}," in text
    for field in ("points_per_side", "pred_iou_thresh", "stability_score_thresh"):
        assert f"(default: {getattr(SamSettings(), field):g})" in text
    for stage, value in DEFAULT_THRESHOLDS.items():
        assert f"{stage} {value:g}" in text
    assert "--mask-threshold" not in text


def test_changed_lists_only_what_differs():
    config = PickerConfig(threshold=0.2, sam=dataclasses.replace(SamSettings(), points_per_side=4))
    assert set(config.changed()) == {"threshold", "sam"}

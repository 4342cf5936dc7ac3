"""SAM stage: a tiny randomly-initialised SAM end to end, and checkpoint errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sam_helpers import tiny_sam

from cryosegnet.errors import CheckpointError
from cryosegnet.masks.base import InstanceMask
from cryosegnet.masks.sam import (
    CHECKPOINT_NAMES,
    ENV_VAR,
    SamMaskGenerator,
    find_sam_checkpoint,
    load_sam,
    probability_to_rgb,
    read_sam_state_dict,
    records_to_masks,
)


def blob_map(shape=(48, 64)) -> np.ndarray:
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    prob = np.zeros(shape, np.float32)
    for cx, cy in [(16, 14), (44, 30)]:
        prob[(cols - cx) ** 2 + (rows - cy) ** 2 <= 36] = 0.95
    return prob


def test_tiny_sam_end_to_end_returns_converted_masks():
    gen = SamMaskGenerator.from_model(
        tiny_sam(),
        points_per_side=4,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        box_nms_thresh=0.95,
    )
    assert gen.name == "sam" and "in-memory" in gen.describe()
    probability = blob_map()  # non-square: SAM pads to its square input
    masks = gen.generate(probability)
    assert len(masks) > 0  # thresholds at 0: the random model's masks must come through
    for m in masks:
        assert isinstance(m, InstanceMask)
        x, y, w, h = m.bbox
        assert 0 <= x and x + w <= probability.shape[1] and 0 <= y and y + h <= probability.shape[0]
        assert w >= 1 and h >= 1 and m.area >= 1 and m.area <= w * h
        assert isinstance(m.score, float) and np.isfinite(m.score)
    again = gen.generate(probability)  # deterministic on CPU
    assert [m.bbox for m in again] == [m.bbox for m in masks]


def test_flat_map_short_circuits():
    gen = SamMaskGenerator.from_model(tiny_sam(), points_per_side=2)
    assert gen.generate(np.zeros((32, 32), np.float32)) == []


def test_probability_to_rgb_min_max_scales():
    rgb = probability_to_rgb(np.array([[0.2, 0.6], [1.0, 0.2]], np.float32))
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[..., 0].tolist() == [[0, 128], [255, 0]]
    assert (rgb[..., 0] == rgb[..., 2]).all()


def test_records_to_masks_counts_pixels_in_boxes():
    records = [
        {"bbox": [3, 4, 4, 2], "predicted_iou": 0.97, "area": 12, "point_coords": [[5, 5]]},
        {"bbox": [0, 0, 0, 0], "predicted_iou": 0.9, "area": 0, "point_coords": [[1, 1]]},
    ]
    (mask,) = records_to_masks(records)
    assert mask.bbox == (3.0, 4.0, 5.0, 3.0) and mask.score == 0.97 and mask.area == 12


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.pth"
    torch.save(tiny_sam().state_dict(), path)
    return path


def test_type_mismatch_is_one_clear_line(tiny_checkpoint: Path):
    with pytest.raises(CheckpointError) as err:
        load_sam(tiny_checkpoint, "vit_b")
    message = str(err.value)
    assert "\n" not in message and str(tiny_checkpoint) in message
    assert "width 32 with 2 blocks" in message and "vit_b" in message and "768" in message


def test_published_type_is_named_in_the_mismatch(tmp_path: Path):
    # what a real vit_b file looks like to the checker (shapes only, no 375 MB download)
    fake = {"image_encoder.pos_embed": torch.zeros(1, 2, 2, 768, dtype=torch.float16)}
    fake.update({f"image_encoder.blocks.{i}.norm1.weight": torch.zeros(1) for i in range(12)})
    path = tmp_path / CHECKPOINT_NAMES["vit_b"]
    torch.save(fake, path)
    with pytest.raises(
        CheckpointError,
        match="found a SAM vit_b checkpoint but --sam-model-type "
        "is vit_h.*use --sam-model-type vit_b",
    ):
        read_sam_state_dict(path, "vit_h")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_cuda_is_not_blamed_on_the_file(tiny_checkpoint: Path):
    with pytest.raises(ValueError, match="CUDA is not available"):
        read_sam_state_dict(tiny_checkpoint, "vit_b", device="cuda")


def test_corrupt_truncated_and_foreign_files(tmp_path: Path, tiny_checkpoint: Path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a checkpoint" * 50)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(tiny_checkpoint.read_bytes()[:2000])
    foreign = tmp_path / "foreign.pth"
    torch.save({"conv.weight": torch.zeros(3)}, foreign)
    for path, pattern in [
        (garbage, "corrupt"),
        (truncated, "corrupt"),
        (foreign, "not a SAM checkpoint"),
        (tmp_path / "missing.pth", "not found"),
    ]:
        with pytest.raises(CheckpointError, match=pattern) as err:
            SamMaskGenerator(path, "vit_b")
        assert "\n" not in str(err.value)


def test_checkpoint_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert find_sam_checkpoint("vit_h") is None  # nothing anywhere -> built-in stage
    with pytest.raises(CheckpointError, match="no SAM checkpoint configured"):
        SamMaskGenerator(model_type="vit_h")

    cached = tmp_path / "cache" / "cryosegnet" / "sam" / "sam_vit_l_0b3195.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert find_sam_checkpoint("vit_l") == cached
    assert find_sam_checkpoint("vit_h") is None

    env_file = tmp_path / "env.pth"
    monkeypatch.setenv(ENV_VAR, str(env_file))
    assert find_sam_checkpoint("vit_l") == env_file  # configured, even though missing
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert find_sam_checkpoint("vit_b") == tmp_path / "sam_vit_b_01ec64.pth"  # directory
    assert find_sam_checkpoint("vit_l", explicit="/x/explicit.pth") == Path("/x/explicit.pth")
    with pytest.raises(ValueError):
        find_sam_checkpoint("vit_x")


def test_load_path_with_a_registry_of_tiny_models(
    tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
):
    """The real loading code (registry build, weights_only load, strict load_state_dict)."""
    import segment_anything

    import cryosegnet.masks.sam as sam_module

    monkeypatch.setitem(segment_anything.sam_model_registry, "vit_b", lambda: tiny_sam(seed=1))
    monkeypatch.setitem(sam_module.ENCODER_SHAPES, "vit_b", (32, 2))
    gen = SamMaskGenerator(tiny_checkpoint, "vit_b", points_per_side=2)
    assert gen.checkpoint == tiny_checkpoint and gen.describe().startswith("SAM vit_b")
    reference = tiny_sam(seed=0).state_dict()  # the weights saved, not the seed-1 init
    for key, value in gen.model.state_dict().items():
        assert torch.equal(value, reference[key])
    assert not any(t.is_meta for t in gen.model.buffers())  # non-persistent buffers are real
    gen.generate(blob_map())  # and the loaded model runs

    broken = tiny_sam().state_dict()
    del broken["mask_decoder.iou_prediction_head.layers.0.weight"]
    path = tmp_path / "broken.pth"
    torch.save(broken, path)
    with pytest.raises(CheckpointError, match="weights do not fit SAM vit_b"):
        load_sam(path, "vit_b")

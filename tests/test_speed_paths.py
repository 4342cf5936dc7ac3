"""The fast paths give the reference path's picks: OpenCV filters vs scipy.ndimage in the
built-in peak stage, ONNX Runtime vs PyTorch for the U-Net on a CPU."""

from __future__ import annotations

import numpy as np
import pytest
from map_helpers import disks
from scipy import ndimage as ndi

from cryosegnet.masks import peaks
from cryosegnet.preprocessing import filters
from cryosegnet.preprocessing.denoise import DenoiseSettings, denoise


def _reference_filters(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make masks/peaks.py use scipy.ndimage, the implementation the fast filters replace."""
    monkeypatch.setattr(
        peaks,
        "gaussian_filter",
        lambda image, sigma: ndi.gaussian_filter(image, sigma, mode="reflect"),
    )
    monkeypatch.setattr(
        peaks,
        "gaussian_laplace",
        lambda image, sigma: ndi.gaussian_laplace(image, sigma, mode="reflect"),
    )
    monkeypatch.setattr(
        peaks, "maximum_filter", lambda image, size: ndi.maximum_filter(image, size=size)
    )


def _simulated_map(size: int = 512, seed: int = 3) -> np.ndarray:
    """A probability-like map: particles of ~22 px, fragmented and noisy, plus a plateau."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(20, size - 20, (140, 2))
    prob = disks((size, size), [tuple(c) for c in centres], 11.0, value=0.8)
    prob *= rng.uniform(0.3, 1.0, prob.shape) > 0.35  # fragments
    prob += 0.15 * rng.random(prob.shape)
    prob[: size // 5, : size // 3] += 0.3  # an ice/carbon plateau
    return ndi.gaussian_filter(prob, 1.5).astype(np.float32)


@pytest.mark.parametrize("sigma", [0.8, 2.83, 4.4, 5.99, 24.5])
def test_filters_match_scipy(sigma: float) -> None:
    image = _simulated_map(256)
    for ours, theirs in [
        (filters.gaussian_filter(image, sigma), ndi.gaussian_filter(image, sigma, mode="reflect")),
        (
            filters.gaussian_laplace(image, sigma),
            ndi.gaussian_laplace(image, sigma, mode="reflect"),
        ),
    ]:
        assert ours.dtype == np.float32
        assert np.abs(ours - theirs).max() <= 2e-6 * max(1.0, float(np.abs(theirs).max()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [1, 3, 5, 12, 31])
def test_maximum_filter_is_exact(size: int, dtype) -> None:
    image = np.random.default_rng(size).random((70, 53)).astype(dtype)
    ours = filters.maximum_filter(image, size)
    assert ours.dtype == dtype
    np.testing.assert_array_equal(ours, ndi.maximum_filter(image, size=size))


def test_filters_on_maps_smaller_than_the_kernel() -> None:
    image = np.random.default_rng(0).random((7, 9)).astype(np.float32)
    np.testing.assert_allclose(
        filters.gaussian_laplace(image, 3.0),
        ndi.gaussian_laplace(image, 3.0, mode="reflect"),
        atol=1e-6,
    )
    np.testing.assert_array_equal(
        filters.maximum_filter(image, 11), ndi.maximum_filter(image, size=11)
    )


def _assert_same_picks(fast, reference, tolerance: float = 1.0) -> None:
    """One-to-one: every pick has a partner within ``tolerance`` px (one working pixel) whose
    score is within 1e-3 (the order of near-tied scores may differ)."""
    from scipy.spatial import cKDTree

    assert len(fast) == len(reference)
    if not len(fast):
        return
    distance, partner = cKDTree(reference[["x", "y"]].to_numpy()).query(fast[["x", "y"]].to_numpy())
    assert distance.max() <= tolerance
    assert len(set(partner.tolist())) == len(fast)
    np.testing.assert_allclose(
        fast["score"].to_numpy(), reference["score"].to_numpy()[partner], atol=1e-3
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_peak_stage_fast_filters_give_the_reference_picks(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    prob = _simulated_map(512, seed)
    fast_diameter = peaks.estimate_diameter(prob)
    fast = peaks.find_peaks(prob, fast_diameter)
    with monkeypatch.context() as m:
        _reference_filters(m)
        reference_diameter = peaks.estimate_diameter(prob)
        reference = peaks.find_peaks(prob, reference_diameter)
    assert fast_diameter == reference_diameter
    assert len(reference) > 50
    _assert_same_picks(fast, reference)


def test_peak_stage_on_a_real_micrograph_map(shared_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped model's map of the real EPU micrograph: same diameter, same picks."""
    from cryosegnet.io.micrographs import read_micrograph
    from cryosegnet.picking.picker import Picker

    path = shared_dir / "data" / "real" / "unlabeled-raw" / "epu2.9_example.mrc"
    if not path.is_file():
        pytest.skip("the EPU example micrograph is not present")
    picker = Picker(device="cpu", stage="peaks", runtime="torch")
    image = read_micrograph(path).data
    prob = picker.probability_maps([picker.preprocess(image)])[0]
    fast = picker.instances(prob, image.shape)
    with monkeypatch.context() as m:
        _reference_filters(m)
        reference = picker.instances(prob, image.shape)
    assert fast.diameter == reference.diameter
    # Picks are in micrograph pixels: a peak on a plateau may move by one working pixel.
    _assert_same_picks(fast.picks, reference.picks, tolerance=image.shape[1] / prob.shape[1])


# ---------------------------------------------------------------- ONNX Runtime for the U-Net


@pytest.fixture
def ort():
    return pytest.importorskip("onnxruntime")


@pytest.fixture
def onnx_cache(tmp_path, monkeypatch: pytest.MonkeyPatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv("CRYOSEGNET_RUNTIME", raising=False)
    return cache / "cryosegnet" / "onnx"


def test_onnx_unet_matches_pytorch(tiny_model, blob_image, onnx_cache, ort) -> None:
    from cryosegnet.picking.picker import Picker

    reference = Picker(model=tiny_model, device="cpu", stage="peaks", runtime="torch")
    fast = Picker(model=tiny_model, device="cpu", stage="peaks", runtime="onnx")
    # Non-square and not a multiple of 2**depth: the padding path is exercised too.
    images = [
        denoise(blob_image, DenoiseSettings(working_size=256)),
        denoise(blob_image[:97, :61], DenoiseSettings(working_size=256)),
    ]
    for image in images:
        ref_map = reference.probability_maps([image])[0]
        fast_map = fast.probability_maps([image])[0]
        assert fast_map.shape == ref_map.shape == image.shape
        assert fast_map.dtype == np.float32
        assert np.abs(fast_map - ref_map).max() < 1e-4
    assert fast._cpu_unet is not None and reference._cpu_unet is None
    exported = list(onnx_cache.glob("*.onnx"))
    assert len(exported) == 1  # cached, named after the checkpoint
    again = Picker(model=tiny_model, device="cpu", stage="peaks", runtime="onnx")
    again.probability_maps([images[0]])
    assert list(onnx_cache.glob("*.onnx")) == exported  # reused, not exported again
    assert exported[0].stat().st_mtime_ns == list(onnx_cache.glob("*.onnx"))[0].stat().st_mtime_ns


def test_onnx_and_pytorch_pick_the_same(tiny_model, blob_image, onnx_cache, ort) -> None:
    from cryosegnet.picking.picker import Picker

    reference = Picker(
        model=tiny_model, device="cpu", stage="peaks", runtime="torch", threshold=0.0, diameter=16
    )
    fast = Picker(
        model=tiny_model, device="cpu", stage="peaks", runtime="auto", threshold=0.0, diameter=16
    )
    ref = reference.pick(blob_image)
    out = fast.pick(blob_image)
    assert fast._cpu_unet is not None
    # One working pixel in micrograph pixels (the 300-px image is picked at 256 px): a peak on
    # a plateau of near-equal map values may move by that much.
    _assert_same_picks(out, ref, tolerance=300 / 256)


def test_without_onnxruntime_the_picker_uses_pytorch(
    tiny_model, blob_image, onnx_cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryosegnet.model import onnx_runtime
    from cryosegnet.picking.picker import Picker

    monkeypatch.setattr(onnx_runtime, "onnxruntime_available", lambda: False)
    picker = Picker(model=tiny_model, device="cpu", stage="peaks")
    picker.pick(blob_image)
    assert picker._cpu_unet is None
    with pytest.raises(RuntimeError, match="onnxruntime"):
        Picker(model=tiny_model, device="cpu", stage="peaks", runtime="onnx").pick(blob_image)


def test_runtime_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from cryosegnet.model.onnx_runtime import requested_runtime

    monkeypatch.setenv("CRYOSEGNET_RUNTIME", "torch")
    assert requested_runtime() == "torch"
    assert requested_runtime("onnx") == "onnx"
    monkeypatch.setenv("CRYOSEGNET_RUNTIME", "tensorrt")
    with pytest.raises(ValueError, match="unknown U-Net runtime"):
        requested_runtime()


def test_unwritable_cache_still_uses_onnx(
    tiny_model, blob_image, tmp_path, ort, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryosegnet.picking.picker import Picker

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    picker = Picker(model=tiny_model, device="cpu", stage="peaks", runtime="onnx")
    picker.pick(blob_image)
    assert picker._cpu_unet is not None and picker._cpu_unet.path is None  # type: ignore[attr-defined]

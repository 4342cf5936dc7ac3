"""The radial filter (a learnt, whitened matched filter of ring means): it picks the particles
it was taught, its response is the study's per-ring maps folded into one kernel, its scores are
in the batch's units or each micrograph's own, and it survives a JSON round trip (a file written
before the units were an option loads in batch units)."""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest
from radial_helpers import round_particles

from cryosegnet.errors import CryoSegNetError, SettingsError
from cryosegnet.evaluation.metrics import evaluate_picks
from cryosegnet.simulation import simulate_micrograph
from cryosegnet.training.radial_filter import (
    FORMAT_VERSION,
    RadialFilter,
    RadialFilterSettings,
    prefilter,
    ring_features,
    ring_kernels,
    robust_z,
)

DIAMETER = 24.0


@pytest.fixture(scope="module")
def field():
    """Two easy simulated micrographs of round particles on clean ice, and their true centres."""
    config = round_particles(DIAMETER)
    sims = {f"m{i}": simulate_micrograph(config, 40 + i) for i in range(2)}
    images = {name: sim.image for name, sim in sims.items()}
    centres = {name: sim.picks[["x", "y"]].to_numpy(float) for name, sim in sims.items()}
    return images, centres


def _best_f1(radial: RadialFilter, images, centres) -> float:
    picks = {name: radial.pick(image, min_score=-np.inf) for name, image in images.items()}
    labels = {name: _table(xy) for name, xy in centres.items()}
    return float(evaluate_picks(picks, labels, radius=DIAMETER / 2).pooled["best_f1"])


def _table(xy):
    import pandas as pd

    return pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1]})


def test_a_filter_learnt_from_true_centres_picks_the_particles_far_better_than_from_misses(field):
    images, centres = field
    taught = RadialFilter.fit(images, centres, DIAMETER, seed=0)
    rng = np.random.default_rng(1)
    angle = {name: rng.uniform(0, 2 * np.pi, len(xy)) for name, xy in centres.items()}
    beside = {  # each centre moved 3/4 of a diameter: the filter learns the ice around them
        name: xy + 0.75 * DIAMETER * np.c_[np.cos(angle[name]), np.sin(angle[name])]
        for name, xy in centres.items()
    }
    missed = RadialFilter.fit(images, beside, DIAMETER, seed=0)
    good, bad = _best_f1(taught, images, centres), _best_f1(missed, images, centres)
    assert good > 0.7
    assert good > bad + 0.4
    assert taught.n_positives == sum(len(xy) for xy in centres.values())


def test_batch_scores_are_zero_at_random_places_and_one_at_the_positives_on_average(field):
    images, centres = field
    batch = RadialFilterSettings(score_units="batch")
    radial = RadialFilter.fit(images, centres, DIAMETER, seed=0, settings=batch)
    everywhere, at_positives = [], []
    for name, image in images.items():
        response = radial.response(image)
        xy = np.round(centres[name]).astype(int)
        everywhere.append(response.ravel())
        at_positives.append(response[np.clip(xy[:, 1], 0, 383), np.clip(xy[:, 0], 0, 383)])
    # The random places are a sample of everywhere; the positives' mean is exact.
    assert float(np.concatenate(everywhere).mean()) == pytest.approx(0.0, abs=0.1)
    assert float(np.concatenate(at_positives).mean()) == pytest.approx(1.0, abs=1e-3)
    picks = radial.pick(images["m0"])
    assert (picks["score"] >= radial.threshold).all()
    assert list(picks["score"]) == sorted(picks["score"], reverse=True)


def test_micrograph_scores_are_each_micrographs_robust_z_and_the_threshold_is_read_in_them(
    field,
):
    images, centres = field
    radial = RadialFilter.fit(images, centres, DIAMETER, seed=0)
    assert radial.settings.score_units == "micrograph"
    scores = []
    for name, image in images.items():
        response = radial.response(image)
        centre = float(np.median(response))
        assert centre == pytest.approx(0.0, abs=1e-5)
        assert 1.4826 * float(np.median(np.abs(response - centre))) == pytest.approx(1.0, rel=1e-4)
        xy = np.round(centres[name]).astype(int)
        scores.append(response[np.clip(xy[:, 1], 0, 383), np.clip(xy[:, 0], 0, 383)])
    below = float((np.concatenate(scores) < radial.threshold).mean())
    # the threshold is the positives' 10 % quantile, in the units pick() scores them in
    assert below == pytest.approx(radial.settings.threshold_quantile, abs=0.02)
    assert radial.threshold > 1  # a particle stands above its micrograph's typical place
    picks = radial.pick(images["m0"])
    assert (picks["score"] >= radial.threshold).all()


def test_micrograph_units_do_not_depend_on_the_other_micrographs_scale(field):
    """A micrograph's scores are its own: the same micrograph scores the same whatever else the
    filter picks, and scaling the image's contrast changes nothing."""
    images, centres = field
    radial = RadialFilter.fit(images, centres, DIAMETER, seed=0)
    image = images["m1"]
    assert np.allclose(radial.response(image), radial.response(5.0 * image + 3.0), atol=1e-3)


def test_the_response_is_the_per_ring_convolutions_weighted(field):
    images, centres = field
    batch = RadialFilterSettings(score_units="batch")
    radial = RadialFilter.fit(images, centres, DIAMETER, seed=0, settings=batch)
    filtered = prefilter(images["m1"], DIAMETER, radial.settings)
    kernels = ring_kernels(DIAMETER, radial.settings)
    maps = np.stack(
        [cv2.filter2D(filtered, -1, k, borderType=cv2.BORDER_REFLECT) for k in kernels], -1
    )
    expected = maps @ np.asarray(radial.weights) - radial.offset
    assert np.allclose(radial.response(images["m1"]), expected, atol=1e-4)
    places = np.array([[0.0, 0.0], [3.0, 200.0], [383.0, 100.0], [190.4, 201.6]])
    rows, cols = np.round(places[:, 1]).astype(int), np.round(places[:, 0]).astype(int)
    assert np.allclose(ring_features(filtered, places, kernels), maps[rows, cols], atol=1e-5)


def test_a_saved_filter_loads_and_picks_identically(field, tmp_path):
    images, centres = field
    radial = RadialFilter.fit(images, centres, DIAMETER, seed=0)
    path = radial.save(tmp_path / "radial_filter.json")
    loaded = RadialFilter.load(path)
    assert loaded == radial
    assert radial.pick(images["m0"]).equals(loaded.pick(images["m0"]))
    assert RadialFilter.from_dict(radial.to_dict()) == radial


def test_a_filter_file_written_before_score_units_loads_in_batch_units(field, tmp_path):
    images, centres = field
    batch = RadialFilterSettings(score_units="batch")
    radial = RadialFilter.fit(images, centres, DIAMETER, seed=0, settings=batch)
    old = radial.to_dict()
    del old["settings"]["score_units"]
    old["format_version"] = 1
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    loaded = RadialFilter.load(path)
    assert loaded.settings.score_units == "batch" and loaded == radial
    assert radial.to_dict()["settings"]["score_units"] == "batch"
    assert radial.to_dict()["format_version"] == FORMAT_VERSION
    newer = {**radial.to_dict(), "format_version": 99}
    with pytest.raises(CryoSegNetError, match="newer"):
        RadialFilter.from_dict(newer)


def _distances(xy: np.ndarray) -> np.ndarray:
    """Pairwise distances, a pick's own as infinity."""
    gaps = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
    np.fill_diagonal(gaps, np.inf)
    return gaps


def test_crowded_picks_rank_after_every_uncrowded_one_and_only_those_pass_the_threshold(field):
    images, centres = field
    radial = RadialFilter.fit(images, centres, DIAMETER, seed=0)
    s = radial.settings
    response = radial.response(images["m0"])
    every = radial.pick_response(response, min_score=-np.inf)
    xy = every[["x", "y"]].to_numpy(float)
    assert _distances(xy).min() > s.separation * DIAMETER  # none closer than the separation
    raw = response[every["y"].astype(int), every["x"].astype(int)]
    lowered = np.isclose(every["score"], raw - s.crowding_penalty, atol=1e-4)
    assert np.isclose(every["score"][~lowered], raw[~lowered], atol=1e-4).all()
    # the crowded picks come last, each within the crowding distance of an uncrowded one
    assert lowered.any() and lowered[int(np.argmax(lowered)) :].all()
    to_uncrowded = np.hypot(
        xy[lowered, None, 0] - xy[None, ~lowered, 0], xy[lowered, None, 1] - xy[None, ~lowered, 1]
    )
    assert (to_uncrowded.min(1) <= s.crowding * DIAMETER).all()
    assert _distances(xy[~lowered]).min() > s.crowding * DIAMETER
    written = radial.pick_response(response)
    assert len(written) and (written["score"] >= radial.threshold).all()
    assert written.equals(every[every["score"] >= radial.threshold].reset_index(drop=True))


def test_particles_cut_by_the_edge_are_picked_but_none_nearer_than_the_border(field):
    images, centres = field
    radial = RadialFilter.fit(images, centres, DIAMETER, seed=0)
    earlier = dataclasses.replace(
        radial, settings=dataclasses.replace(radial.settings, border=1 / 3)
    )
    xy = centres["m0"]
    # particles with no other within 1.5 diameters, each cut by the left edge d/6 from its centre
    apart = [c for c in xy if np.sort(np.hypot(*(xy - c).T))[1] > 1.5 * DIAMETER]
    apart = [c for c in apart if DIAMETER < c[1] < 384 - DIAMETER and c[0] > DIAMETER]
    found, found_before = [], []
    for cx, cy in apart:
        left = int(round(cx - DIAMETER / 6))
        cut = np.ascontiguousarray(images["m0"][:, left:])
        for filter_, hits in ((radial, found), (earlier, found_before)):
            picks = filter_.pick(cut)
            margin = int(filter_.settings.border * DIAMETER)
            assert (picks[["x", "y"]].to_numpy() >= margin).all()
            hits.append((np.hypot(picks["x"] - (cx - left), picks["y"] - cy) < DIAMETER / 4).any())
    assert len(apart) >= 5
    # half or more are picked (the pick within d/4 of the centre); the earlier margin of d/3
    # kept nearly all of them out
    assert np.mean(found) >= 0.5
    assert np.mean(found) > np.mean(found_before) + 0.3


def test_the_tail_ratio_keeps_its_margin_whatever_the_picks_border(field):
    images, centres = field
    radial = RadialFilter.fit(images, centres, DIAMETER, seed=0)
    response = radial.response(images["m0"])
    picks_nearer = dataclasses.replace(
        radial, settings=dataclasses.replace(radial.settings, border=0.0)
    )
    assert picks_nearer.tail_ratio(response) == radial.tail_ratio(response)
    margin = int(radial.settings.tail_border * DIAMETER)
    inner = response[margin:-margin, margin:-margin]
    from cryosegnet.postprocessing.empty_micrographs import response_asymmetry

    assert radial.tail_ratio(response) == response_asymmetry(inner, radial.settings.empty_level)
    # a file written before the margin was its own read the ratio inside its border
    old = {**radial.to_dict(), "format_version": 3}
    old["settings"] = {k: v for k, v in old["settings"].items() if k != "tail_border"}
    old["settings"]["border"] = 0.25
    assert RadialFilter.from_dict(old).settings.tail_border == 0.25


def test_a_filter_file_written_before_crowding_crowds_no_pick(field, tmp_path):
    images, centres = field
    radial = RadialFilter.fit(images, centres, DIAMETER, seed=0)
    old = radial.to_dict()
    del old["settings"]["crowding"], old["settings"]["crowding_penalty"]
    old["format_version"] = 2
    loaded = RadialFilter.from_dict(old)
    assert loaded.settings.crowding == 0.0
    every = loaded.pick(images["m0"], min_score=-np.inf)
    response = loaded.response(images["m0"])
    raw = response[every["y"].astype(int), every["x"].astype(int)]
    assert np.allclose(every["score"], raw, atol=1e-4)  # no score lowered


def test_bad_filter_files_and_settings_are_refused(tmp_path):
    (tmp_path / "other.json").write_text('{"kind": "something else"}')
    with pytest.raises(CryoSegNetError, match="other.json: not a cryosegnet radial filter"):
        RadialFilter.load(tmp_path / "other.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(CryoSegNetError, match="broken.json: cannot read"):
        RadialFilter.load(tmp_path / "broken.json")
    with pytest.raises(SettingsError, match="weights"):
        RadialFilter(diameter=DIAMETER, weights=(1.0, 2.0), offset=0.0, threshold=0.5)
    with pytest.raises(SettingsError, match="shrinkage"):
        RadialFilterSettings(shrinkage=2.0)
    with pytest.raises(SettingsError, match="score units must be one of batch, micrograph"):
        RadialFilterSettings(score_units="pixel")


@pytest.mark.parametrize(
    ("told", "refused"), [(24.0, False), (24.2, False), (24.3, True), (40, True)]
)
def test_the_diameter_check_refuses_only_another_size_than_the_filters(told, refused):
    rings = len(ring_kernels(DIAMETER, RadialFilterSettings()))
    radial = RadialFilter(diameter=DIAMETER, weights=(1.0,) * rings, offset=0.0, threshold=0.5)
    if refused:
        message = f"--diameter {told:g}: f.json was learnt for 24 px particles and picks at"
        with pytest.raises(CryoSegNetError, match=message) as caught:
            radial.check_diameter("f.json", told)
        assert "\n" not in str(caught.value)
    else:
        radial.check_diameter("f.json", told)  # equal, or within a value rounded when typed


def test_fitting_without_any_positive_is_refused(field):
    images, _ = field
    with pytest.raises(CryoSegNetError, match="no particle centre"):
        RadialFilter.fit(images, {}, DIAMETER)


def test_a_unet_map_joins_the_response_in_robust_z_units_only_with_a_weight(field):
    images, centres = field
    radial = RadialFilter.fit(images, centres, DIAMETER, seed=0)
    response = radial.response(images["m0"])
    unet_map = np.random.default_rng(0).uniform(0, 1, response.shape).astype(np.float32)
    assert radial.with_map(response, unet_map) is response  # no weight: the filter alone
    weighted = dataclasses.replace(radial, map_weight=0.5)
    centre = np.median(unet_map)
    z = (unet_map - centre) / (1.4826 * np.median(np.abs(unet_map - centre)))
    np.testing.assert_allclose(weighted.with_map(response, unet_map), response + 0.5 * z, atol=1e-4)
    np.testing.assert_allclose(robust_z(unet_map), z, atol=1e-5)
    with pytest.raises(CryoSegNetError, match="map"):
        weighted.with_map(response, None)
    with pytest.raises(CryoSegNetError, match="map"):
        weighted.with_map(response, unet_map[:-1])
    with pytest.raises(SettingsError, match="map weight"):
        dataclasses.replace(radial, map_weight=-0.1)


def test_a_saved_filter_keeps_its_unet_map_and_an_older_file_has_none(field, tmp_path):
    images, centres = field
    radial = RadialFilter.fit(images, centres, DIAMETER, seed=0)
    weighted = dataclasses.replace(
        radial, map_weight=0.075, map_model="unet.pt", map_model_sha256="ab" * 32
    )
    assert RadialFilter.load(weighted.save(tmp_path / "radial_filter.json")) == weighted
    old = radial.to_dict()
    del old["unet_map"]
    old["format_version"] = 4
    loaded = RadialFilter.from_dict(old)
    assert loaded == radial and loaded.map_weight == 0 and loaded.map_model is None

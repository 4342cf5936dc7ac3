"""The label-free refinement loop (pick --refine): a round end to end, the stop rule, the refusal
when no class is kept, micrograph triage and the pseudo-labels' targets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
import torch
from radial_helpers import round_particles

from cryosegnet.classification.outputs import read_classification
from cryosegnet.classification.settings import ClassifySettings, SelectionSettings
from cryosegnet.cli.main import main
from cryosegnet.errors import CryoSegNetError, SettingsError
from cryosegnet.model.checkpoint import load_model, save_checkpoint
from cryosegnet.model.unet import AttentionUNet, UNetConfig
from cryosegnet.picking.batch import pick_batch
from cryosegnet.picking.picker import Picker
from cryosegnet.preprocessing.denoise import DenoiseSettings
from cryosegnet.simulation import SimulationConfig, simulate_micrograph
from cryosegnet.training.dataset import IGNORE
from cryosegnet.training.refine_loop import (
    BAD_LIST,
    MODEL_NAME,
    RADIAL_FILTER_NAME,
    RECORD_NAME,
    RefineSettings,
    RoundJudgement,
    count_picks,
    kept_change,
    refine_picks,
    training_sample,
)

DIAMETER = 24.0
# Small and quick: a few classes of small boxes, one short fine-tuning per round.
FAST = RefineSettings(
    rounds=2,
    min_classes=2,
    picks_per_class=20,
    epochs=1,
    steps_per_epoch=2,
    crop=64,
    batch_size=2,
    classify=ClassifySettings(
        n_classes=3, iterations=3, full_iterations=1, working_box=32, decoys=200, device="cpu"
    ),
)


def _session(root: Path) -> tuple[list[Path], dict]:
    """Two easy simulated micrographs and one of pure noise (an empty hole); a tiny U-Net."""
    mics = root / "mics"
    mics.mkdir(parents=True)
    config = SimulationConfig(size=256, difficulty="easy", diameter_px=DIAMETER, density="dense")
    for i in range(2):
        with mrcfile.new(mics / f"m{i}.mrc") as mrc:
            mrc.set_data(simulate_micrograph(config, 40 + i).image.astype(np.float32))
    with mrcfile.new(mics / "empty.mrc") as mrc:
        noise = np.random.default_rng(0).normal(0, 1, (256, 256))
        mrc.set_data(noise.astype(np.float32))
    torch.manual_seed(0)
    model = root / "tiny.pt"
    net = AttentionUNet(UNetConfig(base_width=4, depth=5))
    save_checkpoint(model, net, DenoiseSettings(working_size=256), metadata={"purpose": "test"})
    # The LoG stage picks the dark blobs whatever the network says: the re-picks repeat the
    # starting picks, so the kept set cannot change and the stop rule must end the loop.
    options = {"model": model, "device": "cpu", "stage": "log", "diameter": DIAMETER}
    return sorted(mics.glob("*.mrc")), options


def _picker_factory(options: dict):
    return lambda model: Picker(**{**options, "model": model or options["model"]})


def _refine(mics, root, options, settings, log_fn=lambda line: None):
    """The loop on ``root/picks`` into ``root/refine``, from the session's model (quietly,
    unless ``log_fn`` takes its lines)."""
    return refine_picks(
        mics,
        root / "picks",
        root / "refine",
        _picker_factory(options),
        start_model=options["model"],
        settings=settings,
        device="cpu",
        log_fn=log_fn,
    )


@pytest.fixture(scope="module")
def refined(tmp_path_factory):
    root = tmp_path_factory.mktemp("refine")
    mics, options = _session(root)
    pick_batch(Picker(**options), mics, root / "picks", progress=False)
    summary = _refine(mics, root, options, FAST)
    return root, summary, options


def test_a_round_runs_end_to_end_and_writes_a_model_pick_loads(refined):
    root, summary, options = refined
    assert summary.model == root / "refine" / MODEL_NAME
    unet, _, payload = load_model(summary.model)
    assert payload["metadata"]["refine"]["round"] == 1
    assert payload["metadata"]["refine"]["positives"] > 0
    picker = Picker(**{**options, "model": summary.model})
    assert picker.model_diameter == pytest.approx(DIAMETER, rel=0.05)  # the size it learnt
    assert (root / "refine" / "round1" / "classes" / "classes.csv").is_file()
    assert (root / "refine" / RECORD_NAME).is_file()


def test_the_loop_stops_when_the_kept_set_stops_changing(refined):
    _, summary, _ = refined
    assert [r.round for r in summary.rounds] == [0, 1]  # 2 rounds allowed, 1 needed
    assert summary.rounds[1].change == pytest.approx(0.0)
    assert "changed 0%" in summary.stop_reason


def test_an_empty_micrograph_is_flagged_and_gets_no_picks(refined):
    root, summary, _ = refined
    assert "empty" in summary.bad
    assert "empty" in (root / "refine" / BAD_LIST).read_text().split()
    final = starfile.read(root / "refine" / "picks" / "particles.star")
    names = {Path(str(n)).stem for n in final["rlnMicrographName"]}
    assert "empty" not in names and names  # the others keep their picks
    assert summary.n_picks == len(final)


def test_no_kept_class_is_refused_and_no_model_is_written(tmp_path):
    mics, options = _session(tmp_path)
    pick_batch(Picker(**options), mics, tmp_path / "picks", progress=False)
    strict = replace(FAST, selection=SelectionSettings(min_contrast=1e9))
    with pytest.raises(CryoSegNetError, match="nothing to train on"):
        refine_picks(
            mics,
            tmp_path / "picks",
            tmp_path / "refine",
            _picker_factory(options),
            settings=strict,
            device="cpu",
            log_fn=lambda line: None,
        )
    assert not (tmp_path / "refine" / MODEL_NAME).exists()
    assert not (tmp_path / "refine" / "round1").exists()  # no training was started


def _judgement(xy: list[tuple[float, float]], kept: list[bool]) -> RoundJudgement:
    x, y = np.array(xy, float).T
    particles = pd.DataFrame(
        {
            "stem": "m",
            "x": x,
            "y": y,
            "recentred_x": x,
            "recentred_y": y,
            "kept": kept,
            "unsure": False,
            "rejected": [not k for k in kept],
        }
    )
    return RoundJudgement(particles, [1], [], diameter_px=40.0)


def test_kept_change_counts_kept_picks_without_a_partner_within_a_quarter_diameter():
    a = _judgement([(50, 50), (150, 50), (250, 50)], [True, True, False])
    same = _judgement([(52, 51), (149, 50)], [True, True])
    moved = _judgement([(52, 51), (150, 80)], [True, True])  # the second 30 px away: > d/4
    assert kept_change(a, same) == pytest.approx(0.0)
    assert kept_change(a, moved) == pytest.approx(0.5)
    assert kept_change(a, _judgement([(300, 300)], [False])) == pytest.approx(1.0)


def test_targets_mark_kept_picks_rejected_picks_and_far_ice_and_ignore_the_rest():
    rows = _judgement([(50, 50), (150, 150)], [True, False]).particles
    image = np.zeros((200, 200), np.uint8)
    sample = training_sample("m", image, (1.0, 1.0), rows, 40.0, False, FAST)
    target = sample.target
    assert target[50, 50] == 1  # a kept pick's centre
    assert target[50, 50 + 25] == IGNORE  # beside it, within the margin: a neighbour may sit
    assert target[150, 150] == 0  # a rejected pick
    assert target[10, 190] == 0  # ice far from every kept pick
    flagged = training_sample("m", image, (1.0, 1.0), rows, 40.0, True, FAST).target
    assert (flagged == 0).all()  # a flagged micrograph is background throughout
    only_rejected = replace(FAST, background_negatives=False)
    target = training_sample("m", image, (1.0, 1.0), rows, 40.0, False, only_rejected).target
    assert target[150, 150] == 0 and target[10, 190] == IGNORE
    from_picks = replace(FAST, background_from_picks=True, rejected_negatives=False)
    target = training_sample("m", image, (1.0, 1.0), rows, 40.0, False, from_picks).target
    assert target[150, 150] == IGNORE  # near a pick, even a rejected one: not background
    assert target[150, 150 + 25] == IGNORE and target[10, 190] == 0  # far from every pick
    assert target[50, 50] == 1


def test_refine_settings_are_checked():
    with pytest.raises(SettingsError, match="rounds"):
        RefineSettings(rounds=0)
    with pytest.raises(SettingsError, match="bad share"):
        RefineSettings(bad_share=0.0)
    with pytest.raises(SettingsError, match="labelled positives must be one of model, kept"):
        RefineSettings(labelled_positives="labels")
    with pytest.raises(SettingsError, match="labelled map weight"):
        RefineSettings(labelled_map_weight=-1.0)


def test_refine_options_that_cannot_apply_are_errors(tmp_path, capsys):
    mics = tmp_path / "mics"
    mics.mkdir()
    base = ["pick", str(mics), "-o", str(tmp_path / "out"), "--device", "cpu"]
    assert main([*base, "--refine-rounds", "3"]) != 0
    assert "only with --refine" in capsys.readouterr().err
    assert main([*base, "--keep-bad"]) != 0
    assert main([*base, "--refine-low-snr"]) != 0
    assert "--refine-low-snr: only with --refine" in capsys.readouterr().err
    assert main([*base, "--refine-model", "radial"]) != 0
    assert "--refine-model: only with --refine" in capsys.readouterr().err
    refine = ["--refine", str(tmp_path / "refine"), "--refine-model", "radial"]
    assert main([*base, *refine, "--refine-rounds", "2"]) != 0
    assert "radial runs one round" in capsys.readouterr().err
    assert main([*base, "--refine", str(tmp_path / "out" / "refine")]) != 0
    assert "beside the output folder" in capsys.readouterr().err
    assert main([*base[:2], "--watch", str(mics), "-o", "o", "--refine", "r"]) != 0


def test_pick_refine_hands_its_picks_to_the_loop_and_reuses_its_options(tmp_path, monkeypatch):
    from cryosegnet.cli import refine_options

    monkeypatch.setattr(refine_options, "DEFAULTS", FAST)
    mics, options = _session(tmp_path)
    args = ["pick", str(mics[0].parent), "-o", str(tmp_path / "picks"), "--device", "cpu"]
    args += ["--model", str(options["model"]), "--stage", "log", "--diameter", str(DIAMETER)]
    assert main([*args, "--refine", str(tmp_path / "refine"), "--refine-rounds", "1"]) == 0
    assert (tmp_path / "refine" / MODEL_NAME).is_file()
    assert (tmp_path / "refine" / "round1" / "picks" / "autopick.star").is_file()


def test_pick_refine_low_snr_classifies_every_round_in_low_snr_mode(tmp_path, monkeypatch):
    import json

    from cryosegnet.cli import refine_options

    monkeypatch.setattr(refine_options, "DEFAULTS", FAST)
    mics, options = _session(tmp_path)
    args = ["pick", str(mics[0].parent), "-o", str(tmp_path / "picks"), "--device", "cpu"]
    args += ["--model", str(options["model"]), "--stage", "log", "--diameter", str(DIAMETER)]
    args += ["--refine", str(tmp_path / "refine"), "--refine-rounds", "1", "--refine-low-snr"]
    assert main(args) == 0
    record = json.loads((tmp_path / "refine" / RECORD_NAME).read_text())
    assert record["settings"]["classify"]["low_snr"] is True
    for r in record["rounds"]:
        classification = json.loads((Path(r["classes"]) / "classification.json").read_text())
        assert classification["low_snr"] is True
        assert classification["decoy_score_column"] == "evidence"


def test_the_number_of_classes_follows_the_number_of_picks():
    settings = RefineSettings(picks_per_class=150, min_classes=4)  # at most 20 classes
    assert settings.classes_for(3000) == 20
    assert settings.classes_for(1500) == 10
    assert settings.classes_for(277) == 4  # a fine-tuned model's few picks: few classes
    assert settings.classes_for(0) == 4
    with pytest.raises(SettingsError, match="min classes"):
        RefineSettings(min_classes=21)


def test_each_round_is_classified_into_classes_scaled_to_its_picks(refined):
    import json

    root, summary, _ = refined
    for r in summary.rounds:
        record = json.loads((Path(r.classes) / "classification.json").read_text())
        expected = FAST.classes_for(count_picks(r.picks))
        assert record["settings"]["n_classes"] == expected
    assert summary.final_round == 1


def test_a_later_round_that_keeps_no_class_ends_with_the_previous_rounds_model_and_picks(
    tmp_path, monkeypatch
):
    import json

    from cryosegnet.training import refine_loop

    mics, options = _session(tmp_path)
    pick_batch(Picker(**options), mics, tmp_path / "picks", progress=False)
    judge = refine_loop.judge_classification

    def round_two_keeps_nothing(folder, settings):
        judged = judge(folder, settings)
        if Path(folder).parent.name != "round2":
            return judged
        particles = judged.particles.assign(kept=False, unsure=False, rejected=True)
        return RoundJudgement(particles, [], judged.bad, judged.diameter_px)

    monkeypatch.setattr(refine_loop, "judge_classification", round_two_keeps_nothing)
    settings = replace(FAST, rounds=3, min_change=0.0)  # no early stop: round 2 must run
    summary = _refine(mics, tmp_path, options, settings)
    assert [r.round for r in summary.rounds] == [0, 1, 2]
    assert summary.final_round == 1 and "round 1's" in summary.stop_reason
    _, _, payload = load_model(summary.model)
    assert payload["metadata"]["refine"]["round"] == 1  # round 1's model, not round 2's
    record = json.loads((tmp_path / "refine" / RECORD_NAME).read_text())
    assert record["final_round"] == 1
    assert summary.bad == summary.rounds[1].bad  # round 1's triage too
    final = starfile.read(tmp_path / "refine" / "picks" / "particles.star")
    stems = [Path(str(n)).stem for n in final["rlnMicrographName"]]
    _, _, round1 = read_classification(summary.rounds[1].classes)
    round1_stems = [Path(str(n)).stem for n in round1["micrograph"]]
    expected = sum(1 for stem in round1_stems if stem not in summary.bad)
    assert len(stems) == summary.n_picks == expected


def test_the_radial_mode_fits_a_filter_on_the_kept_picks_and_writes_its_picks(tmp_path):
    import json

    from cryosegnet.training.radial_filter import RadialFilter

    mics, options = _session(tmp_path)
    pick_batch(Picker(**options), mics, tmp_path / "picks", progress=False)
    summary = _refine(mics, tmp_path, options, replace(FAST, model="radial"))
    out = tmp_path / "refine"
    assert summary.model == out / RADIAL_FILTER_NAME and summary.model_kind == "radial"
    radial = RadialFilter.load(summary.model)
    assert radial.n_positives == summary.rounds[0].n_kept - _kept_on_flagged(summary)
    assert radial.diameter == pytest.approx(DIAMETER, rel=0.05)
    assert radial.map_weight == 0  # a model not fine-tuned on labels adds no map
    assert not (out / MODEL_NAME).exists() and not (out / "round1").exists()  # no fine-tuning
    final = starfile.read(out / "picks" / "particles.star")
    names = {Path(str(n)).stem for n in final["rlnMicrographName"]}
    assert names == {"m0", "m1"}  # the flagged empty micrograph gets none
    assert "empty" in summary.bad and len(final) == summary.n_picks > 0
    assert (final["rlnAutopickFigureOfMerit"] >= radial.threshold).all()
    for stem in ("m0", "m1"):  # the saved filter's picks (less any in bad regions)
        own = radial.pick(mrcfile.read(tmp_path / "mics" / f"{stem}.mrc"))
        written = final[[Path(str(n)).stem == stem for n in final["rlnMicrographName"]]]
        made = set(zip(own["x"].round(2), own["y"].round(2), strict=True))
        assert set(zip(written["rlnCoordinateX"], written["rlnCoordinateY"], strict=True)) <= made
        assert len(written) > 0
    record = json.loads((out / RECORD_NAME).read_text())
    assert record["settings"]["model"] == "radial" and record["model"] == str(summary.model)
    assert record["radial"]["positives"] == radial.n_positives
    ratios = record["radial"]["tail_ratios"]
    assert set(ratios) == {"m0", "m1", "empty"}
    # each flagged by the filter's own test (too small a session to see particles in every
    # micrograph's tails: then none is) is among the flagged ones, without picks
    assert all(radial.looks_empty(ratios[stem]) for stem in record["radial"]["judged_empty"])
    assert set(record["radial"]["judged_empty"]) <= set(summary.bad)
    assert record["final_round"] == 1
    assert "radial filter" in summary.text()


def _labelled_session(root: Path) -> tuple[list[Path], dict, Path]:
    """:func:`_session` with its U-Net saved as fine-tuned on labels, and its picks made."""
    mics, options = _session(root)
    unet, denoise, _ = load_model(options["model"])
    labelled = root / "finetuned.pt"
    record = {"kind": "finetune", "data": {"train": {"sources": ["labelled"]}}}
    save_checkpoint(labelled, unet, denoise, metadata=record)
    options = {**options, "model": labelled}
    pick_batch(Picker(**options), mics, root / "picks", progress=False)
    return mics, options, labelled


def test_after_finetune_the_loop_runs_the_unet_once_per_micrograph(tmp_path, monkeypatch):
    """The map that sets the filter's threshold on the fit micrographs is the one their
    re-pick adds: a U-Net pass is the loop's costliest step on a CPU."""
    mics, options, _ = _labelled_session(tmp_path)
    passes = []
    run = Picker.probability_maps

    def counted(self, denoised):
        passes.append(len(denoised))
        return run(self, denoised)

    monkeypatch.setattr(Picker, "probability_maps", counted)
    summary = _refine(mics, tmp_path, options, replace(FAST, model="radial"))
    assert summary.model is not None
    assert sum(passes) == len(mics)


def test_from_a_model_fine_tuned_on_labels_the_filter_adds_its_map_and_keeps_it_beside(
    tmp_path,
):
    """The few-label track: ``pick --model FINETUNED --refine``. The filter's picks are made
    from its response plus the labelled model's map, as many as that model picked; the model
    goes beside the saved filter, which re-picks exactly as the loop did."""
    import json

    from cryosegnet.model.checkpoint import checkpoint_sha256
    from cryosegnet.picking.radial_picker import RadialFilterPicker
    from cryosegnet.training.radial_filter import RadialFilter
    from cryosegnet.training.refine_loop import RADIAL_UNET_NAME

    mics, options, labelled = _labelled_session(tmp_path)
    summary = _refine(mics, tmp_path, options, replace(FAST, model="radial"))
    out = tmp_path / "refine"
    radial = RadialFilter.load(summary.model)
    assert radial.map_weight == FAST.labelled_map_weight > 0
    assert radial.map_model == RADIAL_UNET_NAME
    assert checkpoint_sha256(out / RADIAL_UNET_NAME) == checkpoint_sha256(labelled)
    saved = json.loads((out / RECORD_NAME).read_text())
    assert saved["radial"]["unet_map_weight"] == FAST.labelled_map_weight
    # it learnt from every pick the labelled model made where the classes flagged nothing
    _, _, particles = read_classification(summary.rounds[0].classes)
    stems = [Path(str(name)).stem for name in particles["micrograph"]]
    assert radial.n_positives == sum(stem not in summary.bad for stem in stems)
    assert radial.n_positives > summary.rounds[0].n_kept - _kept_on_flagged(summary)
    final = starfile.read(out / "picks" / "particles.star")
    loaded = RadialFilterPicker.load(summary.model, mask_bad_regions=False)
    for stem in ("m0", "m1"):  # the saved filter and its U-Net pick what the loop wrote
        own = loaded.pick(mrcfile.read(tmp_path / "mics" / f"{stem}.mrc")).picks
        written = final[[Path(str(n)).stem == stem for n in final["rlnMicrographName"]]]
        made = set(zip(own["x"].round(2), own["y"].round(2), strict=True))
        assert set(zip(written["rlnCoordinateX"], written["rlnCoordinateY"], strict=True)) <= made
        assert (written["rlnAutopickFigureOfMerit"] >= radial.threshold - 1e-4).all()
    images = [mrcfile.read(path) for path in mics]
    n_with_map = sum(len(loaded.pick(image).picks) for image in images)
    kept_only = replace(FAST, model="radial", labelled_map_weight=0, labelled_positives="kept")
    off = _refine(mics, tmp_path, options, kept_only)
    assert RadialFilter.load(off.model).map_weight == 0
    assert RadialFilter.load(off.model).n_positives == off.rounds[0].n_kept - _kept_on_flagged(off)
    assert not (out / RADIAL_UNET_NAME).exists()
    # the map re-ranks the filter's picks, and the labelled model says how many: as many as
    # it picked itself (the starting picks), where the filter alone writes its own count
    assert n_with_map == count_picks(tmp_path / "picks") > 0
    alone = RadialFilterPicker.load(off.model, mask_bad_regions=False)
    assert sum(len(alone.pick(image).picks) for image in images) != n_with_map


@pytest.mark.parametrize(
    ("ratios", "flagged"),
    [
        ({"a": 3.0, "b": 2.5, "c": 0.9}, ["c"]),  # one without particles among many with
        ({"a": 3.0, "b": 1.1, "c": 0.9}, []),  # most without: the filter does not fit them
        ({"a": 3.0, "b": None}, []),  # no ratio measured: not judged
    ],
)
def test_the_radial_mode_flags_micrographs_its_filter_sees_no_particle_in(ratios, flagged):
    from cryosegnet.training.radial_filter import RadialFilter, RadialFilterSettings, ring_kernels
    from cryosegnet.training.refine_loop import _judged_empty

    rings = len(ring_kernels(20.0, RadialFilterSettings()))
    radial = RadialFilter(diameter=20.0, weights=(1.0,) * rings, offset=0.0, threshold=1.0)
    said = []
    assert _judged_empty(radial, ratios, said.append) == flagged
    if flagged:
        assert "flagged empty" in said[0]
    elif any(r is not None and r < 1.5 for r in ratios.values()):
        assert "may not match these particles" in said[0]


def _kept_on_flagged(summary) -> int:
    _, _, particles = read_classification(summary.rounds[0].classes)
    return (
        0
        if not summary.bad
        else int(
            sum(
                1
                for name, cls, above in zip(
                    particles["micrograph"],
                    particles["class"],
                    particles["above_decoys"],
                    strict=True,
                )
                if Path(str(name)).stem in summary.bad
                and int(cls) in summary.rounds[0].kept_classes
                and bool(above)
            )
        )
    )


def test_pick_refine_model_radial_writes_the_filter_and_its_picks(tmp_path, monkeypatch):
    import json

    from cryosegnet.cli import refine_options

    monkeypatch.setattr(refine_options, "DEFAULTS", FAST)
    mics, options = _session(tmp_path)
    args = ["pick", str(mics[0].parent), "-o", str(tmp_path / "picks"), "--device", "cpu"]
    args += ["--model", str(options["model"]), "--stage", "log", "--diameter", str(DIAMETER)]
    assert main([*args, "--refine", str(tmp_path / "refine"), "--refine-model", "radial"]) == 0
    assert (tmp_path / "refine" / RADIAL_FILTER_NAME).is_file()
    assert (tmp_path / "refine" / "picks" / "autopick.star").is_file()
    record = json.loads((tmp_path / "refine" / RECORD_NAME).read_text())
    assert record["settings"]["model"] == "radial"


def test_refine_settings_refuse_an_unknown_model():
    with pytest.raises(SettingsError, match="model must be one of unet, radial"):
        RefineSettings(model="topaz")


def _round_session(root: Path) -> tuple[list[Path], dict]:
    """Three easy fields of round (globular) particles, no junk, and the session's tiny U-Net."""
    _, options = _session(root)
    mics = root / "round"
    mics.mkdir()
    config = round_particles(DIAMETER)
    for i in range(3):
        with mrcfile.new(mics / f"r{i}.mrc") as mrc:
            mrc.set_data(simulate_micrograph(config, 40 + i).image.astype(np.float32))
            mrc.voxel_size = 1.25
    return sorted(mics.glob("*.mrc")), options


def test_auto_keeps_the_radial_filter_where_it_sees_the_particles(tmp_path):
    import json

    mics, options = _round_session(tmp_path)
    pick_batch(Picker(**options), mics, tmp_path / "picks", progress=False)
    summary = _refine(mics, tmp_path, options, replace(FAST, model="auto"))
    assert summary.model_kind == "radial" and summary.model == tmp_path / "refine" / (
        RADIAL_FILTER_NAME
    )
    record = json.loads((tmp_path / "refine" / RECORD_NAME).read_text())
    assert record["radial"]["chosen"] is True
    assert not (tmp_path / "refine" / MODEL_NAME).exists()  # no fine-tuning
    # the filter keeps the pixel size it was learnt at, so a re-use on other data is refused
    from cryosegnet.training.radial_filter import RadialFilter

    assert RadialFilter.load(summary.model).pixel_size == pytest.approx(1.25)


def test_auto_fine_tunes_the_unet_where_the_filter_sees_no_particles(tmp_path):
    import json

    mics, options = _session(tmp_path)
    pick_batch(Picker(**options), mics, tmp_path / "picks", progress=False)
    said: list[str] = []
    summary = refine_picks(
        mics,
        tmp_path / "picks",
        tmp_path / "refine",
        _picker_factory(options),
        start_model=options["model"],
        settings=replace(FAST, model="auto", rounds=1),
        device="cpu",
        log_fn=said.append,
    )
    record = json.loads((tmp_path / "refine" / RECORD_NAME).read_text())
    ratios = record["radial"]["tail_ratios"]
    assert record["radial"]["chosen"] is False
    assert sum(r >= FAST.radial.min_tail_ratio for r in ratios.values()) * 2 < len(ratios)
    assert summary.model_kind == "unet" and summary.model == tmp_path / "refine" / MODEL_NAME
    assert not (tmp_path / "refine" / RADIAL_FILTER_NAME).exists()
    assert any("fine-tuning the U-Net instead" in line for line in said)


def test_after_finetune_auto_keeps_the_filter_where_it_alone_sees_no_particles(tmp_path):
    """With a model fine-tuned on labels, the filter picks from its response plus that model's
    map: ``auto`` keeps it where the filter alone does not fit, rather than fine-tuning the
    U-Net on the few kept picks."""
    import json

    mics, options, _ = _labelled_session(tmp_path)
    said: list[str] = []
    summary = _refine(mics, tmp_path, options, replace(FAST, model="auto"), said.append)
    record = json.loads((tmp_path / "refine" / RECORD_NAME).read_text())
    ratios = record["radial"]["tail_ratios"]
    assert sum(r >= FAST.radial.min_tail_ratio for r in ratios.values()) * 2 < len(ratios)
    assert record["radial"]["chosen"] is True
    assert summary.model_kind == "radial" and summary.model == tmp_path / "refine" / (
        RADIAL_FILTER_NAME
    )
    assert not (tmp_path / "refine" / MODEL_NAME).exists()  # no fine-tuning
    assert any("the fine-tuned model's map carries its picks" in line for line in said)


def test_a_large_batch_fits_the_filter_on_a_sample_and_re_picks_every_micrograph(tmp_path):
    import json

    from cryosegnet.training.radial_filter import RadialFilter

    mics, options = _round_session(tmp_path)
    pick_batch(Picker(**options), mics, tmp_path / "picks", progress=False)
    settings = replace(FAST, model="radial", radial_fit_micrographs=2)
    summary = _refine(mics, tmp_path, options, settings)
    assert RadialFilter.load(summary.model).n_micrographs <= 2
    record = json.loads((tmp_path / "refine" / RECORD_NAME).read_text())
    assert set(record["radial"]["tail_ratios"]) == {"r0", "r1", "r2"}  # every one re-picked
    final = starfile.read(tmp_path / "refine" / "picks" / "particles.star")
    assert {Path(str(n)).stem for n in final["rlnMicrographName"]} == {"r0", "r1", "r2"}


def test_the_fit_sample_takes_the_micrographs_with_the_most_kept_picks():
    from cryosegnet.training.refine_loop import _fit_sample

    kept = pd.DataFrame({"stem": ["b", "b", "b", "c", "d", "d"]})
    assert _fit_sample(["a", "b", "c", "d"], kept, 2) == ["b", "d"]  # in batch order
    assert _fit_sample(["a", "b"], kept, 5) == ["a", "b"]  # a small batch: all of it
    with pytest.raises(SettingsError, match="radial fit micrographs"):
        RefineSettings(radial_fit_micrographs=0)


def test_auto_fine_tunes_the_unet_when_the_filter_has_nothing_to_learn_from(tmp_path, monkeypatch):
    import json

    from cryosegnet.training import radial_filter

    def no_positive(*args, **kwargs):
        raise CryoSegNetError("radial filter: no particle centre to learn from")

    monkeypatch.setattr(radial_filter.RadialFilter, "fit", no_positive)
    mics, options = _round_session(tmp_path)
    pick_batch(Picker(**options), mics, tmp_path / "picks", progress=False)
    summary = _refine(mics, tmp_path, options, replace(FAST, model="auto", rounds=1))
    assert summary.model_kind == "unet"
    record = json.loads((tmp_path / "refine" / RECORD_NAME).read_text())
    assert record["radial"] == {
        "chosen": False,
        "reason": "radial filter: no particle centre to learn from",
    }
    with pytest.raises(CryoSegNetError, match="no particle centre"):  # radial asked for: refused
        refine_picks(
            mics,
            tmp_path / "picks",
            tmp_path / "again",
            _picker_factory(options),
            start_model=options["model"],
            settings=replace(FAST, model="radial"),
            device="cpu",
            log_fn=lambda line: None,
        )


def test_the_summary_says_which_judge_flagged_each_micrograph(tmp_path):
    from cryosegnet.training.refine_loop import RefineSummary

    summary = RefineSummary(
        output=tmp_path,
        rounds=[],
        stop_reason="radial filter: one round",
        model=None,
        picks=None,
        bad=["ice", "copy"],
        n_picks=0,
        model_kind="radial",
        judged_empty=["copy"],
    )
    text = summary.text()
    assert "rejected classes): 1 micrograph(s): ice" in text
    assert "not lopsided towards particles): 1 micrograph(s): copy" in text


def _picked_and_kept_only_in_low_snr_mode(root: Path, monkeypatch, session) -> tuple:
    """``session``'s micrographs picked into ``root/picks``; their classifications keep no
    class unless run in low-SNR mode. The micrographs, picker options, and the mode of every
    classification judged, in order (filled as the loop runs)."""
    from cryosegnet.training import refine_loop

    mics, options = session(root)
    pick_batch(Picker(**options), mics, root / "picks", progress=False)
    modes: list[bool] = []

    judge = refine_loop.judge_classification

    def strict_unless_low_snr(folder, settings):
        modes.append(settings.classify.low_snr)
        judgement = judge(folder, settings)
        if settings.classify.low_snr:
            return judgement
        particles = judgement.particles.assign(kept=False, unsure=False, rejected=True)
        return replace(judgement, particles=particles, kept_classes=[])

    monkeypatch.setattr(refine_loop, "judge_classification", strict_unless_low_snr)
    return mics, options, modes


def test_with_no_class_kept_the_loop_classifies_again_in_low_snr_mode_for_the_filter(
    tmp_path, monkeypatch
):
    import json

    mics, options, modes = _picked_and_kept_only_in_low_snr_mode(
        tmp_path, monkeypatch, _round_session
    )
    said: list[str] = []
    summary = _refine(mics, tmp_path, options, replace(FAST, model="auto"), said.append)
    assert modes == [False, True]
    assert any("again in low-SNR mode" in line for line in said)
    assert summary.model_kind == "radial" and summary.n_picks > 0
    record = json.loads((tmp_path / "refine" / RECORD_NAME).read_text())
    assert record["settings"]["classify"]["low_snr"] is True  # what ran is what is recorded


def test_the_low_snr_fallback_refuses_rather_than_fine_tune_where_the_filter_does_not_fit(
    tmp_path, monkeypatch
):
    mics, options, modes = _picked_and_kept_only_in_low_snr_mode(tmp_path, monkeypatch, _session)
    with pytest.raises(CryoSegNetError, match="the U-Net is not fine-tuned on low-SNR classes"):
        _refine(mics, tmp_path, options, replace(FAST, model="auto", rounds=1))
    assert modes == [False, True]
    assert not (tmp_path / "refine" / MODEL_NAME).exists()
    assert not (tmp_path / "refine" / "round1").exists()  # no fine-tuning was started


@pytest.mark.parametrize(
    ("change", "taken"),
    [({}, True), ({"model": "unet"}, False), ({"low_snr_fallback": False}, False)],
)
def test_the_low_snr_fallback_is_for_the_filter_and_can_be_turned_off(change, taken):
    from cryosegnet.training.refine_loop import _low_snr_fallback

    nothing = _judgement([(50, 50), (150, 50)], [False, False])
    nothing = replace(nothing, kept_classes=[])
    something = _judgement([(50, 50), (150, 50)], [True, False])
    settings = replace(FAST, **change)
    assert _low_snr_fallback(nothing, settings) is taken
    assert _low_snr_fallback(something, settings) is False
    low_snr = replace(settings, classify=replace(settings.classify, low_snr=True))
    assert _low_snr_fallback(nothing, low_snr) is False  # already in that mode


@pytest.mark.parametrize("centred", [False, True])
def test_pick_refine_told_the_size_suggests_centring_when_nothing_is_kept(
    tmp_path, monkeypatch, capsys, centred
):
    from cryosegnet.cli import refine_options

    strict = replace(FAST, selection=SelectionSettings(min_contrast=1e9))
    monkeypatch.setattr(refine_options, "DEFAULTS", strict)
    mics, options = _session(tmp_path)
    args = ["pick", str(mics[0].parent), "-o", str(tmp_path / "picks"), "--device", "cpu"]
    args += ["--model", str(options["model"]), "--stage", "log", "--diameter", str(DIAMETER)]
    args += ["--refine", str(tmp_path / "refine"), "--no-progress"]
    assert main([*args, "--centre-picks"] if centred else args) != 0
    error = capsys.readouterr().err
    assert "nothing to train on" in error
    assert ("try --centre-picks" in error) is not centred

"""Training, fine-tuning and resume on tiny synthetic data (CPU, a few seconds)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cryosegnet.model.checkpoint import load_model, read_checkpoint, save_checkpoint
from cryosegnet.model.unet import AttentionUNet, UNetConfig
from cryosegnet.preprocessing.denoise import DenoiseSettings
from cryosegnet.training.augment import AugmentSettings, random_crop
from cryosegnet.training.dataset import TrainingSample, labelled_sample, split_samples
from cryosegnet.training.finetune import FINETUNE_DEFAULTS, finetune, finetune_config
from cryosegnet.training.losses import bce_dice_loss, dice_loss
from cryosegnet.training.targets import disk_mask
from cryosegnet.training.trainer import CropDataset, TrainConfig, Trainer

TINY = UNetConfig(base_width=4, depth=3)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny convolutions gain nothing from threads and lose a lot on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


DENOISE = DenoiseSettings(working_size=96)


def blob_sample(seed: int, size: int = 96, n: int = 6, diameter: float = 12.0) -> TrainingSample:
    """Bright disks on a noisy background: trivially learnable, so loss must fall."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(diameter, size - diameter, n)
    y = rng.uniform(diameter, size - diameter, n)
    mask = disk_mask((size, size), x, y, diameter)
    image = 90 + 90 * mask + rng.normal(0, 12, (size, size))
    return TrainingSample(
        name=f"blobs_{seed}",
        image=np.clip(image, 0, 255).astype(np.uint8),
        x=x,
        y=y,
        diameter=np.full(n, diameter),
        source="simulated",
    )


def tiny_config(**overrides) -> TrainConfig:
    values = dict(
        arch="width4",
        epochs=1,
        batch_size=2,
        crop=64,
        steps_per_epoch=2,
        progress=False,
        lr=1e-3,
        seed=3,
    )
    return TrainConfig(**{**values, **overrides})


def tiny_model(seed: int = 0) -> AttentionUNet:
    torch.manual_seed(seed)
    return AttentionUNet(TINY)


def states_equal(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- pieces


def test_disk_mask_area_and_clipping():
    mask = disk_mask((64, 64), [32], [32], 20)
    assert abs(mask.sum() - np.pi * 100) < 0.05 * np.pi * 100
    assert disk_mask((64, 64), [0], [0], 20).sum() < mask.sum() / 3
    assert disk_mask((8, 8), [100], [100], 4).sum() == 0


def test_losses():
    target = torch.zeros(1, 1, 8, 8)
    target[..., 2:6, 2:6] = 1
    good = (target * 2 - 1) * 10
    assert bce_dice_loss(good, target) < 0.01
    assert bce_dice_loss(-good, target) > 5
    assert 0.0 <= float(dice_loss(torch.zeros(1, 1, 8, 8), target)) <= 1.0


def test_random_crop_keeps_image_and_target_aligned():
    sample = blob_sample(0)
    settings = AugmentSettings(brightness=0, contrast=(1, 1), gamma=(1, 1), noise=0)
    for seed in range(6):
        image, target = random_crop(
            sample.image, sample.target, 48, np.random.default_rng(seed), settings
        )
        assert image.shape == target.shape == (48, 48)
        assert image.dtype == np.float32 and 0 <= image.min() and image.max() <= 1
        assert set(np.unique(target)) <= {0.0, 1.0}
        if target.sum() > 20:  # particles stay bright after any flip, rotation or zoom
            assert image[target > 0].mean() > image[target == 0].mean() + 0.15


def test_random_crop_is_seeded_and_pads_small_images():
    sample = blob_sample(1, size=40)
    a = random_crop(sample.image, sample.target, 64, np.random.default_rng(5), AugmentSettings())
    b = random_crop(sample.image, sample.target, 64, np.random.default_rng(5), AugmentSettings())
    assert a[0].shape == (64, 64)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_split_keeps_sources_apart_and_training_non_empty():
    samples = [blob_sample(i) for i in range(5)]
    samples += [replace(blob_sample(10), source="labelled", name="real")]
    train_s, val_s = split_samples(samples, 0.2, seed=0)
    assert len(val_s) == 1 and val_s[0].source == "simulated"
    assert [s.name for s in train_s if s.source == "labelled"] == ["real"]
    assert split_samples(samples[:1], 0.5)[1] == []


def test_labelled_sample_scales_labels_and_caches(tmp_path, monkeypatch):
    image = (np.random.default_rng(0).normal(100, 10, (120, 192))).clip(0, 255).astype(np.uint8)
    path = tmp_path / "mic.png"
    cv2.imwrite(str(path), image)
    import pandas as pd

    labels = pd.DataFrame({"x": [96.0], "y": [60.0], "score": 1.0, "diameter": [np.nan]})
    with pytest.raises(ValueError, match="diameter"):
        labelled_sample(path, labels, DENOISE, cache_dir=tmp_path / "cache")
    sample = labelled_sample(path, labels, DENOISE, diameter=20, cache_dir=tmp_path / "cache")
    assert sample.image.shape == (60, 96)  # long side = working size
    assert (sample.x[0], sample.y[0], sample.diameter[0]) == pytest.approx((48, 30, 10))
    calls = []
    import cryosegnet.training.dataset as dataset

    monkeypatch.setattr(dataset, "denoise", lambda *a: calls.append(1))
    again = labelled_sample(path, labels, DENOISE, diameter=20, cache_dir=tmp_path / "cache")
    assert calls == [] and np.array_equal(again.image, sample.image)
    assert sample.scale == again.scale == pytest.approx(0.5)  # working px per micrograph px


def test_checkpoint_records_the_diameter_in_micrograph_pixels(tmp_path):
    import mrcfile

    from cryosegnet.training.trainer import data_summary

    image = (np.random.default_rng(0).normal(100, 10, (120, 192))).astype(np.float32)
    with mrcfile.new(tmp_path / "mic.mrc") as mrc:
        mrc.set_data(image)
        mrc.voxel_size = 1.5
    import pandas as pd

    labels = pd.DataFrame({"x": [96.0], "y": [60.0], "score": 1.0, "diameter": [20.0]})
    sample = labelled_sample(tmp_path / "mic.mrc", labels, DENOISE, cache_dir=tmp_path / "c")
    cached = labelled_sample(tmp_path / "mic.mrc", labels, DENOISE, cache_dir=tmp_path / "c")
    assert sample.diameter[0] == pytest.approx(10)  # working pixels
    for s in (sample, cached):
        assert s.pixel_size == pytest.approx(1.5)
        summary = data_summary([s])
        assert summary["diameter_px_median"] == pytest.approx(20)  # micrograph pixels
        assert summary["pixel_size_median"] == pytest.approx(1.5)
        assert summary["diameter_angstrom_median"] == pytest.approx(30)
    assert data_summary([blob_sample(0)])["diameter_angstrom_median"] is None


def test_simulated_samples_when_the_simulator_is_present(tmp_path):
    sim = pytest.importorskip("cryosegnet.simulation")
    from cryosegnet.training.dataset import simulated_samples

    config = sim.SimulationConfig(size=96, difficulty="easy", diameter_px=(10, 14))
    first = simulated_samples(2, config, DENOISE, seed=4, cache_dir=tmp_path)
    again = simulated_samples(2, config, DENOISE, seed=4, cache_dir=tmp_path)
    assert [s.image.shape for s in first] == [(96, 96)] * 2
    assert np.array_equal(first[1].image, again[1].image)
    assert np.array_equal(first[1].x, again[1].x)
    assert first[0].target.any()
    parallel = simulated_samples(2, config, DENOISE, seed=4, workers=2)  # no cache: recomputed
    assert all(
        np.array_equal(a.image, b.image) and np.array_equal(a.y, b.y)
        for a, b in zip(first, parallel, strict=True)
    )


# --------------------------------------------------------------------------- training


def test_loss_decreases_over_a_few_steps():
    dataset = CropDataset(
        [blob_sample(0), blob_sample(1)], 64, 4, seed=0, augment=AugmentSettings(enabled=False)
    )
    images = torch.stack([dataset[i][0] for i in range(4)])
    targets = torch.stack([dataset[i][1] for i in range(4)])
    model = tiny_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        optimizer.zero_grad()
        loss = bce_dice_loss(model(images), targets)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_training_writes_self_describing_checkpoints(tmp_path):
    samples = [blob_sample(i) for i in range(3)]
    result = Trainer(
        tiny_config(epochs=2),
        samples[:2],
        samples[2:],
        tmp_path,
        DENOISE,
        model=tiny_model(),
        metadata={"kind": "train", "data": {"note": "blobs"}},
    ).fit()
    assert result.best_path.is_file() and result.last_path.is_file()
    assert (tmp_path / "history.json").is_file()
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert {"val_f1", "val_best_f1", "val_auprc", "val_dice", "train_loss"} <= set(result.best)
    model, denoise, payload = load_model(result.best_path)
    assert model.config == TINY and denoise == DENOISE
    meta = payload["metadata"]
    assert meta["kind"] == "train" and meta["recipe"]["lr"] == 1e-3
    assert meta["data"]["note"] == "blobs" and meta["data"]["train"]["n_micrographs"] == 2
    assert "training" in read_checkpoint(result.last_path)
    assert "training" not in payload  # best.pt stays lean


def test_training_is_deterministic_and_resume_continues_exactly(tmp_path):
    samples = [blob_sample(i) for i in range(3)]
    config = tiny_config(epochs=2)
    straight = Trainer(
        config, samples[:2], samples[2:], tmp_path / "a", DENOISE, tiny_model()
    ).fit()
    again = Trainer(config, samples[:2], samples[2:], tmp_path / "b", DENOISE, tiny_model()).fit()
    a = read_checkpoint(straight.last_path)["state_dict"]
    assert states_equal(a, read_checkpoint(again.last_path)["state_dict"])

    Trainer(
        replace(config, epochs=1), samples[:2], samples[2:], tmp_path / "c", DENOISE, tiny_model()
    ).fit()
    resumed = Trainer(config, samples[:2], samples[2:], tmp_path / "c", DENOISE, tiny_model(9)).fit(
        resume=tmp_path / "c" / "last.pt"
    )
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert states_equal(a, read_checkpoint(resumed.last_path)["state_dict"])


def test_resume_needs_a_training_state(tmp_path):
    save_checkpoint(tmp_path / "plain.pt", tiny_model(), DENOISE)
    trainer = Trainer(tiny_config(), [blob_sample(0)], [], tmp_path, DENOISE, tiny_model())
    with pytest.raises(ValueError, match="no training state"):
        trainer.fit(resume=tmp_path / "plain.pt")


def test_finetune_starts_from_and_changes_a_checkpoint(tmp_path):
    start = tiny_model()
    save_checkpoint(tmp_path / "start.pt", start, DENOISE, {"recipe": {"lr": 1e-4}})
    before = {k: v.clone() for k, v in start.state_dict().items()}
    config = finetune_config(
        **{k: v for k, v in vars(tiny_config()).items() if k not in ("lr", "epochs")}, epochs=1
    )
    assert config.lr == FINETUNE_DEFAULTS["lr"]
    result = finetune(
        [blob_sample(0)],
        [blob_sample(1)],
        tmp_path / "ft",
        checkpoint=tmp_path / "start.pt",
        config=replace(config, lr=1e-3, freeze_encoder=True),
    )
    model, _, payload = load_model(result.last_path)
    after = model.state_dict()
    assert payload["metadata"]["kind"] == "finetune"
    assert payload["metadata"]["parent"]["path"] == str(tmp_path / "start.pt")
    assert model.config == TINY
    encoder = [k for k in before if k.startswith("encoders.")]
    decoder = [k for k in before if k.startswith("decoders.") and "weight" in k]
    assert all(torch.equal(before[k], after[k]) for k in encoder)  # frozen, BN stats too
    assert any(not torch.equal(before[k], after[k]) for k in decoder)


def test_finetune_without_default_model_says_so(tmp_path, monkeypatch):
    import cryosegnet.training.finetune as ft
    from cryosegnet.errors import CheckpointError

    monkeypatch.setattr(ft, "default_model_path", lambda: tmp_path / "absent.pt")
    with pytest.raises(CheckpointError, match="--model"):
        ft.load_starting_model(None)


# --------------------------------------------------------------------------- CLI


def _cli(argv: list[str]) -> int:
    from cryosegnet.cli import finetune as finetune_cli
    from cryosegnet.cli import train as train_cli

    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    train_cli.add_parser(subparsers)
    finetune_cli.add_parser(subparsers)
    args = parser.parse_args(argv)
    return args.func(args)


def _write_labelled(folder, n: int = 2):
    (folder / "mics").mkdir(parents=True)
    (folder / "labels").mkdir()
    for i in range(n):
        sample = blob_sample(20 + i, size=96)
        cv2.imwrite(str(folder / "mics" / f"m{i}.bin.png"), sample.image)
        rows = "\n".join(f"{x:.1f},{y:.1f},12" for x, y in zip(sample.x, sample.y, strict=True))
        (folder / "labels" / f"m{i}.bin.csv").write_text(
            f"X-Coordinate,Y-Coordinate,Diameter\n{rows}\n"
        )


COMMON = [
    "--epochs",
    "1",
    "--crop",
    "64",
    "--batch-size",
    "2",
    "--steps-per-epoch",
    "1",
    "--no-progress",
    "--seed",
    "1",
]


def test_train_and_finetune_cli(tmp_path, capsys):
    _write_labelled(tmp_path)
    images, labels = str(tmp_path / "mics"), str(tmp_path / "labels")
    run = tmp_path / "run"
    code = _cli(
        [
            "train",
            "--images",
            images,
            "--labels",
            labels,
            "-o",
            str(run),
            "--arch",
            "width4",
            "--working-size",
            "96",
            "--val-fraction",
            "0.5",
            *COMMON,
        ]
    )
    assert code == 0, capsys.readouterr().err
    payload = read_checkpoint(run / "best.pt")
    assert payload["metadata"]["command"].startswith("cryosegnet")
    assert payload["denoise"]["working_size"] == 96
    assert len(list((run / "cache").glob("*.npz"))) == 2

    # Resume with nothing but --epochs: data and recipe come from the checkpoint.
    assert _cli(["train", "--resume", str(run / "last.pt"), "--epochs", "2", "--no-progress"]) == 0
    assert read_checkpoint(run / "last.pt")["training"]["epoch"] == 2

    ft = tmp_path / "ft"
    code = _cli(
        [
            "finetune",
            "--images",
            images,
            "--labels",
            labels,
            "--model",
            str(run / "best.pt"),
            "-o",
            str(ft),
            "--freeze-encoder",
            *COMMON,
        ]
    )
    said = capsys.readouterr()
    assert code == 0, said.err
    meta = read_checkpoint(ft / "last.pt")["metadata"]
    assert meta["kind"] == "finetune" and meta["recipe"]["freeze_encoder"] is True
    # the threshold its validation scored best at, with the option that picks there
    best = read_checkpoint(ft / "best.pt")["metadata"]["metrics"]["val_best_threshold"]
    assert f"pick with --threshold {best:.3g}" in said.out
    assert meta["recipe"]["lr"] == FINETUNE_DEFAULTS["lr"]

    # Warm start: weights, architecture and denoising come from --init, the schedule is new.
    warm = tmp_path / "warm"
    code = _cli(
        [
            "train",
            "--images",
            images,
            "--labels",
            labels,
            "-o",
            str(warm),
            "--init",
            str(run / "last.pt"),
            "--arch",
            "small",
            "--working-size",
            "512",
            *COMMON,
        ]
    )
    assert code == 0, capsys.readouterr().err
    start, warmed = read_checkpoint(run / "last.pt"), read_checkpoint(warm / "last.pt")
    assert warmed["architecture"] == start["architecture"]
    assert warmed["denoise"]["working_size"] == 96
    assert warmed["metadata"]["recipe"]["arch"] == "width4"
    assert warmed["training"]["epoch"] == 1


def test_finetune_reads_its_starting_checkpoint_once_and_records_it(tmp_path, capsys, monkeypatch):
    import cryosegnet.model.checkpoint as checkpoint_module

    _write_labelled(tmp_path)
    start = tmp_path / "start.pt"
    parent_meta = {
        "recipe": {"lr": 1e-3},
        "metrics": {"val_f1": 0.5},
        "data": {"names": ["a", "b"], "n_train": 2},
    }
    save_checkpoint(start, tiny_model(), DENOISE, parent_meta)
    reads = []

    def counting_read(path):
        reads.append(Path(path).resolve())
        return read_checkpoint(path)

    monkeypatch.setattr(checkpoint_module, "read_checkpoint", counting_read)
    images, labels = str(tmp_path / "mics"), str(tmp_path / "labels")
    ft = tmp_path / "ft"
    argv = ["finetune", "--images", images, "--labels", labels, "--model", str(start)]
    assert _cli([*argv, "-o", str(ft), *COMMON]) == 0, capsys.readouterr().err
    assert reads.count(start.resolve()) == 1
    meta = read_checkpoint(ft / "last.pt")["metadata"]
    assert meta["kind"] == "finetune"
    assert meta["parent"] == {
        "path": str(start),
        "recipe": {"lr": 1e-3},
        "metrics": {"val_f1": 0.5},
        "data": {"n_train": 2},  # less the micrograph names
    }


def test_train_cli_errors_are_one_line(tmp_path, capsys):
    assert _cli(["train", "-o", str(tmp_path / "r"), "--no-progress"]) == 1
    assert "no training data" in capsys.readouterr().err
    (tmp_path / "mics").mkdir()
    assert (
        _cli(
            [
                "train",
                "--images",
                str(tmp_path / "mics"),
                "--labels",
                str(tmp_path),
                "-o",
                str(tmp_path / "r"),
            ]
        )
        == 1
    )


def test_finetune_records_the_architecture_depth_included(tmp_path):
    from cryosegnet.model.unet import architecture_name, config_from_name

    save_checkpoint(tmp_path / "start.pt", tiny_model(), DENOISE)
    result = finetune(
        [blob_sample(0)],
        [],
        tmp_path / "ft",
        checkpoint=tmp_path / "start.pt",
        config=finetune_config(
            **{k: v for k, v in vars(tiny_config()).items() if k not in ("lr", "epochs")}, epochs=1
        ),
    )
    arch = read_checkpoint(result.last_path)["metadata"]["recipe"]["arch"]
    assert config_from_name(arch) == TINY  # depth 3, not the default 5
    assert architecture_name(TINY) == "width4-depth3"
    assert architecture_name(UNetConfig(base_width=8)) == "tiny"
    assert config_from_name("width4") == UNetConfig(base_width=4)
    with pytest.raises(ValueError, match="unknown U-Net preset"):
        config_from_name("width4-depthX")


def test_export_model_strips_training_state(tmp_path, capsys):
    from cryosegnet.cli.main import main
    from cryosegnet.errors import CheckpointError
    from cryosegnet.model.checkpoint import export_model

    result = Trainer(
        tiny_config(),
        [blob_sample(0)],
        [blob_sample(1)],
        tmp_path / "run",
        DENOISE,
        tiny_model(),
        metadata={"kind": "train"},
    ).fit()
    last = read_checkpoint(result.last_path)
    assert "training" in last and "history" in last["metadata"]
    exported = export_model(result.last_path, tmp_path / "model.pt", note="epoch 1")
    payload = read_checkpoint(tmp_path / "model.pt")
    assert set(payload) == {
        "format",
        "format_version",
        "architecture",
        "denoise",
        "metadata",
        "state_dict",
    }
    assert set(exported) == set(payload)
    assert payload["metadata"]["shipped_as"] == "epoch 1"
    assert "history" not in payload["metadata"] and payload["metadata"]["kind"] == "train"
    assert states_equal(last["state_dict"], payload["state_dict"])
    assert load_model(tmp_path / "model.pt")[0].config == TINY
    assert (tmp_path / "model.pt").stat().st_size < result.last_path.stat().st_size

    assert (
        main(
            [
                "export-model",
                str(result.last_path),
                "-o",
                str(tmp_path / "cli.pt"),
                "--keep-history",
            ]
        )
        == 0
    )
    assert "history" in read_checkpoint(tmp_path / "cli.pt")["metadata"]
    assert "training" not in read_checkpoint(tmp_path / "cli.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        export_model(tmp_path / "junk.pt", tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()
    assert main(["export-model", str(tmp_path / "junk.pt"), "-o", str(tmp_path / "x.pt")]) == 1
    assert "junk.pt" in capsys.readouterr().err


class FixedMap(torch.nn.Module):
    """A 'U-Net' whose output is one fixed probability map, whatever the input."""

    def __init__(self, probability: np.ndarray) -> None:
        super().__init__()
        self.logits = torch.logit(torch.from_numpy(probability.astype(np.float32)))[None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits


def test_validation_f1_is_at_the_pickers_default_threshold():
    from cryosegnet.picking.picker import DEFAULT_PEAK_THRESHOLD
    from cryosegnet.training.trainer import _epoch_line
    from cryosegnet.training.validation import validate

    sample = blob_sample(0)
    # A weak but perfectly placed map: peak scores ~0.18, above the picker's threshold and
    # below 0.5, so every particle is picked by `cryosegnet pick`.
    model = FixedMap(0.02 + 0.3 * sample.target)
    metrics = validate(model, [sample], torch.device("cpu"))
    assert metrics["val_threshold"] == DEFAULT_PEAK_THRESHOLD
    assert metrics["val_f1"] == pytest.approx(1.0) and metrics["val_best_f1"] == pytest.approx(1.0)
    assert TrainConfig().val_threshold == DEFAULT_PEAK_THRESHOLD
    line = _epoch_line({"epoch": 1, "train_loss": 0.5, "seconds": 1.0, **metrics}, 2, True)
    assert f"F1@{DEFAULT_PEAK_THRESHOLD:g} 1.000" in line and "best F1 1.000" in line


def test_assemble_training_data_is_a_library_call(tmp_path):
    from cryosegnet.training.data import assemble_training_data

    _write_labelled(tmp_path)
    notes: list[str] = []
    data = assemble_training_data(
        DENOISE,
        images=[str(tmp_path / "mics")],
        labels=[str(tmp_path / "labels")],
        val_fraction=0.5,
        cache=tmp_path / "cache",
        note=notes.append,
    )
    assert (len(data.train), len(data.validation)) == (1, 1)
    assert data.record["denoise"] == DENOISE.to_dict()
    assert len(data.record["labelled"]["micrographs"]) == 2
    with pytest.raises(ValueError, match="no training data"):
        assemble_training_data(DENOISE)
    with pytest.raises(ValueError, match="give both"):
        assemble_training_data(DENOISE, images=[str(tmp_path / "mics")])


def test_finetune_help_quotes_the_library_defaults():
    from cryosegnet.cli import finetune as finetune_cli

    parser = argparse.ArgumentParser()
    finetune_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["finetune"])
    defaults = finetune_config()
    assert (args.epochs, args.lr, args.val_fraction, args.batch_size) == (
        defaults.epochs,
        defaults.lr,
        defaults.val_fraction,
        defaults.batch_size,
    )


# --------------------------------------------------------------------------- centre targets


def test_target_fraction_marks_only_the_particle_centres():
    full = blob_sample(0)
    centres = replace(full, target_fraction=0.5, _target=None)
    assert full.target.sum() > 0
    # Disks of half the diameter: a quarter of the area, all inside the whole disks.
    assert centres.target.sum() == pytest.approx(full.target.sum() / 4, rel=0.2)
    assert not (centres.target.astype(bool) & ~full.target.astype(bool)).any()


def test_training_on_centre_targets_records_it_and_leaves_the_samples_alone(tmp_path):
    samples = [blob_sample(i) for i in range(3)]
    result = Trainer(
        tiny_config(target_fraction=0.4),
        samples[:2],
        samples[2:],
        tmp_path,
        DENOISE,
        model=tiny_model(),
    ).fit()
    assert all(s.target_fraction == 1.0 for s in samples)
    _, _, payload = load_model(result.best_path)
    assert payload["metadata"]["recipe"]["target_fraction"] == 0.4
    assert TrainConfig.from_dict(payload["metadata"]["recipe"]).target_fraction == 0.4


@pytest.mark.parametrize("fraction", [0.0, -0.2, 1.5])
def test_target_fraction_outside_0_1_is_refused(tmp_path, fraction):
    from cryosegnet.errors import SettingsError

    with pytest.raises(SettingsError, match="target-fraction"):
        Trainer(
            tiny_config(target_fraction=fraction), [blob_sample(0)], [], tmp_path, DENOISE
        ).fit()

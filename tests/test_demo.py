"""``cryosegnet demo``: the whole job end to end on simulated micrographs, in one command."""

from __future__ import annotations

import json

from cryosegnet.cli.main import main
from cryosegnet.demo import DemoSettings, run_demo


def test_demo_command_writes_everything_and_prints_what_to_open(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "-o", str(out), "-n", "2", "--size", "192", "--device", "cpu"])
    assert code == 0
    text = capsys.readouterr().out
    for path in (
        out / "report.html",
        out / "sim_00000.png",
        out / "evaluation/pr_curve.png",
        out / "evaluation/metrics.json",
        out / "picks/autopick.star",
    ):
        assert path.is_file(), path
        assert str(path) in text or str(path.parent) in text
    metrics = json.loads((out / "evaluation/metrics.json").read_text())["pooled"]
    assert metrics["n_micrographs"] == 2
    # The figures printed are the ones measured, not fixed text.
    assert f"F1 {metrics['f1']:.2f}" in text
    assert f"particles in the simulated truth: {metrics['n_labels']}" in text


def test_demo_is_deterministic_and_resumes(tmp_path):
    settings = DemoSettings(n_micrographs=1, size=256, device="cpu")
    first = run_demo(tmp_path / "a", settings)
    again = run_demo(tmp_path / "a", settings)  # reuses the micrographs and picks
    fresh = run_demo(tmp_path / "b", settings)
    figures = [json.dumps(r.pooled, sort_keys=True) for r in (first, again, fresh)]
    assert figures[0] == figures[1] == figures[2]
    assert first.n_truth > 0


def test_demo_refuses_sizes_it_is_not_for(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "d"), "--size", "100000"]) == 1
    assert "--size" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()

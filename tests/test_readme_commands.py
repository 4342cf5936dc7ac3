"""The README's commands work as written: its demo runs to the end, and its install is one
command per job, the very commands CI runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_demo() -> list[str]:
    text = README.read_text()
    block = text.split("## Demo", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip().startswith("cryosegnet")]


def test_readme_demo_runs_to_the_end(tmp_path):
    commands = _readme_demo()
    assert [c.split()[1] for c in commands] == ["simulate", "pick", "evaluate"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    exe = [sys.executable, "-m", "cryosegnet.cli.main"]
    for command in commands:
        small = command.replace("--size 1024", "--size 256").replace("-n 4", "-n 2")
        argv = small.split()[1:]
        if argv[0] == "pick":  # the shell's glob, done here
            pattern = argv[1]
            argv[1:2] = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.glob(pattern))
        done = subprocess.run(
            [*exe, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, (small, done.stderr[-2000:])
    assert (tmp_path / "demo/report/metrics.json").is_file()


def _code_blocks(section: str) -> list[list[str]]:
    text = README.read_text().split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    blocks = text.split("```bash")[1:]
    return [
        [line.strip() for line in b.split("```", 1)[0].splitlines() if line.strip()] for b in blocks
    ]


def test_readme_install_is_one_command_per_job_and_ci_runs_exactly_those():
    import re

    blocks = _code_blocks("Install")
    # The first blocks with a pip install (the virtual environment's block comes before them).
    main_job, tests = [b for b in blocks if any("pip install" in line for line in b)][:2]
    assert main_job == ["pip install . && cryosegnet demo"]
    assert tests == ['pip install ".[test]" && python -m pytest']
    # The tested torch pair is pinned where pip sees it ...
    pyproject = (README.parent / "pyproject.toml").read_text()
    pins = dict(re.findall(r'"(torch|torchvision)==([0-9.]+)"', pyproject))
    assert set(pins) == {"torch", "torchvision"}, pyproject
    # ... and the optional CPU-only line installs that same pair.
    cpu = [line for block in blocks for line in block if "--index-url" in line]
    assert cpu == [
        f"pip install torch=={pins['torch']} torchvision=={pins['torchvision']} "
        "--index-url https://download.pytorch.org/whl/cpu"
    ]
    ci = [
        line.strip().strip("()")
        for line in (README.parent / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert [line for line in ci if "pip " in line] == [main_job[0], tests[0]]
    assert ci.index(main_job[0]) < ci.index(tests[0])

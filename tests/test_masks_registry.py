"""The stage registry is the one place stages are declared."""

from __future__ import annotations

from cryosegnet.masks.registry import STAGE_REGISTRY
from cryosegnet.picking.config import DEFAULT_THRESHOLDS, STAGES


def test_every_stage_built_from_defaults_carries_its_registry_name():
    for name, spec in STAGE_REGISTRY.items():
        if spec.factory is None:  # SAM: from a checkpoint
            continue
        stage = spec.build()
        assert stage.name == name
        assert callable(stage.generate) and stage.describe()


def test_stages_thresholds_and_help_come_from_the_registry():
    import argparse

    from cryosegnet.cli import pick

    assert STAGES == ("auto", *STAGE_REGISTRY)
    assert DEFAULT_THRESHOLDS == {n: s.default_threshold for n, s in STAGE_REGISTRY.items()}
    parser = argparse.ArgumentParser()
    pick.add_parser(parser.add_subparsers())
    text = parser._subparsers._group_actions[0].choices["pick"].format_help()  # noqa: SLF001
    for spec in STAGE_REGISTRY.values():
        assert spec.help.split(":")[0] in text

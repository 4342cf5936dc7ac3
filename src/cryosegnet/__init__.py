"""cryosegnet: cryo-EM particle picking with an attention-gated U-Net and Segment Anything.

Notebook use::

    from cryosegnet import Picker, read_micrograph
    picks = Picker().pick(read_micrograph("mic.mrc"))   # DataFrame: x, y, score, diameter
"""

from __future__ import annotations

__version__ = "0.2.0"

# The public API, declared once: name -> the module that defines it. Everything here is
# importable as ``from cryosegnet import NAME`` (loaded on first use, so that
# ``cryosegnet --help`` stays fast: torch loads only when a model is needed) and documented,
# with numpydoc sections, in the API reference (docs/api).
_PUBLIC = {
    # picking
    "Picker": "cryosegnet.picking.picker",
    "PickResult": "cryosegnet.picking.picker",
    "PickerConfig": "cryosegnet.picking.config",
    "PickJob": "cryosegnet.picking.job",
    "PickerSpec": "cryosegnet.picking.job",
    "run_pick": "cryosegnet.picking.job",
    "pick_batch": "cryosegnet.picking.batch",
    # files
    "read_micrograph": "cryosegnet.io.micrographs",
    "read_coordinates": "cryosegnet.io.coordinates",
    # evaluation
    "evaluate_picks": "cryosegnet.evaluation",
    "match_picks": "cryosegnet.evaluation",
    # 2D classes
    "classify_picks": "cryosegnet.classification.pipeline",
    "select_classes": "cryosegnet.classification.pipeline",
    # simulation
    "SimulationConfig": "cryosegnet.simulation",
    "simulate_micrograph": "cryosegnet.simulation",
    # training
    "train": "cryosegnet.training.trainer",
    "finetune": "cryosegnet.training.finetune",
    "refine_picks": "cryosegnet.training.refine_loop",
}

__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'cryosegnet' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)

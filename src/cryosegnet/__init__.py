"""cryosegnet: cryo-EM particle picking with an attention-gated U-Net and Segment Anything.

Notebook use::

    from cryosegnet import Picker, read_micrograph
    picks = Picker().pick(read_micrograph("mic.mrc"))   # DataFrame: x, y, score, diameter
"""

from __future__ import annotations

__version__ = "0.2.0"

__all__ = ["Picker", "read_micrograph", "read_coordinates", "__version__"]


def __getattr__(name: str):
    # Lazy imports keep `cryosegnet --help` fast (torch loads only when a model is needed).
    if name == "Picker":
        from cryosegnet.picking.picker import Picker

        return Picker
    if name == "read_micrograph":
        from cryosegnet.io.micrographs import read_micrograph

        return read_micrograph
    if name == "read_coordinates":
        from cryosegnet.io.coordinates import read_coordinates

        return read_coordinates
    raise AttributeError(f"module 'cryosegnet' has no attribute {name!r}")

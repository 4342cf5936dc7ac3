"""Reference-free 2D classification of picks (``cryosegnet classify`` and ``select``).

Boxes are cut around the picks (:mod:`.extract`), aligned to class averages over in-plane
rotations and shifts by batched Fourier cross-correlation (:mod:`.align`), assigned and
averaged iteratively (:mod:`.classify2d`), scored (:mod:`.quality`) and selected
(:mod:`.selection`). The settings live in :class:`ClassifySettings` and
:class:`SelectionSettings`.
"""

from cryosegnet.classification.settings import ClassifySettings, SelectionSettings

__all__ = ["ClassifySettings", "SelectionSettings"]

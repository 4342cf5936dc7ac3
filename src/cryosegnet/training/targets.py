"""Disk masks: the paper's segmentation targets.

A labelled particle becomes a filled disk of its diameter centred on its coordinate. The
function is :func:`cryosegnet.geometry.disk_mask`, the one the simulator and evaluation use
too; it is imported here so that training code keeps finding its targets where it looks.
"""

from __future__ import annotations

from cryosegnet.geometry import disk_mask

__all__ = ["disk_mask"]

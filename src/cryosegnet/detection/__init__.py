"""Detection primitives every instance stage shares: plateau-safe local maxima and one
non-maximum suppression, so no two stages disagree on what a peak is or what "too close"
means."""

from cryosegnet.detection.peaks import local_maxima, suppress_close_peaks

__all__ = ["local_maxima", "suppress_close_peaks"]

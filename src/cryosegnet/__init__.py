"""cryosegnet: cryo-EM particle picking with an attention-gated U-Net and Segment Anything."""

__version__ = "0.1.0"

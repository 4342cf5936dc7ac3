"""CPU inference of the U-Net with ONNX Runtime (PyTorch stays the training and GPU engine).

On a CPU, ONNX Runtime runs the attention U-Net 1.5-2x faster than PyTorch eager mode (fused
convolution + batch norm + ReLU, a better convolution kernel; see BENCHMARKS.md). The model is
exported once per checkpoint with ``torch.onnx`` and cached in
``$XDG_CACHE_HOME/cryosegnet/onnx/`` (default ``~/.cache/cryosegnet/onnx/``), named after the
checkpoint's content, so every later run (and every worker of a cluster) loads it in a second.

The exported graph is the network without its reflect-padding (which depends on the input
size): :class:`OnnxUNet` pads and crops in NumPy exactly as ``AttentionUNet.forward`` does, so
one exported file serves every micrograph size. Its logits match PyTorch's to ~1e-5.

``CRYOSEGNET_RUNTIME=torch`` turns it off; without ``onnxruntime`` (or when the export fails)
the picker uses PyTorch and says so once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cryosegnet.io.atomic import atomic_path
from cryosegnet.model.checkpoint import checkpoint_sha256
from cryosegnet.model.unet import AttentionUNet

log = logging.getLogger("cryosegnet")

RUNTIME_ENV = "CRYOSEGNET_RUNTIME"
RUNTIMES = ("auto", "onnx", "torch")
EXPORT_VERSION = 1  # bump when the exported graph changes: old cache entries are not reused
OPSET = 18


def onnx_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/cryosegnet/onnx`` (``~/.cache/cryosegnet/onnx`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cryosegnet" / "onnx"


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def requested_runtime(runtime: str | None = None) -> str:
    """``runtime``, else ``$CRYOSEGNET_RUNTIME``, else ``auto``; validated."""
    value = (runtime or os.environ.get(RUNTIME_ENV) or "auto").strip().lower()
    if value not in RUNTIMES:
        raise ValueError(f"unknown U-Net runtime '{value}' (use {', '.join(RUNTIMES)})")
    return value


class _UNetCore(nn.Module):
    """``AttentionUNet.forward`` without the size-dependent padding and crop."""

    def __init__(self, unet: AttentionUNet) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unet.core(x)


def _checkpoint_key(checkpoint: Path) -> str:
    key = f"{checkpoint_sha256(checkpoint)}-export{EXPORT_VERSION}-torch{torch.__version__}"
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def export_onnx(unet: AttentionUNet, destination: str | os.PathLike) -> Path:
    """Write the U-Net (without padding) as one self-contained ONNX file; dynamic B, H, W."""
    destination = Path(destination)
    core = _UNetCore(unet).to("cpu").eval()
    size = 2**unet.config.depth * 2
    example = torch.zeros(1, unet.config.in_channels, size, size)
    quiet = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript", "torch.onnx")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:  # their INFO lines (passes, rewrites) are not the user's business
        logger.setLevel(logging.WARNING)
    try:
        _export(core, example, destination)
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)
    return destination


def _export(core: nn.Module, example: torch.Tensor, destination: Path) -> None:
    """TorchScript-based exporter first (seconds, and no onnxscript needed); the
    torch.export-based one (slower to export, same graph) where that one is gone."""
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        with atomic_path(destination) as tmp:
            try:
                torch.onnx.export(
                    core,
                    (example,),
                    str(tmp),
                    input_names=["image"],
                    output_names=["logits"],
                    dynamic_axes={"image": axes, "logits": axes},
                    dynamo=False,
                    opset_version=OPSET,
                )
            except Exception:
                dim = torch.export.Dim.DYNAMIC
                program = torch.onnx.export(
                    core,
                    (example,),
                    input_names=["image"],
                    output_names=["logits"],
                    dynamic_shapes=({0: dim, 2: dim, 3: dim},),
                    dynamo=True,
                    opset_version=OPSET,
                    verbose=False,
                )
                if program is None:
                    raise RuntimeError("torch.onnx.export returned no program") from None
                program.save(str(tmp), external_data=False)


class OnnxUNet:
    """Callable like the U-Net on a float32 (B, C, H, W) NumPy batch -> logits (B, 1, H, W)."""

    def __init__(
        self,
        unet: AttentionUNet,
        checkpoint: str | os.PathLike,
        threads: int | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        import onnxruntime as ort

        self.depth = int(unet.config.depth)
        checkpoint = Path(checkpoint)
        cache = Path(cache_dir) if cache_dir else onnx_cache_dir()
        name = f"{checkpoint.stem}-{_checkpoint_key(checkpoint)}.onnx"
        path = cache / name
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads or torch.get_num_threads()))
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Idle threads sleep instead of spinning: on a shared or loaded node (a cluster worker
        # beside others) spinning steals the cores the other stages need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if not path.is_file():
            log.info("exporting the U-Net to ONNX once for CPU inference (%s)", path)
            try:
                cache.mkdir(parents=True, exist_ok=True)
                export_onnx(unet, path)
            except OSError:  # read-only or full cache: export to a temp folder for this run
                with tempfile.TemporaryDirectory() as tmp:
                    exported = export_onnx(unet, Path(tmp) / name)
                    self.session = ort.InferenceSession(
                        exported.read_bytes(), options, providers=["CPUExecutionProvider"]
                    )
                self.path = None
                return
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        height, width = batch.shape[-2:]
        multiple = 2**self.depth
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        if pad_h or pad_w:  # as AttentionUNet.forward: reflect, or replicate when too small
            widths = ((0, 0), (0, 0), (0, pad_h), (0, pad_w))
            if min(height, width) > max(pad_h, pad_w):
                batch = np.pad(batch, widths, mode="reflect")
            else:
                batch = np.pad(batch, widths, mode="edge")
        (logits,) = self.session.run(None, {"image": batch})
        return logits[..., :height, :width]


def cpu_runner(
    unet: AttentionUNet, checkpoint: str | os.PathLike, runtime: str | None = None
) -> OnnxUNet | None:
    """An :class:`OnnxUNet` when the runtime asks for one and can have it, else None (PyTorch).

    ``auto`` uses ONNX Runtime when it is installed and the export works; ``onnx`` insists
    (an error when it cannot); ``torch`` never uses it.
    """
    choice = requested_runtime(runtime)
    if choice == "torch":
        return None
    if not onnxruntime_available():
        if choice == "onnx":
            raise RuntimeError("the onnx runtime was asked for but onnxruntime is not installed")
        log.info("onnxruntime is not installed: the U-Net runs in PyTorch on the CPU")
        return None
    try:
        return OnnxUNet(unet, checkpoint)
    except Exception as exc:
        if choice == "onnx":
            raise
        log.warning("ONNX export or load failed (%s): the U-Net runs in PyTorch", exc)
        return None

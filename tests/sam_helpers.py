"""A tiny randomly-initialised SAM built from segment-anything's own classes, for tests."""

from __future__ import annotations

from functools import partial

import torch
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)


def tiny_sam(seed: int = 0) -> Sam:
    """A ~100k-parameter SAM with the real architecture (64 px input, 2 encoder blocks)."""
    torch.manual_seed(seed)
    dim, size, patch = 32, 64, 16
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=size,
            patch_size=patch,
            embed_dim=dim,
            depth=2,
            num_heads=2,
            mlp_ratio=2.0,
            out_chans=dim,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=2,
            global_attn_indexes=(1,),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=dim,
            image_embedding_size=(size // patch, size // patch),
            input_image_size=(size, size),
            mask_in_chans=4,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2),
            transformer_dim=dim,
            iou_head_depth=2,
            iou_head_hidden_dim=32,
        ),
    ).eval()

"""ViT: the Vision Transformer of Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from attnlab.models.common import check_counts, encoder_block_spec, encoder_from_config
from attnlab.nn import BlockSpec, LearnedPositionalEncoding, PatchEmbedding
from attnlab.nn.embedding import check_table
from attnlab.nn.spec import MAX_D_FF


@dataclass
class ViTConfig:
    """Hyperparameters of :class:`ViT`.

    Square images of ``image_size`` pixels with ``in_channels`` channels, cut into
    ``(image_size / patch_size)^2`` patches. ``d_ff=None`` means ``4 * d_model`` (the ViT
    paper's MLP ratio). The ViT defaults are pre-LN (``norm_first``) and GELU.
    """

    image_size: int = 8
    patch_size: int = 2
    in_channels: int = 1
    num_classes: int = 10
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 4
    d_ff: int | None = None
    dropout: float = 0.1
    activation: Literal["relu", "gelu"] = "gelu"
    norm_first: bool = True

    def __post_init__(self) -> None:
        check_counts(self, ("image_size", "patch_size", "in_channels", "num_classes", "num_layers"))
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image size {self.image_size} is not divisible by the patch size "
                f"{self.patch_size}: patches must tile the image exactly"
            )
        self.block_spec()  # the block's fields (d_model, num_heads, ...), before allocating
        patch_values = self.patch_size**2 * self.in_channels
        if patch_values > MAX_D_FF:  # the patch projection's input width: a typo
            raise ValueError(
                f"patch_size**2 * in_channels (the values of a patch) must be at most "
                f"{MAX_D_FF:,}; got {patch_values:,}"
            )
        check_table(self.num_patches + 1, self.d_model, "(image_size / patch_size)**2 + 1")

    @property
    def num_patches(self) -> int:
        """``N = (image_size / patch_size)^2``."""
        return (self.image_size // self.patch_size) ** 2

    def block_spec(self) -> BlockSpec:
        """The :class:`~attnlab.nn.BlockSpec` handed to every encoder layer."""
        return encoder_block_spec(self)


class ViT(nn.Module):
    """Classify an image from the output at a learned CLS token (ViT paper, section 3.1).

    Equations 1-4 of the paper::

        z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos      patches, CLS token, positions
        z_l = Encoder layer l (z_{l-1}),  l = 1..L           attnlab's TransformerEncoder
        y   = LN(z_L^0)                                      (final LayerNorm with pre-LN)
        logits = y W_head                                    a linear classification head

    The CLS token starts at zero, as in the paper's reference code; positions are learned
    (``N(0, 0.02)``), with dropout after adding them.

    Input: images ``(B, in_channels, image_size, image_size)``. Output: logits
    ``(B, num_classes)``.
    """

    config_class = ViTConfig

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = config
        d_model = config.d_model
        self.patch_embed = PatchEmbedding(
            config.image_size, config.patch_size, config.in_channels, d_model
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model))
        self.positions = LearnedPositionalEncoding(
            d_model, max_len=config.num_patches + 1, dropout=config.dropout
        )
        self.encoder = encoder_from_config(config)
        self.head = nn.Linear(d_model, config.num_classes)

    def _encode_input(self, images: Tensor) -> Tensor:
        """``z_0``: CLS token and embedded patches, plus positions, ``(B, 1 + N, d_model)``."""
        x = self.patch_embed(images)  # (B, N, d_model)
        cls = self.cls_token.expand(x.size(0), -1, -1)  # (B, 1, d_model)
        return self.positions(torch.cat([cls, x], dim=1))  # (B, 1 + N, d_model)

    def forward(self, images: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` of images ``(B, in_channels, image_size, image_size)``: the
        head on the CLS token's final state (ViT section 3.1, equations 1-4)."""
        hidden = self.encoder(self._encode_input(images))  # (B, 1 + N, d_model)
        return self.head(hidden[:, 0])  # (B, num_classes)

    def attention_maps(self, images: Tensor) -> list[Tensor]:
        """Every layer's attention weights ``(B, H, 1 + N, 1 + N)``; index 0 is the CLS token."""
        _, maps = self.encoder(self._encode_input(images), return_attention=True)
        return maps

"""Token embeddings and positional encodings (paper sections 3.4 and 3.5), and the ViT's
patch embedding (Dosovitskiy et al. 2021, section 3.1)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from attnlab.nn.dropout import Dropout
from attnlab.nn.spec import (
    MAX_D_FF,
    MAX_ENTRIES,
    MAX_POSITIONS,
    check_whole_number,
    check_width,
    not_a_tensor,
)


def check_table(max_len: int, d_model: int, name: str = "max_len") -> None:
    """Raise ``ValueError`` unless a ``(max_len, d_model)`` position table can be made:
    ``0 <= max_len <= MAX_POSITIONS`` and ``d_model >= 1`` (checked before allocating).
    ``name`` is the config's name for ``max_len`` (e.g. ``block_size``)."""
    check_whole_number(name, max_len, 0)
    check_width("d_model", d_model)
    if max_len > MAX_POSITIONS:
        gib = max_len * d_model * 4 / 2**30
        raise ValueError(
            f"{name} must be at most {MAX_POSITIONS:,} positions; got {max_len:,} (a table of "
            f"{gib:,.0f} GiB at d_model={d_model})"
        )


def check_token_batch(ids: object, name: str = "tokens") -> None:
    """Raise ``TypeError`` unless ``ids`` is a tensor, ``ValueError`` unless it is
    ``(B, T)``: the first check of a model's token input, named ``name`` in the message (a
    list of ids otherwise failed with "'list' object has no attribute 'dim'")."""
    if not isinstance(ids, Tensor):
        raise TypeError(
            f"{name} must be a tensor of token ids (B, T); got {type(ids).__name__} (make one "
            "with torch.tensor)"
        )
    if ids.dim() != 2:
        raise ValueError(f"{name} must have shape (B, T); got {tuple(ids.shape)}")


def embed_tokens(embedding: nn.Embedding, ids: Tensor, name: str = "tokens") -> Tensor:
    """``embedding(ids)``: integer ids ``(...)`` -> vectors ``(..., embedding_dim)``, with one
    ``ValueError`` naming ``name`` for ids that are not integers or not in ``[0, vocab)``.

    The range is looked at only once torch has refused an id (its ``IndexError`` on the CPU),
    so the lookup costs no extra pass and no device sync. On a GPU an id out of range is a
    device-side assert that cannot be caught: :mod:`attnlab.generation` checks its prompts
    once, before decoding.
    """
    if ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{name} must be integer token ids (torch.long); got dtype {ids.dtype}")
    try:
        return embedding(ids)
    except IndexError:
        raise ValueError(
            f"{name} must be ids in [0, {embedding.num_embeddings}) (the vocabulary size); got "
            f"ids from {int(ids.min())} to {int(ids.max())}"
        ) from None


class TokenEmbedding(nn.Module):
    """Learned token embedding multiplied by ``sqrt(d_model)`` (section 3.4).

    Weights are drawn from ``N(0, d_model^-1/2)`` so that the scaled embedding has unit
    variance, the same scale as the sinusoidal positions added to it.

    Input: token ids ``(B, T)`` (long), each in ``[0, vocab_size)``. Output:
    ``(B, T, d_model)``.
    """

    def __init__(self, vocab_size: int, d_model: int, padding_idx: int | None = None):
        super().__init__()
        check_width("vocab_size", vocab_size, MAX_ENTRIES)
        check_width("d_model", d_model)
        if padding_idx is not None and (
            isinstance(padding_idx, bool)
            or not isinstance(padding_idx, int)
            or not 0 <= padding_idx < vocab_size
        ):
            raise ValueError(
                f"padding_idx must be None or an id in [0, vocab_size={vocab_size}); "
                f"got {padding_idx!r}"
            )
        self.d_model = d_model
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=padding_idx)
        nn.init.normal_(self.embedding.weight, mean=0.0, std=d_model**-0.5)
        if padding_idx is not None:
            with torch.no_grad():
                self.embedding.weight[padding_idx].zero_()

    @property
    def weight(self) -> Tensor:
        """The ``(vocab_size, d_model)`` embedding matrix (for weight tying)."""
        return self.embedding.weight

    def forward(self, tokens: Tensor) -> Tensor:
        """Token ids ``(B, T)`` -> their embeddings times ``sqrt(d_model)``, ``(B, T, d_model)``
        (section 3.4); an id outside ``[0, vocab_size)`` raises ``ValueError``."""
        check_token_batch(tokens)
        return embed_tokens(self.embedding, tokens) * math.sqrt(self.d_model)  # (B, T, d_model)


def sinusoidal_table(max_len: int, d_model: int) -> Tensor:
    """The paper's positional encoding table (section 3.5), shape ``(max_len, d_model)``.

    ``PE[pos, 2i] = sin(pos / 10000^(2i / d_model))`` and
    ``PE[pos, 2i+1] = cos(pos / 10000^(2i / d_model))``. Raises ``ValueError`` for sizes
    that are not whole numbers, or a ``max_len`` above :data:`MAX_POSITIONS` (a typo).
    """
    check_table(max_len, d_model)
    position = torch.arange(max_len, dtype=torch.float64)[:, None]  # (max_len, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (ceil(d_model / 2),)
    angle = position / torch.pow(10000.0, two_i / d_model)  # (max_len, ceil(d_model / 2))
    table = torch.zeros(max_len, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return table.float()


class _PositionalEncoding(nn.Module):
    """Shared checks for the two positional encodings: sizes, input width and length limit."""

    def __init__(self, d_model: int, max_len: int, dropout: float):
        super().__init__()
        check_table(max_len, d_model)
        self.d_model = d_model
        self.max_len = max_len
        self.dropout = Dropout(dropout)

    def rows(self) -> Tensor:
        """The table of encodings, one row per position: ``(max_len, d_model)``."""
        raise NotImplementedError

    def positions(self, T: int, offset: int | Tensor) -> Tensor:
        """Encodings of positions ``offset .. offset + T - 1``, shape ``(T, d_model)``."""
        if isinstance(offset, Tensor):  # gathered, not sliced: the offset stays in a tensor
            index = offset + torch.arange(T, device=offset.device)  # (T,)
            return self.rows().index_select(0, index)  # (T, d_model)
        return self.rows()[offset : offset + T]  # (T, d_model)

    def forward(self, x: Tensor, offset: int | Tensor = 0) -> Tensor:
        """Add the encodings of positions ``offset, offset + 1, ...`` to ``x``, then dropout.

        Input and output: ``(B, T, d_model)``. ``offset`` is the position of ``x[:, 0]``
        (non-zero when decoding one token at a time with a key/value cache): a whole number,
        or a 0-d integer tensor such as a :class:`~attnlab.nn.StaticKVCache`'s ``position``.
        A tensor offset is never read back to Python, so one compiled decoding step serves
        every position; it is checked against ``max_len`` only by the gather itself (the
        static cache checks its own room).
        """
        if not isinstance(x, Tensor):
            raise not_a_tensor("x", x, "(B, T, d_model)")
        if x.dim() != 3 or x.size(-1) != self.d_model:
            raise ValueError(
                f"x must have shape (B, T, d_model={self.d_model}); got {tuple(x.shape)}"
            )
        T = x.size(1)
        if isinstance(offset, Tensor):
            if offset.dim() != 0 or offset.is_floating_point() or offset.dtype == torch.bool:
                raise ValueError(
                    f"a tensor offset must be a 0-d integer tensor; got {offset.dtype} of "
                    f"shape {tuple(offset.shape)}"
                )
            return self.dropout(x + self.positions(T, offset))  # (B, T, d_model)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset must be a whole number >= 0; got {offset!r}")
        if offset + T > self.max_len:
            raise ValueError(
                f"sequence length {offset + T} exceeds the maximum length {self.max_len} "
                "of the positional encoding"
            )
        return self.dropout(x + self.positions(T, offset))  # (B, T, d_model)


class SinusoidalPositionalEncoding(_PositionalEncoding):
    """Fixed sinusoidal positional encoding added to the input, then dropout (section 3.5).

    The table is a non-persistent buffer: it is recomputed, never saved in checkpoints.
    Input and output: ``(B, T, d_model)`` with ``T <= max_len``.
    """

    table: Tensor  # (max_len, d_model), the buffer registered in __init__

    def __init__(self, d_model: int, max_len: int = 5000, dropout: float = 0.0):
        super().__init__(d_model, max_len, dropout)
        self.register_buffer("table", sinusoidal_table(max_len, d_model), persistent=False)

    def rows(self) -> Tensor:
        """The fixed sinusoidal table ``(max_len, d_model)`` of section 3.5."""
        return self.table  # (max_len, d_model)


class LearnedPositionalEncoding(_PositionalEncoding):
    """Learned absolute position embeddings added to the input, then dropout.

    The paper's alternative to sinusoids (section 3.5, "learned positional embeddings
    ... produced nearly identical results"); used by BERT, GPT and ViT. ``init_std`` is the
    standard deviation of the initial table (0.02 as in GPT-2 and BERT, whose token embeddings
    have that scale too).
    Input and output: ``(B, T, d_model)`` with ``T <= max_len``.
    """

    def __init__(
        self, d_model: int, max_len: int = 512, dropout: float = 0.0, init_std: float = 0.02
    ):
        super().__init__(d_model, max_len, dropout)
        self.embedding = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.embedding.weight, mean=0.0, std=init_std)

    def rows(self) -> Tensor:
        """The learned table ``(max_len, d_model)`` (the embedding's weight)."""
        return self.embedding.weight  # (max_len, d_model)


def check_not_float64(name: str, x: Tensor, weight: Tensor) -> None:
    """Raise ``ValueError`` for float64 input ``x`` to float32 or half ``weight``: NumPy's
    default dtype, which failed inside torch's matmul ("mat1 and mat2 must have the same
    dtype"), under autocast as well (it leaves float64 alone)."""
    if x.dtype == torch.float64 and weight.dtype != torch.float64:
        raise ValueError(
            f"{name} must have the dtype of the model's weights ({weight.dtype}); got "
            f"torch.float64 (NumPy's default: convert with {name}.to({weight.dtype}))"
        )


class PatchEmbedding(nn.Module):
    """Split images into non-overlapping ``P x P`` patches and project each one linearly.

    The ViT's input embedding (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words",
    section 3.1): an image ``x`` of shape ``(H, W, C)`` is reshaped into a sequence of
    ``N = (H / P) * (W / P)`` flattened patches ``x_p`` of shape ``(N, P^2 * C)``, and each
    patch is mapped to ``d_model`` dimensions by one trainable linear projection ``E``.

    Patches are numbered row by row over the ``(H / P, W / P)`` grid (patch ``n`` is at grid
    row ``n // (W / P)``, column ``n % (W / P)``); inside a patch the values are flattened in
    ``(row, column, channel)`` order. The same function as a ``Conv2d`` with kernel size and
    stride ``P``, written as the paper's reshape + linear map.

    Args:
        image_size: ``H`` (square images) or ``(H, W)``; each must be divisible by ``patch_size``.
        patch_size: ``P``.
        in_channels: ``C`` (1 for grayscale, 3 for RGB).
        d_model: width of each patch embedding.

    Input: images ``(B, C, H, W)``. Output: patch embeddings ``(B, N, d_model)``.
    """

    def __init__(
        self, image_size: int | tuple[int, int], patch_size: int, in_channels: int, d_model: int
    ):
        super().__init__()
        H, W = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        sizes = {"image height": H, "image width": W, "patch_size": patch_size}
        for name, value in {**sizes, "in_channels": in_channels}.items():
            check_whole_number(name, value, 1)
        check_width("d_model", d_model)
        check_width(
            "patch_size**2 * in_channels (the values of a patch)",
            patch_size**2 * in_channels,
            MAX_D_FF,
        )
        if H % patch_size or W % patch_size:
            raise ValueError(
                f"image size {H}x{W} is not divisible by the patch size {patch_size}: "
                "patches must tile the image exactly"
            )
        self.image_size = (H, W)
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.grid_size = (H // patch_size, W // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.projection = nn.Linear(patch_size * patch_size * in_channels, d_model)
        nn.init.xavier_uniform_(self.projection.weight)
        nn.init.zeros_(self.projection.bias)

    def patches(self, images: Tensor) -> Tensor:
        """The flattened patches ``x_p``: ``(B, C, H, W)`` -> ``(B, N, P * P * C)``."""
        if not isinstance(images, Tensor):
            raise TypeError(f"images must be a tensor (B, C, H, W); got {type(images).__name__}")
        expected = (self.in_channels, *self.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"images must have shape (B, {', '.join(map(str, expected))}); "
                f"got {tuple(images.shape)}"
            )
        if not images.is_floating_point():
            raise ValueError(
                f"images must be a float tensor (8-bit pixels: images.float() / 255); got dtype "
                f"{images.dtype}"
            )
        B, C = images.shape[:2]
        P = self.patch_size
        rows, cols = self.grid_size
        x = images.reshape(B, C, rows, P, cols, P)  # (B, C, H/P, P, W/P, P)
        x = x.permute(0, 2, 4, 3, 5, 1)  # (B, H/P, W/P, P, P, C)
        return x.reshape(B, rows * cols, P * P * C)  # (B, N, P*P*C)

    def forward(self, images: Tensor) -> Tensor:
        """Images ``(B, C, H, W)`` -> patch embeddings ``x_p E``, ``(B, N, d_model)`` (ViT section
        3.1, equation 1 before the CLS token and the positions)."""
        patches = self.patches(images)  # (B, N, P*P*C)
        check_not_float64("images", patches, self.projection.weight)
        return self.projection(patches)  # (B, N, d_model)

    def extra_repr(self) -> str:
        """The settings printed by ``repr(module)``."""
        H, W = self.image_size
        return f"image_size={H}x{W}, patch_size={self.patch_size}, num_patches={self.num_patches}"

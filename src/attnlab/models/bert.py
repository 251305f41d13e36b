"""BERT: the bidirectional Transformer encoder of Devlin et al. 2019, built from attnlab's blocks.

"BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding", section 3
("BERT's model architecture is a multi-layer bidirectional Transformer encoder based on the
original implementation described in Vaswani et al. (2017)"). Concretely, with the names of
"Attention Is All You Need" (the paper section of each block in brackets):

* input representation (BERT section 3, figure 2): the sum of a WordPiece token embedding, a
  learned position embedding and a learned segment ("token type") embedding, then LayerNorm
  and dropout. Unlike the Transformer's :class:`attnlab.nn.TokenEmbedding` (section 3.4) the
  token embedding is *not* multiplied by ``sqrt(d_model)``, and positions are learned, not
  sinusoidal (section 3.5 names both options);
* ``num_hidden_layers`` post-LN :class:`attnlab.nn.EncoderLayer` s (section 3.1) with GELU in
  the feed-forward network (section 3.3; BERT section 3 footnote: "gelu", Hendrycks & Gimpel
  2016). ``hidden_act="gelu"`` (BERT's and MiniLM's) is the exact GELU ``x * Phi(x)``
  computed with ``erf`` — the same function as Hugging Face's ``"gelu"`` and
  ``torch.nn.functional.gelu``'s default. Hugging Face's ``"gelu_new"`` and
  ``"gelu_pytorch_tanh"`` are the tanh approximation, a slightly different function: they map
  to attnlab's ``"gelu_tanh"``.

The output is the last layer's hidden states ``(B, T, hidden_size)``; BERT's pooler (a dense
layer + tanh on the ``[CLS]`` state, used for next-sentence prediction) is not part of it.
:func:`sentence_embedding` pools them into sentence vectors as sentence-transformers does
(Reimers & Gurevych 2019, section 3: "MEAN-strategy").

Masks: ``attention_mask`` may be Hugging Face's ``(B, T)`` with 1 = real token, 0 = padding, or
an attnlab padding mask ``(B, 1, 1, T)`` (bool, ``True`` = may attend). Both say "True / 1 =
real token", so no convention changes hands here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnlab.models.common import check_attention_mask, check_counts, check_token_ids
from attnlab.nn import BlockSpec, LearnedPositionalEncoding, TransformerEncoder
from attnlab.nn.dropout import Dropout
from attnlab.nn.embedding import check_table, check_token_batch, embed_tokens
from attnlab.nn.spec import Activation, not_a_tensor

# Hugging Face ``hidden_act`` names -> attnlab activation names (only the same functions).
_HF_ACTIVATIONS: dict[str, Activation] = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
}


# The fields of BertConfig that count something: each a whole number >= 1.
_BERT_SIZES = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
)


@dataclass
class BertConfig:
    """Hyperparameters of :class:`Bert`, named as in Hugging Face's ``BertConfig``.

    Defaults are BERT-base (BERT section 3: L=12, H=768, A=12). all-MiniLM-L6-v2 is
    ``hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536``.
    ``hidden_dropout_prob`` is applied to the embeddings and to each sublayer's output,
    ``attention_probs_dropout_prob`` to the attention weights (as in BERT's reference code).
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        check_counts(self, _BERT_SIZES)
        check_token_ids(self, self.vocab_size, "vocab_size", ("pad_token_id",))
        if self.hidden_act not in _HF_ACTIVATIONS:
            raise ValueError(
                f"hidden_act {self.hidden_act!r} is not supported: attnlab's BERT implements "
                f"{sorted(_HF_ACTIVATIONS)} ('gelu' is the exact erf GELU, 'gelu_new' and "
                "'gelu_pytorch_tanh' its tanh approximation)"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                f"{self.num_attention_heads}"
            )
        self.block_spec()  # the remaining fields (dropouts, eps), before allocating
        check_table(self.max_position_embeddings, self.hidden_size, "max_position_embeddings")

    @classmethod
    def from_hf_config(cls, config: dict[str, Any]) -> BertConfig:
        """Read a Hugging Face BERT ``config.json`` (as a dict); unknown keys are ignored.

        Raises ``ValueError`` for a config that describes something else than an absolute-
        position, encoder-only BERT (``position_embedding_type``, ``is_decoder``, ``hidden_act``).
        """
        position_type = config.get("position_embedding_type", "absolute")
        if position_type != "absolute":
            raise ValueError(
                f"position_embedding_type {position_type!r} is not supported: attnlab's BERT "
                "has absolute learned positions"
            )
        if config.get("is_decoder") or config.get("add_cross_attention"):
            raise ValueError("decoder BERT configs are not supported: attnlab's BERT is an encoder")
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in config.items() if key in names})

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict (the fields of a Hugging Face ``config.json``)."""
        return asdict(self)

    def block_spec(self) -> BlockSpec:
        """The :class:`~attnlab.nn.BlockSpec` of every layer, with BERT's three dropouts.

        ``hidden_dropout_prob`` on each sublayer output, ``attention_probs_dropout_prob`` on
        the attention weights and none inside the feed-forward network, as in BERT's
        reference code.
        """
        return BlockSpec(
            d_model=self.hidden_size,
            num_heads=self.num_attention_heads,
            d_ff=self.intermediate_size,
            dropout=self.hidden_dropout_prob,
            attention_dropout=self.attention_probs_dropout_prob,
            ffn_dropout=0.0,
            activation=_HF_ACTIVATIONS[self.hidden_act],
            norm_first=False,
            layer_norm_eps=self.layer_norm_eps,
        )


class BertEmbeddings(nn.Module):
    """BERT's input representation (BERT section 3, "Input/Output Representations", figure 2).

    ``LayerNorm(token + segment + position) -> dropout``, all three embeddings learned.

    Input: ``input_ids (B, T)`` and optional ``token_type_ids (B, T)`` (segment A = 0, B = 1;
    ``None`` = all 0). Output: ``(B, T, hidden_size)``, ``T <= max_position_embeddings``.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        D = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, D, padding_idx=config.pad_token_id)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, D)
        self.position_embeddings = LearnedPositionalEncoding(D, config.max_position_embeddings)
        for embedding in (self.word_embeddings, self.token_type_embeddings):
            nn.init.normal_(embedding.weight, mean=0.0, std=0.02)
        with torch.no_grad():
            self.word_embeddings.weight[config.pad_token_id].zero_()
        self.norm = nn.LayerNorm(D, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """``LayerNorm(token + segment + position)``, then dropout (BERT section 3, figure 2):
        ``input_ids`` and ``token_type_ids`` ``(B, T)`` -> ``(B, T, hidden_size)``."""
        x = embed_tokens(self.word_embeddings, input_ids, "input_ids")  # (B, T, D)
        if token_type_ids is None:
            x = x + self.token_type_embeddings.weight[0]  # segment A everywhere: (B, T, D)
        else:
            segments = embed_tokens(self.token_type_embeddings, token_type_ids, "token_type_ids")
            x = x + segments  # (B, T, D)
        x = self.position_embeddings(x)  # + learned positions: (B, T, D)
        return self.dropout(self.norm(x))  # (B, T, D)


class Bert(nn.Module):
    """A BERT encoder (BERT section 3) on attnlab's :class:`attnlab.nn.TransformerEncoder`.

    Post-LN layers (Transformer section 3.1) with GELU feed-forward networks (section 3.3)
    and LayerNorm epsilon ``config.layer_norm_eps``. Dropout sits where BERT's reference code
    puts it: ``attention_probs_dropout_prob`` on the attention weights, ``hidden_dropout_prob``
    on the embeddings and on each sublayer output, none inside the feed-forward network.

    Call: ``bert(input_ids, attention_mask=None, token_type_ids=None, return_attention=False)``

    * ``input_ids``: ``(B, T)`` long, ``T <= max_position_embeddings``;
    * ``attention_mask``: ``(B, T)`` with 1 / ``True`` = real token, 0 = padding (Hugging Face
      style), or an attnlab padding mask ``(B, 1, 1, T)`` (bool, ``True`` = may attend);
      ``None`` = no padding;
    * ``token_type_ids``: ``(B, T)`` segment ids, ``None`` = all 0.

    Returns the last hidden states ``(B, T, hidden_size)``; with ``return_attention=True``
    the pair ``(hidden states, [attention weights of each layer, (B, H, T, T)])``, computed on
    the written-out attention path. Without it the fused path
    (:func:`torch.nn.functional.scaled_dot_product_attention`) runs, and a mask with no
    padding is dropped so that the fastest kernel can be used.
    """

    config_class = BertConfig

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = TransformerEncoder(config.num_hidden_layers, spec=config.block_spec())

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        return_attention: bool = False,
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """The last hidden states ``(B, T, hidden_size)`` of ``input_ids (B, T)`` (BERT section 3);
        with ``return_attention=True`` also each layer's weights ``(B, H, T, T)``.
        ``attention_mask``: ``(B, T)``, 1 = real token, or ``(B, 1, 1, T)`` bool, ``True`` = may
        attend."""
        check_token_batch(input_ids, "input_ids")
        if token_type_ids is not None:
            check_token_batch(token_type_ids, "token_type_ids")
            if token_type_ids.shape != input_ids.shape:
                raise ValueError(
                    f"token_type_ids {tuple(token_type_ids.shape)} must have the shape of "
                    f"input_ids {tuple(input_ids.shape)}"
                )
        mask = key_padding_mask(attention_mask, input_ids.shape)
        if mask is not None and bool(mask.all()):
            mask = None  # no padding: SDPA can then pick its mask-free kernel
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, D)
        return self.encoder(x, mask=mask, return_attention=return_attention)

    def extra_repr(self) -> str:
        """The settings printed by ``repr(module)``."""
        c = self.config
        return (
            f"layers={c.num_hidden_layers}, hidden_size={c.hidden_size}, "
            f"heads={c.num_attention_heads}, intermediate_size={c.intermediate_size}"
        )


# For the type checker: a mask gives a mask, None gives None.
@overload
def key_padding_mask(attention_mask: Tensor, shape: torch.Size) -> Tensor: ...
@overload
def key_padding_mask(attention_mask: None, shape: torch.Size) -> None: ...
def key_padding_mask(attention_mask: Tensor | None, shape: torch.Size) -> Tensor | None:
    """An attnlab padding mask ``(B, 1, 1, T)`` (bool, ``True`` = real token) or ``None``.

    Accepts Hugging Face's ``(B, T)`` mask (bool or integer, 1 = real token) or an attnlab
    ``(B, 1, 1, T)`` mask; ``shape`` is ``(B, T)`` of the input ids. A float mask is refused
    (:func:`~attnlab.models.common.check_attention_mask`).
    """
    if attention_mask is None:
        return None
    check_attention_mask(attention_mask)
    B, T = shape
    if attention_mask.dim() == 2 and tuple(attention_mask.shape) == (B, T):
        return attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
    if attention_mask.dim() == 4 and tuple(attention_mask.shape) == (B, 1, 1, T):
        return attention_mask.bool()
    raise ValueError(
        f"attention_mask must have shape (B, T) = {(B, T)} (1 = real token) or "
        f"(B, 1, 1, T) = {(B, 1, 1, T)} (True = may attend); got {tuple(attention_mask.shape)}"
    )


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Average of the hidden states of the real tokens: ``(B, T, D), (B, T) -> (B, D)``.

    ``attention_mask`` is ``(B, T)`` with 1 = real token (or an attnlab ``(B, 1, 1, T)``
    mask). Padding positions do not count; a row without real tokens gives zeros.
    """
    # Else a list failed on .shape, and (B, T) or (B, T, D, E) states in torch's broadcasting.
    if not isinstance(hidden, Tensor):
        raise not_a_tensor("hidden", hidden, "(B, T, D)")
    if hidden.dim() != 3:
        raise ValueError(f"hidden must have shape (B, T, D); got {tuple(hidden.shape)}")
    mask = key_padding_mask(attention_mask, hidden.shape[:2])[:, 0, 0, :, None]  # (B, T, 1)
    mask = mask.to(hidden.dtype)
    summed = (hidden * mask).sum(dim=1)  # (B, D)
    counts = mask.sum(dim=1).clamp(min=1e-9)  # (B, 1)
    return summed / counts  # (B, D)


def sentence_embedding(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Mean pooling then L2 normalisation (sentence-transformers' all-MiniLM-L6-v2 recipe).

    ``(B, T, D), (B, T) -> (B, D)``; each row has unit Euclidean norm, so the cosine
    similarity of two sentences is the dot product of their embeddings.
    """
    return F.normalize(mean_pool(hidden, attention_mask), p=2, dim=-1)  # (B, D)

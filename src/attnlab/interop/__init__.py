"""Weight mapping to and from torch.nn and Hugging Face twins of attnlab's modules."""

from attnlab.interop.hf import from_hf
from attnlab.interop.torch_nn import (
    TorchTransformerEncoder,
    from_torch,
    to_torch,
    torch_attn_mask,
    torch_key_padding_mask,
    torch_per_head_mask,
)

__all__ = [
    "TorchTransformerEncoder",
    "from_hf",
    "from_torch",
    "to_torch",
    "torch_attn_mask",
    "torch_key_padding_mask",
    "torch_per_head_mask",
]

"""Weight mapping to and from torch.nn (and, later, Hugging Face) twins of attnlab's modules."""

from attnlab.interop.torch_nn import (
    TorchTransformerEncoder,
    from_torch,
    to_torch,
    torch_attn_mask,
    torch_key_padding_mask,
)

__all__ = [
    "TorchTransformerEncoder",
    "from_torch",
    "to_torch",
    "torch_attn_mask",
    "torch_key_padding_mask",
]

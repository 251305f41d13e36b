"""The encoder practical's reference solution equals attnlab.nn's blocks and torch.nn's.

The checker compares students with this solution, so it is itself checked against independent
references: attnlab.nn (sinusoidal table, scaled dot-product attention, FeedForward),
torch's layer norm and torch.nn.TransformerEncoderLayer (post-LN, the paper's layer).
"""

import torch
import torch.nn.functional as F
from torch import nn

from attnlab.exercises.core import randomize_
from attnlab.exercises.solutions import encoder as solution
from attnlab.nn import FeedForward, scaled_dot_product_attention, sinusoidal_table

B, T, D, H, D_FF = 3, 7, 12, 2, 20
LENGTHS = torch.tensor([5, 7, 3])
MASK = (torch.arange(T) < LENGTHS[:, None]).view(B, 1, 1, T)  # True = may attend


def layer() -> solution.TransformerEncoderLayer:
    out = solution.TransformerEncoderLayer(D, H, D_FF, 0.1).eval()
    randomize_(out, torch.Generator().manual_seed(0))
    return out


def torch_twin(ours: solution.TransformerEncoderLayer) -> nn.TransformerEncoderLayer:
    """torch's post-LN layer (ReLU, eps 1e-5) holding ``ours``'s weights."""
    twin = nn.TransformerEncoderLayer(D, H, D_FF, 0.1, batch_first=True).eval()
    with torch.no_grad():
        twin.self_attn.in_proj_weight.copy_(
            torch.cat([ours.w_q.weight, ours.w_k.weight, ours.w_v.weight])
        )
        twin.self_attn.in_proj_bias.copy_(torch.cat([ours.w_q.bias, ours.w_k.bias, ours.w_v.bias]))
        twin.self_attn.out_proj.load_state_dict(ours.w_o.state_dict())
        twin.linear1.load_state_dict(ours.linear1.state_dict())
        twin.linear2.load_state_dict(ours.linear2.state_dict())
        for norm, gamma, beta in (
            (twin.norm1, ours.gamma1, ours.beta1),
            (twin.norm2, ours.gamma2, ours.beta2),
        ):
            norm.weight.copy_(gamma)
            norm.bias.copy_(beta)
    return twin


def test_positional_encoding_adds_the_sinusoidal_table():
    x = torch.randn(B, T, D)
    got = solution.PositionalEncoding(D)(x)
    torch.testing.assert_close(got, x + sinusoidal_table(T, D), atol=1e-5, rtol=1e-5)


def test_self_attention_is_scaled_dot_product_attention():
    q, k, v = torch.randn(3, B, H, T, D // H)
    want, _ = scaled_dot_product_attention(q, k, v, MASK)
    torch.testing.assert_close(layer().self_attention(q, k, v, D // H, MASK), want)
    fused = F.scaled_dot_product_attention(q, k, v, attn_mask=MASK)
    torch.testing.assert_close(layer().self_attention(q, k, v, D // H, MASK), fused)


def test_norm_is_layer_norm_without_gain_and_bias():
    x = 3 * torch.randn(B, T, D) + 1
    torch.testing.assert_close(layer().norm(x), F.layer_norm(x, (D,), eps=1e-5))


def test_feed_forward_is_attnlabs():
    ours = layer()
    theirs = FeedForward(D, D_FF, 0.1).eval()
    theirs.linear1.load_state_dict(ours.linear1.state_dict())
    theirs.linear2.load_state_dict(ours.linear2.state_dict())
    x = torch.randn(B, T, D)
    torch.testing.assert_close(ours.feed_forward(x), theirs(x))


def test_predicting_qkv_splits_the_projections_into_heads():
    ours, x = layer(), torch.randn(B, T, D)
    q, k, v = ours.predicting_qkv(x)
    for got, proj in ((q, ours.w_q), (k, ours.w_k), (v, ours.w_v)):
        heads = [proj(x)[..., h * (D // H) : (h + 1) * (D // H)] for h in range(H)]
        torch.testing.assert_close(got, torch.stack(heads, dim=1))


def test_the_layer_is_torchs_post_ln_encoder_layer_with_the_same_weights():
    ours, x = layer(), torch.randn(B, T, D)
    want = torch_twin(ours)(x, src_key_padding_mask=~MASK.view(B, T))  # torch: True = padding
    got = ours(x, MASK)
    real = MASK.view(B, T, 1)  # torch's fast path leaves padded positions' outputs as zeros
    torch.testing.assert_close(got * real, want * real, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours(x), torch_twin(ours)(x), atol=1e-5, rtol=1e-4)


def test_the_encoder_prepends_cls_adds_positions_and_runs_its_layers():
    encoder = solution.TransformerEncoder(D, H, D_FF, 2, 0.1, max_len=50).eval()
    randomize_(encoder, torch.Generator().manual_seed(1))
    x = torch.randn(B, T, D)
    h = torch.cat([encoder.cls_token.expand(B, 1, D), x], dim=1) + sinusoidal_table(T + 1, D)
    padding = torch.cat([torch.zeros(B, 1, dtype=torch.bool), ~MASK.view(B, T)], dim=1)
    for ours in encoder.layers:
        h = torch_twin(ours)(h, src_key_padding_mask=padding)
    real = ~padding.unsqueeze(-1)
    torch.testing.assert_close(encoder(x, MASK) * real, h * real, atol=1e-5, rtol=1e-4)

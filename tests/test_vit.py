"""ViT (Dosovitskiy et al. 2021) and attention rollout (Abnar & Zuidema 2020)."""

import pytest
import torch

from attnlab.models import MODELS, ViT, ViTConfig
from attnlab.viz import attention_rollout, plot_rollout_overlay, upsample_to_image

from .hugging_face import transformers_or_skip

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def small_vit(**overrides) -> ViT:
    config = {"image_size": 8, "patch_size": 2, "d_model": 16, "num_heads": 2, "num_layers": 2}
    return ViT(ViTConfig(**{**config, **overrides})).eval()


@pytest.mark.parametrize(
    "image_size, patch_size, channels, num_patches", [(8, 2, 1, 16), (8, 4, 1, 4), (12, 4, 3, 9)]
)
def test_vit_shapes(image_size, patch_size, channels, num_patches):
    model = small_vit(
        image_size=image_size, patch_size=patch_size, in_channels=channels, num_classes=7
    )
    images = torch.rand(5, channels, image_size, image_size)
    assert model.config.num_patches == num_patches
    assert model(images).shape == (5, 7)
    maps = model.attention_maps(images)
    assert len(maps) == 2
    assert all(m.shape == (5, 2, 1 + num_patches, 1 + num_patches) for m in maps)


def test_vit_is_registered_for_reloading():
    assert MODELS["ViT"] is ViT and ViT.config_class is ViTConfig


# Hugging Face's names for one ViT layer's tensors, before transformers 5.x and after.
HF_VIT_LAYER_NAMES = {
    "old": {"layer": "vit.encoder.layer.{i}.", "q": "attention.attention.query",
            "k": "attention.attention.key", "v": "attention.attention.value",
            "o": "attention.output.dense", "fc1": "intermediate.dense", "fc2": "output.dense"},
    "new": {"layer": "vit.layers.{i}.", "q": "attention.q_proj", "k": "attention.k_proj",
            "v": "attention.v_proj", "o": "attention.o_proj", "fc1": "mlp.fc1",
            "fc2": "mlp.fc2"},
}  # fmt: skip


def hf_vit_state(ours: ViT, names: dict[str, str]) -> dict[str, torch.Tensor]:
    """``ours``'s weights under Hugging Face ``ViTForImageClassification``'s names and
    layouts: the patch projection as a convolution, Q, K and V as three matrices."""
    D, P, C = ours.config.d_model, ours.config.patch_size, ours.config.in_channels
    # our patch vectors are laid out (P, P, C); the convolution's kernels are (C, P, P)
    conv = ours.patch_embed.projection.weight.reshape(D, P, P, C).permute(0, 3, 1, 2)
    state = {
        "vit.embeddings.cls_token": ours.cls_token,
        "vit.embeddings.position_embeddings": ours.positions.embedding.weight[None],  # (1, T, D)
        "vit.embeddings.patch_embeddings.projection.weight": conv,  # (D, C, P, P)
        "vit.embeddings.patch_embeddings.projection.bias": ours.patch_embed.projection.bias,
        "vit.layernorm.weight": ours.encoder.norm.weight,
        "vit.layernorm.bias": ours.encoder.norm.bias,
        "classifier.weight": ours.head.weight,
        "classifier.bias": ours.head.bias,
    }
    for i, layer in enumerate(ours.encoder.layers):
        attention, ff, prefix = layer.self_attn, layer.feed_forward, names["layer"].format(i=i)
        for part in ("weight", "bias"):
            q, k, v = getattr(attention.qkv_proj, part).chunk(3)  # each (D, ...)
            modules = {"q": q, "k": k, "v": v, "o": getattr(attention.out_proj, part)}
            modules |= {"fc1": getattr(ff.linear1, part), "fc2": getattr(ff.linear2, part)}
            for short, tensor in modules.items():
                state[f"{prefix}{names[short]}.{part}"] = tensor
            state[f"{prefix}layernorm_before.{part}"] = getattr(layer.norm1, part)
            state[f"{prefix}layernorm_after.{part}"] = getattr(layer.norm2, part)
    return state


@pytest.mark.parametrize("channels", [1, 3])
def test_vit_equals_hugging_faces_vit_with_the_same_weights(channels):
    """Equations 1-4 of the ViT paper (patches, CLS token, positions, pre-LN encoder, final
    LayerNorm, head on the CLS output) against ``transformers``' ViT: logits and every
    layer's attention maps."""
    transformers = transformers_or_skip()
    torch.manual_seed(0)
    ours = small_vit(in_channels=channels, dropout=0.0, num_classes=7)
    with torch.no_grad():  # no parameter left at 0 or 1 (the CLS token starts at zero)
        for p in ours.parameters():
            p.normal_(0, 0.5)
    config = transformers.ViTConfig(
        image_size=8, patch_size=2, num_channels=channels, hidden_size=16,
        num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, hidden_act="gelu",
        layer_norm_eps=ours.config.block_spec().layer_norm_eps, num_labels=7,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, attn_implementation="eager",
    )  # fmt: skip
    reference = transformers.ViTForImageClassification(config)
    naming = "new" if "vit.layers.0.attention.q_proj.weight" in reference.state_dict() else "old"
    reference.load_state_dict(hf_vit_state(ours, HF_VIT_LAYER_NAMES[naming]))
    reference.eval()
    images = torch.rand(3, channels, 8, 8)
    with torch.no_grad():
        expected = reference(pixel_values=images, output_attentions=True)
        torch.testing.assert_close(ours(images), expected.logits, rtol=1e-5, atol=1e-5)
        for mine, theirs in zip(ours.attention_maps(images), expected.attentions, strict=True):
            torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)


def test_vit_rejects_image_size_not_divisible_by_patch_size():
    with pytest.raises(ValueError, match="image size 8 is not divisible by the patch size 3"):
        ViTConfig(image_size=8, patch_size=3)


def test_rollout_equals_a_hand_computation():
    # one head, two tokens, two layers
    layer1 = torch.tensor([[[1.0, 0.0], [0.5, 0.5]]])
    layer2 = torch.tensor([[[0.5, 0.5], [0.0, 1.0]]])
    # A_l = (W_l + I) / 2:  A_1 = [[1, 0], [.25, .75]],  A_2 = [[.75, .25], [0, 1]]
    # R = A_2 @ A_1 = [[.75 + .0625, .1875], [.25, .75]]
    expected = torch.tensor([[0.8125, 0.1875], [0.25, 0.75]])
    torch.testing.assert_close(attention_rollout([layer1, layer2]), expected)


def test_rollout_averages_the_heads_and_one_layer_is_half_attention_half_identity():
    head1 = torch.tensor([[0.2, 0.8], [0.6, 0.4]])
    head2 = torch.tensor([[0.4, 0.6], [0.0, 1.0]])
    mean = (head1 + head2) / 2
    rollout = attention_rollout([torch.stack([head1, head2])])
    torch.testing.assert_close(rollout, 0.5 * mean + 0.5 * torch.eye(2))


def test_rollout_rows_sum_to_one_for_batches_and_real_models():
    weights = [torch.rand(4, 3, 6, 6).softmax(-1) for _ in range(3)]  # (B, H, T, T) per layer
    rollout = attention_rollout(weights)
    assert rollout.shape == (4, 6, 6)
    torch.testing.assert_close(rollout.sum(-1), torch.ones(4, 6))
    assert (rollout >= 0).all()
    # batch entries are independent: the rollout of one image alone is the same
    torch.testing.assert_close(attention_rollout([w[1] for w in weights]), rollout[1])

    model = small_vit(num_layers=3)
    with torch.no_grad():
        rollout = attention_rollout(model.attention_maps(torch.rand(2, 1, 8, 8)))
    assert rollout.shape == (2, 17, 17)
    torch.testing.assert_close(rollout.sum(-1), torch.ones(2, 17))


def test_rollout_rejects_bad_maps():
    with pytest.raises(ValueError, match="at least one layer"):
        attention_rollout([])
    with pytest.raises(ValueError, match=r"\(\.\.\., H, 4, 4\); got \(2, 4, 3\)"):
        attention_rollout([torch.rand(2, 4, 4), torch.rand(2, 4, 3)])


def test_upsampling_repeats_each_patch_value_over_its_pixels():
    heat = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    expected = torch.tensor(
        [[1.0, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    )  # each value covers its 2x2 patch
    torch.testing.assert_close(upsample_to_image(heat, (4, 4)), expected)


def test_overlay_figure_is_a_png(tmp_path):
    path = plot_rollout_overlay(
        torch.rand(8, 8),
        torch.rand(4, 4),
        tmp_path / "sub" / "rollout.png",
        title="a digit",
        layer_heats=[torch.rand(4, 4), torch.rand(4, 4)],
    )
    assert path.read_bytes()[:8] == PNG_MAGIC

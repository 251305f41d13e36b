"""ViT (Dosovitskiy et al. 2021) and attention rollout (Abnar & Zuidema 2020)."""

import pytest
import torch

from attnlab.models import MODELS, ViT, ViTConfig
from attnlab.viz import attention_rollout, plot_rollout_overlay, upsample_to_image

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


def test_vit_input_is_cls_token_then_patches_plus_positions():
    """Equation 1 of the paper: z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos."""
    model = small_vit()
    with torch.no_grad():
        model.cls_token.normal_()
    images = torch.rand(3, 1, 8, 8)
    patches = model.patch_embed(images)  # (3, 16, 16)
    cls = model.cls_token.expand(3, 1, 16)
    expected = torch.cat([cls, patches], dim=1) + model.positions.embedding.weight[:17]
    torch.testing.assert_close(model._encode_input(images), expected)
    hidden = model.encoder(expected)
    torch.testing.assert_close(model(images), model.head(hidden[:, 0]))


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

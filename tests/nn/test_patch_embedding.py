"""PatchEmbedding (ViT section 3.1): shapes, patch order, and the strided-convolution twin."""

import pytest
import torch
from torch import nn

from attnlab.nn import PatchEmbedding


def hand_built_patches(images: torch.Tensor, P: int) -> torch.Tensor:
    """Cut ``(B, C, H, W)`` into P x P squares one by one, row by row; flatten (row, col, chan)."""
    B, C, H, W = images.shape
    patches = [
        images[:, :, top : top + P, left : left + P].permute(0, 2, 3, 1).reshape(B, P * P * C)
        for top in range(0, H, P)
        for left in range(0, W, P)
    ]
    return torch.stack(patches, dim=1)  # (B, N, P*P*C)


@pytest.mark.parametrize(
    "image_size, patch_size, channels, d_model, num_patches",
    [
        (8, 2, 1, 16, 16),
        (8, 4, 1, 8, 4),
        (8, 8, 1, 4, 1),
        (8, 1, 1, 4, 64),
        ((6, 10), 2, 3, 12, 15),
        (28, 7, 1, 16, 16),
        (32, 16, 3, 8, 4),
    ],
)
def test_shapes_and_equality_with_hand_built_patches(
    image_size, patch_size, channels, d_model, num_patches
):
    embed = PatchEmbedding(image_size, patch_size, channels, d_model)
    H, W = (image_size, image_size) if isinstance(image_size, int) else image_size
    images = torch.randn(3, channels, H, W)
    assert embed.num_patches == num_patches == (H // patch_size) * (W // patch_size)
    assert embed.grid_size == (H // patch_size, W // patch_size)
    patches = hand_built_patches(images, patch_size)
    torch.testing.assert_close(embed.patches(images), patches, rtol=0, atol=0)
    out = embed(images)
    assert out.shape == (3, num_patches, d_model)
    torch.testing.assert_close(out, patches @ embed.projection.weight.T + embed.projection.bias)


def test_patch_order_by_hand():
    image = torch.arange(16.0).reshape(1, 1, 4, 4)  # rows 0-3, 4-7, 8-11, 12-15
    patches = PatchEmbedding(4, 2, 1, 2).patches(image)[0]
    expected = torch.tensor(
        [[0.0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]
    )  # row-major over the 2x2 grid, each patch row-major
    torch.testing.assert_close(patches, expected)

    two_channels = torch.stack([torch.arange(4.0), 10 + torch.arange(4.0)]).reshape(1, 2, 2, 2)
    # one 2x2 patch: (row, column, channel) order interleaves the channels pixel by pixel
    torch.testing.assert_close(
        PatchEmbedding(2, 2, 2, 2).patches(two_channels)[0],
        torch.tensor([[0.0, 10, 1, 11, 2, 12, 3, 13]]),
    )


@pytest.mark.parametrize("image_size, patch_size, channels", [(8, 2, 1), (12, 4, 3), (6, 3, 2)])
def test_equals_a_strided_convolution(image_size, patch_size, channels):
    """The ViT paper's linear projection of flattened patches is a conv with stride = kernel."""
    d_model, P = 10, patch_size
    embed = PatchEmbedding(image_size, P, channels, d_model)
    conv = nn.Conv2d(channels, d_model, kernel_size=P, stride=P)
    with torch.no_grad():
        # projection columns are ordered (row, col, channel); conv weights (out, channel, row, col)
        conv.weight.copy_(embed.projection.weight.view(d_model, P, P, channels).permute(0, 3, 1, 2))
        conv.bias.copy_(embed.projection.bias)
    images = torch.randn(2, channels, image_size, image_size)
    reference = conv(images).flatten(2).transpose(1, 2)  # (B, N, d_model)
    torch.testing.assert_close(embed(images), reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "image_size, patch_size, message",
    [
        (8, 3, "image size 8x8 is not divisible by the patch size 3"),
        ((6, 10), 4, "image size 6x10 is not divisible by the patch size 4"),
        (28, 5, "image size 28x28 is not divisible by the patch size 5"),
    ],
)
def test_image_size_not_divisible_by_patch_size(image_size, patch_size, message):
    with pytest.raises(ValueError, match=message):
        PatchEmbedding(image_size, patch_size, 1, 8)


@pytest.mark.parametrize(
    "args, message",
    [
        ((8, 0, 1, 8), "patch_size must be a whole number >= 1; got 0"),
        ((-8, 2, 1, 8), "image height must be a whole number >= 1; got -8"),  # was 16 patches
        ((8, 2, 0, 8), "in_channels must be a whole number >= 1; got 0"),  # was built
        ((8, 2, 1, 0), "d_model must be a whole number >= 1; got 0"),  # was built
        ((8, 2.0, 1, 8), "patch_size must be a whole number >= 1; got 2.0"),  # torch's TypeError
        # the allocator's RuntimeError (64 TB, 64 TB) before
        ((8, 2, 1, 10**12), "d_model must be at most 65,536; got 1,000,000,000,000"),
        ((8, 2, 10**12, 8), r"patch_size\*\*2 \* in_channels .* at most 262,144; got 4,0"),
    ],
)
def test_patch_embedding_refuses_sizes_it_cannot_build(args, message):
    with pytest.raises(ValueError, match=message):
        PatchEmbedding(*args)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((1, 8, 8), r"images must have shape \(B, 1, 8, 8\); got \(1, 8, 8\)"),
        ((2, 1, 6, 8), r"images must have shape \(B, 1, 8, 8\); got \(2, 1, 6, 8\)"),
        ((2, 3, 8, 8), r"images must have shape \(B, 1, 8, 8\); got \(2, 3, 8, 8\)"),
        ((1, 1, 1, 8, 8), r"got \(1, 1, 1, 8, 8\)"),
    ],
)
def test_wrong_input_shape_names_both_shapes(shape, message):
    with pytest.raises(ValueError, match=message):
        PatchEmbedding(8, 2, 1, 8)(torch.zeros(shape))


def test_8_bit_images_are_named_with_the_conversion():
    # "mat1 and mat2 must have the same dtype, but got Byte and Float" before
    with pytest.raises(ValueError, match=r"images must be a float tensor .*got dtype torch.uint8"):
        PatchEmbedding(8, 4, 1, 16)(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))


def test_images_that_are_not_a_tensor_are_named():
    # AttributeError "'list' object has no attribute 'dim'" before
    with pytest.raises(TypeError, match="images must be a tensor .*got list"):
        PatchEmbedding(8, 4, 1, 16)([[0.0] * 8] * 8)


def test_float64_images_are_named_with_the_conversion():
    # "mat1 and mat2 must have the same dtype, but got Double and Float" before (NumPy's default)
    embedding = PatchEmbedding(8, 4, 1, 16)
    with pytest.raises(ValueError, match=r"images must have the dtype .*\(torch.float32\); got "):
        embedding(torch.zeros(2, 1, 8, 8, dtype=torch.float64))
    assert embedding.double()(torch.zeros(2, 1, 8, 8, dtype=torch.float64)).shape == (2, 4, 16)

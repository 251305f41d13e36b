"""Handwritten digits with a Vision Transformer (ViT, Dosovitskiy et al. 2021).

Data: the 1,797 handwritten digits that scikit-learn ships (8x8 pixels, intensities 0..16, no
download), split into train / val / test, stratified by digit and seeded (``--data-seed``).
Model: a :class:`~attnlab.models.ViT` that cuts each image into ``--patch-size`` squares,
embeds them with a learned CLS token and learned positions, and classifies from the CLS output.
Training images are rotated, zoomed and moved a little at random (``--rotation``, ``--scale``,
``--shift``), and the loss uses label smoothing (``--label-smoothing``, paper section 5.4).

Predicting from an image file (``attnlab predict RUN digit.png``), intensity convention:
the model reads **bright ink on a dark background** with values in [0, 1], as in the training
data (sklearn's 0..16 divided by 16). Any image Pillow can read is turned into that form:

1. converted to grayscale (transparent pixels count as white paper);
2. inverted if its border is brighter than its inside (dark ink on white paper);
3. stretched so that the darkest pixel is 0 and the brightest 1;
4. cropped to the bounding box of its ink (pixels >= 0.25) and centred in a square, as the
   training digits were size-normalised to fill their box;
5. resized to 8x8 by averaging the pixels of each cell (antialiased, Pillow's BOX filter,
   which is how the 8x8 digits were made from 32x32 bitmaps), then scaled so that the
   brightest pixel is 1 again.

So a black digit on white paper and a white digit on black both work; the digit should be
the only thing in the picture. ``attnlab attention RUN digit.png --out a.png`` overlays the
attention rollout of the CLS token (Abnar & Zuidema 2020) on the 8x8 image the model saw.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from attnlab.configs.tasks import CARDS, IMAGE_SIZE, DigitsConfig
from attnlab.errors import InputError
from attnlab.models import ViT, ViTConfig
from attnlab.tasks.base import AttentionView, Splits, Task
from attnlab.tasks.common import CrossEntropyTally, model_device, top_k
from attnlab.tasks.registry import register

MAX_INTENSITY = 16.0  # ... with intensities 0..16
INK_THRESHOLD = 0.25  # a pixel at least this bright (after stretching to [0, 1]) is ink
TOP_K = 3


def load_digits_splits(config: DigitsConfig) -> Splits:
    """scikit-learn's digits as ``(image (1, 8, 8) in [0, 1], label)`` pairs, split stratified."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32) / MAX_INTENSITY  # (1797, 8, 8)
    images = images[:, None]  # (1797, 1, 8, 8): one channel
    labels = torch.tensor(digits.target, dtype=torch.long)  # (1797,)
    index = np.arange(len(labels))
    rest, test = train_test_split(
        index,
        test_size=config.test_fraction,
        stratify=digits.target,
        random_state=config.data_seed,
    )
    train, val = train_test_split(
        rest,
        test_size=config.val_fraction / (1 - config.test_fraction),
        stratify=digits.target[rest],
        random_state=config.data_seed,
    )
    return Splits(*(TensorDataset(images[part], labels[part]) for part in (train, val, test)))


def random_affine(images: Tensor, rotation: float, scale: float, shift: float) -> Tensor:
    """Augmentation: turn, zoom and move each image by its own random amount.

    Each image is rotated by up to ``rotation`` degrees either way, zoomed by a factor in
    ``1 - scale .. 1 + scale`` and moved by up to ``shift`` pixels along each axis, all drawn
    uniformly; bilinear resampling, background (0) where the image moved out of the frame.
    Input and output: ``(B, C, H, W)``. Draws from the global torch RNG, which training
    checkpoints save and restore.
    """
    if rotation == scale == shift == 0:
        return images
    B, _, H, W = images.shape

    def uniform() -> Tensor:  # (B,) in [-1, 1)
        return torch.rand(B, device=images.device) * 2 - 1

    angle = uniform() * math.radians(rotation)  # (B,)
    zoom = 1 + uniform() * scale  # (B,)
    # affine_grid maps each output pixel to where it samples the input, in units where the
    # image spans -1..1: a pixel is 2 / W wide. Sampling at (x / zoom) rotated, then moved,
    # shows the image zoomed by `zoom`.
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom  # each (B,)
    move_x, move_y = uniform() * shift * 2 / W, uniform() * shift * 2 / H  # each (B,)
    theta = torch.stack(
        [torch.stack([cos, -sin, move_x], dim=-1), torch.stack([sin, cos, move_y], dim=-1)],
        dim=1,
    )  # (B, 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(images, grid, mode="bilinear", align_corners=False)  # (B, C, H, W)


# -- reading a user's image ------------------------------------------------------------------
def read_grayscale(path: Path) -> np.ndarray:
    """The image at ``path`` as a float32 grayscale array ``(H, W)``; InputError if unusable."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not path.exists():
        raise InputError(f"cannot read {path}: no such file")
    if path.is_dir():
        raise InputError(f"{path} is a directory, not an image file")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is an empty file (0 bytes), not an image")
    try:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
    except UnidentifiedImageError as e:
        raise InputError(
            f"{path} is not an image file that Pillow can read (PNG, JPEG, BMP, GIF, ...)"
        ) from e
    except Image.DecompressionBombError as e:
        raise InputError(f"{path} is too large an image to read safely") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # truncated, unreadable, ...
        raise InputError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from e
    if "A" in image.getbands() or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    return np.asarray(image.convert("F"), dtype=np.float32)  # (H, W)


def prepare_image(pixels: np.ndarray, size: int, name: str) -> Tensor:
    """Grayscale pixels ``(H, W)`` -> the model's input ``(size, size)``, bright ink on dark.

    Follows the intensity convention of the module docstring (steps 2-5); ``name`` names the
    image in the InputError raised for a blank one.
    """
    from PIL import Image

    if pixels.max() == pixels.min():
        raise InputError(f"{name} is blank (every pixel has the same value): no digit to read")
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if pixels.shape[0] > 2 and pixels.shape[1] > 2 and border.mean() > pixels[1:-1, 1:-1].mean():
        pixels = pixels.max() - pixels  # dark ink on light paper -> bright ink on dark
    pixels = (pixels - pixels.min()) / (pixels.max() - pixels.min())  # darkest 0, brightest 1
    ink_rows = np.flatnonzero((pixels >= INK_THRESHOLD).any(axis=1))
    ink_cols = np.flatnonzero((pixels >= INK_THRESHOLD).any(axis=0))
    pixels = pixels[ink_rows[0] : ink_rows[-1] + 1, ink_cols[0] : ink_cols[-1] + 1]  # (h, w)
    h, w = pixels.shape
    side = max(h, w)
    square = np.zeros((side, side), dtype=np.float32)  # (side, side): background
    top, left = (side - h) // 2, (side - w) // 2
    square[top : top + h, left : left + w] = pixels
    resized = Image.fromarray(square).resize((size, size), Image.Resampling.BOX)
    small = np.asarray(resized, dtype=np.float32)  # (size, size)
    return torch.from_numpy(small / small.max())  # (size, size): the brightest pixel is 1


def load_image(text: str, size: int) -> tuple[str, Tensor]:
    """A user's image path -> ``(the path as given, model input (size, size))``."""
    name = text.strip()
    if not name:
        raise InputError("empty input: give the path of an image file, e.g. digit.png")
    return name, prepare_image(read_grayscale(Path(name)), size, name)


def top3(probs: Tensor) -> list[dict[str, Any]]:
    """The three most probable digits of one distribution ``(10,)``, best first."""
    return top_k(probs, list(range(probs.numel())), TOP_K, "digit")


@register
class DigitsTask(Task):
    """Classify 8x8 handwritten digits with a Vision Transformer."""

    card = CARDS["digits"]

    def splits(self) -> Splits:
        """scikit-learn's 8x8 digits, split stratified into train / val / test
        (:func:`load_digits_splits`)."""
        return load_digits_splits(self.config)

    def build_model(self) -> nn.Module:
        """A :class:`~attnlab.models.ViT` for one-channel 8x8 images and 10 classes, sized by the
        config."""
        c = self.config
        return ViT(
            ViTConfig(
                image_size=IMAGE_SIZE,
                patch_size=c.patch_size,
                in_channels=1,
                num_classes=10,
                d_model=c.size.d_model,
                num_heads=c.size.heads,
                num_layers=c.size.layers,
                d_ff=c.size.d_ff,
                dropout=c.size.dropout,
            )
        )

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        """Label-smoothed cross-entropy of the digit logits ``(B, 10)`` of randomly rotated, scaled
        and shifted images."""
        images, labels = batch
        c = self.config
        images = random_affine(images, c.rotation, c.scale, c.shift)  # (B, 1, 8, 8)
        return F.cross_entropy(model(images), labels, label_smoothing=c.label_smoothing)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Any) -> dict[str, float]:
        """Mean cross-entropy and accuracy of the predicted digits."""
        tally = CrossEntropyTally()
        for images, labels in batches:
            tally.add(model(images), labels)  # logits (B, 10)
        return {"loss": tally.loss, "accuracy": tally.accuracy}

    # -- users' inputs ------------------------------------------------------------------
    @staticmethod
    def _read(model: nn.Module, text: str) -> tuple[str, Tensor, Tensor]:
        """The image named by ``text``: its name, pixels ``(S, S)``, batch ``(1, 1, S, S)``.

        ``S`` is the model's image size; the batch is on the model's device.
        """
        name, image = load_image(text, cast(ViT, model).config.image_size)  # (S, S)
        device = model_device(model)
        return name, image, image[None, None].to(device)  # (1, 1, S, S)

    def predictions(self, model: nn.Module, texts: list[str]) -> Iterator[dict[str, Any]]:
        """For each image path: the predicted digit and the three most probable, with their
        probabilities."""
        size = cast(ViT, model).config.image_size
        images = [load_image(text, size) for text in texts]  # (name, (S, S)): all read first
        return (self._prediction(model, name, image) for name, image in images)

    @torch.no_grad()
    def _prediction(self, model: nn.Module, name: str, image: Tensor) -> dict[str, Any]:
        """The prediction for one image ``(S, S)`` read from ``name``."""
        batch = image[None, None].to(model_device(model))  # (1, 1, S, S)
        top = top3(model(batch).softmax(-1)[0].cpu())  # of (10,)
        return {"image": name, "prediction": top[0]["digit"], "top3": top}

    def format_prediction(self, prediction: dict[str, Any]) -> str:
        """``path -> digit (probability)`` for the top three, and the target of a test image."""
        top = "  ".join(f"{t['digit']} ({t['probability']:.3f})" for t in prediction["top3"])
        line = f"{prediction['image']}  ->  {top}"
        if "target" in prediction:  # a test example (see samples)
            line += f"   target {prediction['target']}"
        return line

    @torch.no_grad()
    def attention(self, model: nn.Module, text: str) -> AttentionView:
        """Each layer's attention ``(H, 1 + N, 1 + N)`` over the CLS token and the patches of one
        image file."""
        name, _, batch = self._read(model, text)
        vit = cast(ViT, model)  # the class build_model builds
        maps = vit.attention_maps(batch)  # each (1, H, 1 + N, 1 + N)
        rows, cols = vit.patch_embed.grid_size
        labels = ["CLS"] + [f"r{r}c{c}" for r in range(rows) for c in range(cols)]
        return AttentionView(
            maps=[m[0].cpu() for m in maps],  # each (H, 1 + N, 1 + N)
            query_labels=labels,
            key_labels=labels,
            title=f"digits: {name} (patches: grid row r, column c)",
        )

    @torch.no_grad()
    def plot_attention(self, model: nn.Module, text: str, path: Path) -> Path:
        """The image, the CLS token's attention rollout over the patches, and each layer's."""
        from attnlab.viz import attention_rollout, plot_rollout_overlay

        name, image, batch = self._read(model, text)
        vit = cast(ViT, model)  # the class build_model builds
        maps = [m.cpu() for m in vit.attention_maps(batch)]  # each (1, H, 1 + N, 1 + N)
        grid = vit.patch_embed.grid_size
        rollout = attention_rollout(maps)[0]  # (1 + N, 1 + N)
        heat = rollout[0, 1:].reshape(grid)  # (rows, cols): CLS row, over the patches
        layer_heats = [m[0].mean(0)[0, 1:].reshape(grid) for m in maps]  # each (rows, cols)
        top = top3(model(batch).softmax(-1)[0].cpu())
        title = f"{name}: predicted {top[0]['digit']} (p = {top[0]['probability']:.3f})"
        return plot_rollout_overlay(image, heat, path, title, layer_heats)

    @torch.no_grad()
    def samples(self, model: nn.Module, dataset: Dataset, n: int) -> list[dict[str, Any]]:
        """The first ``n`` images of ``dataset`` with their top three digits and targets."""
        device = model_device(model)
        out = []
        for i in range(min(n, len(cast(Sized, dataset)))):  # torch's Dataset declares no len
            image, label = dataset[i]  # (1, 8, 8), ()
            probs = model(image[None].to(device)).softmax(-1)[0].cpu()  # (10,)
            top = top3(probs)
            out.append(
                {
                    "image": f"test image {i}",
                    "prediction": top[0]["digit"],
                    "top3": top,
                    "target": int(label),
                }
            )
        return out

"""The digits task: data split, augmentation, reading image files, and the CLI end to end."""

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

import attnlab
from attnlab.cli import main
from attnlab.errors import InputError
from attnlab.models import ViT
from attnlab.tasks.digits import (
    DigitsConfig,
    DigitsTask,
    load_image,
    prepare_image,
    random_affine,
)
from attnlab.viz import attention_rollout

from ..cli_helpers import assert_one_line_error, run_cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# A short run: a small ViT, no augmentation, 10 epochs (about 10 seconds on 2 CPU cores).
SHORT_FLAGS = {"epochs": 10, "lr": 5e-3, "d-model": 32, "heads": 2, "layers": 1, "d-ff": 64}
SHORT_FLAGS |= {"rotation": 0, "scale": 0, "shift": 0}
SHORT = [arg for flag, value in SHORT_FLAGS.items() for arg in (f"--{flag}", str(value))]


def save_png(pixels: np.ndarray, path, upscale: int = 8) -> str:
    """Save ``pixels`` in [0, 1] as an 8-bit grayscale PNG, each pixel an upscale^2 block."""
    big = np.kron(pixels, np.ones((upscale, upscale)))
    Image.fromarray((big * 255).round().astype(np.uint8)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def splits():
    return DigitsTask(DigitsConfig()).splits()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits") / "run"
    assert main(["train", "digits", "--out", str(out), "--no-progress", *SHORT]) == 0
    return out


# -- data --------------------------------------------------------------------------------------
def test_split_is_stratified_seeded_and_complete(splits):
    sizes = [len(splits.train), len(splits.val), len(splits.test)]
    assert sum(sizes) == 1797 and sizes[1:] == [180, 360]
    image, label = splits.train[0]
    assert image.shape == (1, 8, 8) and image.min() >= 0 and image.max() <= 1
    assert label.dtype == torch.long
    test_counts = Counter(splits.test.tensors[1].tolist())
    assert sorted(test_counts) == list(range(10))
    assert all(35 <= n <= 37 for n in test_counts.values())  # about 1/10 of 360 each
    again = DigitsTask(DigitsConfig()).splits()
    assert torch.equal(again.test.tensors[0], splits.test.tensors[0])
    other = DigitsTask(DigitsConfig(data_seed=1)).splits()
    assert not torch.equal(other.test.tensors[0], splits.test.tensors[0])
    # the three splits together are the whole data set, each image exactly once
    digits = load_digits()
    full = np.hstack([digits.images.reshape(-1, 64) / 16, digits.target[:, None]])
    parts = [
        np.hstack([s.tensors[0].flatten(1).double().numpy(), s.tensors[1][:, None].numpy()])
        for s in (splits.train, splits.val, splits.test)
    ]
    assert sorted(map(tuple, np.vstack(parts).tolist())) == sorted(map(tuple, full.tolist()))


def test_augmentation_off_is_the_identity_and_on_keeps_shape_and_range(splits):
    images = splits.train.tensors[0][:16]
    assert random_affine(images, 0.0, 0.0, 0.0) is images
    moved = random_affine(images, 10.0, 0.1, 1.0)
    assert moved.shape == images.shape
    assert moved.min() >= 0 and moved.max() <= 1 and not torch.equal(moved, images)


def test_a_one_pixel_move_without_turn_or_zoom_shifts_the_image():
    image = torch.zeros(1, 1, 8, 8)
    image[0, 0, 3, 4] = 1.0
    torch.manual_seed(0)
    moved = random_affine(image.expand(200, 1, 8, 8), 0.0, 0.0, 1.0)
    # the ink stays a unit of mass spread bilinearly within one pixel of where it was
    torch.testing.assert_close(moved.sum((1, 2, 3)), torch.ones(200))
    assert moved[:, 0, 2:5, 3:6].sum((1, 2)).allclose(torch.ones(200))


def test_bad_config_is_a_value_error():
    with pytest.raises(ValueError, match="patch_size must divide the image size 8; got 3"):
        DigitsConfig(patch_size=3)
    with pytest.raises(ValueError, match="rotation must not be negative"):
        DigitsConfig(rotation=-1.0)


# -- reading image files -----------------------------------------------------------------------
def test_dark_ink_on_white_paper_and_bright_ink_on_black_give_the_same_input(splits, tmp_path):
    digit = splits.test.tensors[0][0, 0].numpy()  # (8, 8) in [0, 1]
    _, bright = load_image(save_png(digit, tmp_path / "bright.png"), 8)
    _, dark = load_image(save_png(1 - digit, tmp_path / "dark.png"), 8)
    torch.testing.assert_close(bright, dark)
    assert bright.shape == (8, 8) and bright.min() == 0 and bright.max() == 1


def test_an_image_at_model_size_that_fills_its_box_comes_back_unchanged(tmp_path):
    digit = np.zeros((8, 8))
    digit[0:8, 1:7] = np.linspace(0.0, 1.0, 48).reshape(8, 6)  # ink from row 0 to 7
    digit[0, 1:3] = 0.5  # ink reaches the border: still bright on dark
    _, image = load_image(save_png(digit, tmp_path / "d.png", upscale=1), 8)
    torch.testing.assert_close(image, torch.from_numpy(digit).float(), atol=1 / 255, rtol=0)


def test_a_small_digit_on_a_big_canvas_is_cropped_and_centred(splits):
    digit = splits.test.tensors[0][3, 0].numpy()
    reference = prepare_image(np.kron(digit, np.ones((4, 4))), 8, "ref")
    canvas = np.zeros((200, 150), dtype=np.float32)  # (H, W), not square
    canvas[120:152, 20:52] = np.kron(digit, np.ones((4, 4)))  # a 32x32 digit off centre
    torch.testing.assert_close(prepare_image(canvas, 8, "canvas"), reference)


def test_transparent_background_counts_as_white_paper(splits, tmp_path):
    digit = splits.test.tensors[0][5, 0].numpy()
    big = np.kron(digit, np.ones((8, 8)))
    rgba = np.zeros((64, 64, 4), dtype=np.uint8)  # black everywhere, transparent off the ink
    rgba[..., 3] = (big * 255).round().astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "ink.png")
    _, from_rgba = load_image(str(tmp_path / "ink.png"), 8)
    _, reference = load_image(save_png(digit, tmp_path / "ref.png"), 8)
    torch.testing.assert_close(from_rgba, reference, atol=2 / 255, rtol=0)


def test_a_solid_block_of_ink_gives_a_finite_image():
    block = np.zeros((40, 40))
    block[10:20, 10:30] = 1.0  # the crop is all ink
    image = prepare_image(block, 8, "block")
    assert torch.isfinite(image).all() and image.max() == 1


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.png", "cannot read {d}/missing.png: no such file"),
        (lambda d: d, "{d} is a directory, not an image file"),
        (lambda d: d / "empty.png", "{d}/empty.png is an empty file (0 bytes), not an image"),
        (lambda d: d / "notes.png", "{d}/notes.png is not an image file that Pillow can read"),
        (lambda d: d / "truncated.png", "cannot read {d}/truncated.png"),
        (lambda d: d / "blank.png", "{d}/blank.png is blank"),
    ],
)
def test_unusable_files_are_input_errors_naming_the_file(tmp_path, make, message):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("not an image\n")
    save_png(np.full((8, 8), 0.5), tmp_path / "blank.png")
    full = save_png(np.eye(8), tmp_path / "full.png")
    (tmp_path / "truncated.png").write_bytes(Path(full).read_bytes()[:60])
    with pytest.raises(InputError, match=re.escape(message.format(d=tmp_path))):
        load_image(str(make(tmp_path)), 8)
    with pytest.raises(InputError, match="empty input"):
        load_image("  ", 8)


# -- the command line, end to end --------------------------------------------------------------
def test_short_training_run_beats_chance_by_far(trained_run, splits):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["monitor"] == "accuracy"
    accuracy = metrics["test"]["metrics"]["accuracy"]
    assert accuracy > 0.6  # chance: 0.1
    sample = metrics["test"]["samples"][0]
    assert sample["prediction"] == sample["top3"][0]["digit"] and 0 <= sample["target"] <= 9
    # the saved run reloads as the same ViT: it scores the same on the test split
    model = attnlab.load(trained_run)
    assert isinstance(model, ViT)
    images, labels = splits.test.tensors
    with torch.no_grad():
        reloaded = (model(images).argmax(-1) == labels).float().mean().item()
    assert reloaded == pytest.approx(accuracy)


def test_predict_reads_image_files_and_prints_the_top_3(capsys, trained_run, splits, tmp_path):
    images, labels = splits.test.tensors
    paths, truth = [], []
    for i in range(10):
        pixels = images[i, 0].numpy()
        if i % 2:  # every other one as dark ink on white paper
            pixels = 1 - pixels
        paths.append(save_png(pixels, tmp_path / f"digit{i}.png"))
        truth.append(int(labels[i]))
    code, out, _ = run_cli(capsys, "predict", str(trained_run), *paths, "--json")
    assert code == 0
    predictions = json.loads(out)
    assert [p["image"] for p in predictions] == paths
    for p in predictions:
        probs = [t["probability"] for t in p["top3"]]
        assert len(p["top3"]) == 3 and probs == sorted(probs, reverse=True) and sum(probs) <= 1
        assert p["prediction"] == p["top3"][0]["digit"]
    right = sum(p["prediction"] == t for p, t in zip(predictions, truth, strict=True))
    assert right >= 8, (right, truth, [p["prediction"] for p in predictions])

    code, out, _ = run_cli(capsys, "predict", str(trained_run), paths[0])
    assert code == 0
    assert re.fullmatch(
        rf"{re.escape(paths[0])}  ->  (\d \(\d\.\d{{3}}\)  ){{2}}\d \(\d\.\d{{3}}\)\n", out
    )


def test_attention_writes_the_rollout_overlay(capsys, trained_run, splits, tmp_path):
    path = save_png(splits.test.tensors[0][0, 0].numpy(), tmp_path / "digit.png")
    out_png = tmp_path / "attention.png"
    code, out, _ = run_cli(capsys, "attention", str(trained_run), path, "--out", str(out_png))
    assert code == 0 and out.strip() == f"attention: {out_png}"
    assert out_png.read_bytes()[:8] == PNG_MAGIC


def test_attention_view_has_one_map_per_layer_over_cls_and_patches(trained_run, splits, tmp_path):
    run = attnlab.load_run(trained_run)
    path = save_png(splits.test.tensors[0][0, 0].numpy(), tmp_path / "digit.png")
    view = run.task.attention(run.model, path)
    N = run.model.config.num_patches
    assert view.query_labels == view.key_labels and view.key_labels[0] == "CLS"
    assert len(view.key_labels) == 1 + N
    assert [m.shape for m in view.maps] == [(run.model.config.num_heads, 1 + N, 1 + N)]
    torch.testing.assert_close(attention_rollout(view.maps).sum(-1), torch.ones(1 + N))


def test_eval_reports_accuracy_and_samples(capsys, trained_run):
    code, out, _ = run_cli(capsys, "eval", str(trained_run))
    assert code == 0 and out.startswith("test set: loss ")
    assert re.search(r"test image 0  ->  \d \(\d\.\d{3}\).*   target \d", out)


@pytest.mark.parametrize(
    "args, message",
    [
        (["predict", "{run}", "{tmp}/notes.txt"], "{tmp}/notes.txt is not an image file"),
        (["predict", "{run}", "{tmp}/empty.png"], "{tmp}/empty.png is an empty file (0 bytes)"),
        (["predict", "{run}", "{tmp}/missing.png"], "cannot read {tmp}/missing.png: no such file"),
        (["predict", "{run}", "{tmp}"], "{tmp} is a directory, not an image file"),
        (["attention", "{run}", "{tmp}/notes.txt", "--out", "{tmp}/a.png"], "is not an image"),
        (["train", "digits", "--patch-size", "3"], "patch_size must divide the image size 8"),
        (["train", "digits", "--scale", "1.5"], "scale must be below 1; got 1.5"),
    ],
)
def test_bad_input_is_one_clear_line_and_status_2(capsys, trained_run, tmp_path, args, message):
    (tmp_path / "notes.txt").write_text("three\n")
    (tmp_path / "empty.png").write_bytes(b"")
    args = [a.format(run=trained_run, tmp=tmp_path) for a in args]
    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, message.format(tmp=tmp_path))

"""Segmentation data: CamVid and NYUv2 folders, the procedural shapes, joint crop and flip."""

import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from dfad_tf import data
from dfad_tf.data import segmentation, shapes
from dfad_tf.data.tfds_sources import DatasetUnavailableError

EVAL_SIZE = (256, 341)


def _write(folder, name, array):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(folder / name)


def _blocks(height, width, labels):
    """A mask of vertical stripes, one per label, so nearest-neighbour resizing keeps every label."""
    return np.repeat(np.array(labels, np.uint8), -(-width // len(labels)))[None, :width].repeat(height, 0)


def _camvid(root, masks_by_name, size=(30, 40)):
    rng = np.random.default_rng(0)
    for name, labels in masks_by_name.items():
        _write(root / "test", name, rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        _write(root / "testannot", name, _blocks(*size, labels))
    return root


def test_camvid_is_resized_to_256x341_with_void_ignored(tmp_path):
    root = _camvid(tmp_path, {"a.png": [0, 3, 10, 11], "b.png": [5, 11]})
    images, masks = map(np.stack, zip(*data.load("camvid", "test", data_dir=str(root)).as_numpy_iterator()))
    assert images.shape == (2, *EVAL_SIZE, 3) and images.dtype == np.float32
    assert masks.shape == (2, *EVAL_SIZE) and masks.dtype == np.int32
    assert set(np.unique(masks[0])) == {0, 3, 10, 255} and set(np.unique(masks[1])) == {5, 255}
    spec = data.spec("camvid")
    assert (spec.num_classes, spec.ignore_label, spec.task, spec.augmentation) == (11, 255, "segmentation",
                                                                                    "crop_flip")
    assert spec.image_shape == (128, 128, 3) and spec.eval_shape == (256, 341, 3)


def test_images_at_the_eval_size_are_only_normalised(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (*EVAL_SIZE, 3), dtype=np.uint8)
    _write(tmp_path / "test", "a.png", pixels)
    _write(tmp_path / "testannot", "a.png", _blocks(*EVAL_SIZE, [1, 2]))
    image, mask = next(data.load("camvid", "test", data_dir=str(tmp_path)).as_numpy_iterator())
    expected = (pixels / 255.0 - np.array(segmentation.IMAGENET_MEAN)) / segmentation.IMAGENET_STD
    np.testing.assert_allclose(image, expected, atol=1e-5)
    np.testing.assert_array_equal(mask, _blocks(*EVAL_SIZE, [1, 2]))


def test_nyuv2_maps_unlabelled_to_255_and_classes_down_by_one(tmp_path):
    _write(tmp_path / "image" / "train", "0001.png", np.zeros((48, 64, 3), np.uint8))
    _write(tmp_path / "seg13" / "train", "0001.png", _blocks(48, 64, [0, 1, 13]))
    image, mask = next(data.load("nyuv2", "train", data_dir=str(tmp_path)).as_numpy_iterator())
    assert image.shape == (*EVAL_SIZE, 3) and set(np.unique(mask)) == {255, 0, 12}
    assert data.spec("nyuv2").num_classes == 13


@pytest.mark.parametrize("data_dir, message", [
    (None, "expected DATA_DIR/test with the test images (DATA_DIR=None)"),
    ("missing", "expected DATA_DIR/test with the test images"),
    ("images_only", "expected DATA_DIR/testannot with the masks of DATA_DIR/test"),
])
def test_a_wrong_layout_names_the_expected_folder(tmp_path, data_dir, message):
    _write(tmp_path / "images_only" / "test", "a.png", np.zeros((4, 4, 3), np.uint8))
    root = data_dir and str(tmp_path / data_dir)
    with pytest.raises(DatasetUnavailableError, match=f"^--dataset=camvid: {re.escape(message)}"):
        data.load("camvid", "test", data_dir=root)


def test_bad_files_are_one_line_errors_that_name_them(tmp_path):
    root = _camvid(tmp_path / "unmatched", {"a.png": [1]})
    (root / "testannot" / "a.png").rename(root / "testannot" / "b.png")
    with pytest.raises(DatasetUnavailableError, match="2 files of .* have no counterpart .* e.g. a.png$"):
        data.load("camvid", "test", data_dir=str(root))

    root = _camvid(tmp_path / "sizes", {"a.png": [1]})
    _write(root / "testannot", "a.png", np.zeros((30, 41), np.uint8))
    with pytest.raises(DatasetUnavailableError, match=r"testannot/a.png is 30x41, its image 30x40"):
        data.load("camvid", "test", data_dir=str(root))

    root = _camvid(tmp_path / "labels", {"a.png": [1], "b.png": [2, 12]})
    with pytest.raises(DatasetUnavailableError) as error:
        data.load("camvid", "test", data_dir=str(root))
    assert re.search(r"testannot/b.png has label 12; valid are 0..10 and 11 \(unlabelled\)$", str(error.value))
    assert "\n" not in str(error.value)


def test_shapes_are_fixed_per_split_with_every_class_and_ignored_boundaries():
    train_images, train_masks = shapes.arrays("train")
    test_images, test_masks = shapes.arrays("test")
    assert train_images.shape == (shapes.SPLIT_SIZES["train"], 64, 64, 3)
    assert test_masks.shape == (shapes.SPLIT_SIZES["test"], 64, 64)
    assert set(np.unique(train_masks)) == {0, 1, 2, 3, 255}
    np.testing.assert_array_equal(shapes.arrays("test")[0], test_images)
    assert not np.array_equal(train_images[:len(test_images)], test_images)
    # The boundary band: each labelled pixel differs from its right and lower neighbours only if one is ignored.
    right, left = train_masks[:, :, 1:], train_masks[:, :, :-1]
    assert np.all((right == left) | (left == 255) | (right == 255))
    assert 0.01 < np.mean(train_masks == 255) < 0.1
    # The hard-coded statistics are those of the data.
    pixels = train_images / 255.0
    np.testing.assert_allclose(pixels.mean((0, 1, 2)), shapes.SPEC.mean, atol=0.01)
    np.testing.assert_allclose(pixels.std((0, 1, 2)), shapes.SPEC.std, atol=0.01)
    image, mask = next(data.load("shapes", "test").as_numpy_iterator())
    assert image.shape == shapes.SPEC.eval_shape and mask.dtype == np.int32


def test_random_crop_flip_keeps_image_and_mask_aligned():
    # Each pixel's image encodes its position; its mask, the same position's hash.
    rows, columns = np.mgrid[0:20, 0:30]
    image = tf.constant(np.stack([rows, columns, np.zeros_like(rows)], -1), tf.float32)
    mask = tf.constant((rows * 7 + columns * 3) % 256, tf.int32)
    flipped = 0
    for seed in range(8):
        crop_image, crop_mask = segmentation.random_crop_flip(image, mask, (8, 12), tf.constant([seed, 1]))
        assert crop_image.shape == (8, 12, 3) and crop_mask.dtype == tf.int32
        crop_rows, crop_columns = crop_image[..., 0].numpy().astype(int), crop_image[..., 1].numpy().astype(int)
        np.testing.assert_array_equal(crop_mask, (crop_rows * 7 + crop_columns * 3) % 256)
        flipped += crop_columns[0, 0] > crop_columns[0, -1]
    assert 0 < flipped < 8
    # In a tf.data pipeline, as teacher training uses it: static crop shapes.
    pairs = tf.data.Dataset.from_tensors((image, mask))
    seeds = tf.data.Dataset.random(seed=0).batch(2)
    cropped = tf.data.Dataset.zip(pairs, seeds).map(
        lambda pair, seed: segmentation.random_crop_flip(*pair, (8, 12), seed))
    assert cropped.element_spec[0].shape == (8, 12, 3) and cropped.element_spec[1].shape == (8, 12)
    again = segmentation.random_crop_flip(image, mask, (8, 12), tf.constant([7, 1]))
    np.testing.assert_array_equal(again[0], crop_image)

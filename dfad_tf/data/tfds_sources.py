"""Datasets read through `tensorflow_datasets`, preprocessed like the paper's reference code."""

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from dfad_tf.data.spec import DatasetSpec


def resize_and_crop(image, size, method="bilinear"):
    """Resizes `image` to cover `size`, keeping its aspect ratio, then centre-crops it to `size`.

    The shorter side (relative to `size`) is scaled to fit exactly, so a
    720x960 photo resized for `size=(256, 341)` has its shorter side at 256.

    Args:
        image: a `(height, width, channels)` tensor.
        size: `(height, width)` of the result.
        method: a `tf.image.resize` method; "nearest" keeps the dtype, as
            segmentation masks need.

    Returns:
        The `(size[0], size[1], channels)` image.

    Example:
    >>> resize_and_crop(tf.zeros((720, 960, 3)), (256, 341)).shape
    TensorShape([256, 341, 3])
    """
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.reduce_max(tf.constant(size, tf.float32) / shape)
    image = tf.image.resize(image, tf.cast(tf.math.ceil(shape * scale), tf.int32), method=method)
    return tf.image.resize_with_crop_or_pad(image, *size)


class TfdsSource:
    """A tfds dataset resized and normalised like the paper's reference code.

    Args:
        tfds_name: the tfds builder name.
        spec: the `DatasetSpec` after preprocessing.
        crop: resize the shorter side to the spec's size and centre-crop
            (for photos of any aspect ratio) instead of resizing directly.

    Example:
    >>> MNIST.load("test", data_dir="~/tensorflow_datasets")
    """

    def __init__(self, tfds_name, spec, crop=False):
        self.tfds_name = tfds_name
        self.SPEC = spec
        self.crop = crop

    def _read(self, split, data_dir, decoders=None):
        try:
            return tfds.load(self.tfds_name, split=split, data_dir=data_dir, as_supervised=True,
                             decoders=decoders)
        except Exception as error:  # tfds raises many types; all mean "not available"
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise DatasetUnavailableError(
                f"--dataset={self.tfds_name}: cannot load split {split!r} through tfds "
                f"(data_dir={data_dir}): {reason}"
            ) from error

    def _examples(self, split, data_dir):
        """Raw `(image, label)` pairs of one of the spec's splits."""
        return self._read(split, data_dir)

    def _preprocess(self, image, label):
        image = tf.cast(image, tf.float32) / 255.0
        size = self.SPEC.image_shape[:2]
        if self.crop:
            image = resize_and_crop(image, size)
        else:
            image = tf.image.resize(image, size)
        return (image - self.SPEC.mean) / self.SPEC.std, label

    def load(self, split, data_dir=None):
        return self._examples(split, data_dir).map(self._preprocess, num_parallel_calls=tf.data.AUTOTUNE)


class ResplitTfdsSource(TfdsSource):
    """A tfds dataset pooled and re-split with a fixed seed, dropping some labels.

    For Caltech101, whose tfds split (3,060 train / 6,084 test, with a
    background class) differs from the paper's random 6,982 / 1,695 split of
    its 101 object classes.

    Args:
        tfds_name: the tfds builder name.
        spec: the `DatasetSpec` after preprocessing.
        test_fraction: fraction of the kept examples in the test split.
        drop_label: tfds label index to drop (higher labels shift down by one).
        seed: seed of the fixed split.
        crop: as for `TfdsSource`.

    Example:
    >>> CALTECH101.load("train")  # 6,982 images of 101 classes, 128x128x3
    """

    def __init__(self, tfds_name, spec, test_fraction, drop_label, seed=0, crop=True):
        super().__init__(tfds_name, spec, crop=crop)
        self.test_fraction = test_fraction
        self.drop_label = drop_label
        self.seed = seed

    def _examples(self, split, data_dir):
        pooled = "train+test"
        # One pass over the labels only (images not decoded) fixes which example goes where.
        labels = np.fromiter(
            self._read(pooled, data_dir, decoders={"image": tfds.decode.SkipDecoding()})
            .map(lambda image, label: label).as_numpy_iterator(), dtype=np.int64)
        kept = np.flatnonzero(labels != self.drop_label)
        test = np.random.default_rng(self.seed).choice(kept, round(len(kept) * self.test_fraction), replace=False)
        in_split = np.zeros(len(labels), bool)
        in_split[test] = True
        if split == "train":
            in_split[kept] = ~in_split[kept]
        in_split = tf.constant(in_split)
        drop = self.drop_label
        return (self._read(pooled, data_dir).enumerate()
                .filter(lambda index, example: in_split[index])
                .map(lambda index, example: (example[0], example[1] - tf.cast(example[1] > drop, tf.int64))))


class DatasetUnavailableError(RuntimeError):
    """A dataset is neither prepared in `data_dir` nor downloadable."""


MNIST = TfdsSource("mnist", DatasetSpec((32, 32, 1), 10, (0.1307,), (0.3081,), class_names=tuple("0123456789")))
# CIFAR statistics of the paper's reference code; random crop (padding 4) and flips for teachers.
CIFAR10 = TfdsSource("cifar10", DatasetSpec((32, 32, 3), 10, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010),
                                            augmentation="crop_flip",
                                            class_names=("airplane", "automobile", "bird", "cat", "deer", "dog",
                                                         "frog", "horse", "ship", "truck")))
CIFAR100 = TfdsSource("cifar100", DatasetSpec((32, 32, 3), 100, (0.5071, 0.4867, 0.4408),
                                              (0.2675, 0.2565, 0.2761), augmentation="crop_flip"))
# The paper's split: 6,982 train / 1,695 test of the 8,677 images of the 101 object classes
# (tfds label 4 is "background_google"); ImageNet statistics, photos resized and cropped to 128x128.
CALTECH101 = ResplitTfdsSource(
    "caltech101", DatasetSpec((128, 128, 3), 101, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                              augmentation="crop_flip"),
    test_fraction=1695 / 8677, drop_label=4)

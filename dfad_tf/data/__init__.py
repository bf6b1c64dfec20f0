"""Labelled image data, used only to train a teacher and to evaluate students.

Distillation itself never reads an image: the distiller's training data is
latent noise. Each source returns unbatched `(image, label)` pairs with images
normalised the way the paper's reference code does; for segmentation sources
(camvid, nyuv2, shapes) the label is an int32 mask, 255 where ignored.

Example:
>>> from dfad_tf import data
>>> spec = data.spec("digits")
>>> test = data.load("digits", "test").batch(256)
"""

from dfad_tf.data import digits, segmentation, shapes, tfds_sources
from dfad_tf.data.spec import DatasetSpec as DatasetSpec  # re-exported: the type `spec` returns

SOURCES = {
    "digits": digits,
    "mnist": tfds_sources.MNIST,
    "cifar10": tfds_sources.CIFAR10,
    "cifar100": tfds_sources.CIFAR100,
    "caltech101": tfds_sources.CALTECH101,
    "camvid": segmentation.CAMVID,
    "nyuv2": segmentation.NYUV2,
    "shapes": shapes,
}


def _source(name):
    if name not in SOURCES:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(sorted(SOURCES))}")
    return SOURCES[name]


def spec(name):
    """Returns the `DatasetSpec` (image shape, classes, splits) of dataset `name`."""
    return _source(name).SPEC


def load(name, split, data_dir=None):
    """Loads one split of dataset `name` as an unbatched `tf.data.Dataset`.

    Args:
        name: a key of `SOURCES`.
        split: one of the spec's splits, e.g. "train" or "test".
        data_dir: where tfds keeps prepared datasets, or the folder of a
            local dataset (camvid, nyuv2); ignored by "digits" and "shapes".

    Returns:
        A dataset of `(image, label)`, images float32 `(height, width, channels)`;
        for segmentation, labels are int32 `(height, width)` masks.
    """
    source = _source(name)
    if split not in source.SPEC.splits:
        raise ValueError(f"dataset {name!r} has no split {split!r}; choose one of: {', '.join(source.SPEC.splits)}")
    return source.load(split, data_dir=data_dir)

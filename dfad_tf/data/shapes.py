"""A small procedural segmentation dataset that ships with the package: textured shapes on textured ground.

Each 64x64 image has a background and 2 to 4 shapes, possibly overlapping
(later ones on top), of the classes 0 background, 1 ellipse, 2 rectangle,
3 triangle, rotated and sized at random. Background and shapes are filled
with random-colour stripes, gradients or noise, so neither colour nor texture
gives the class: the shape's outline does. Shapes contrast with the
background's mean colour, so the outline is visible. A one-pixel band on
every class boundary (the pixel above or left of a change) is labelled 255
(ignored), which exercises the ignore path. Splits are fixed: a seed per split.

Example:
>>> from dfad_tf import data
>>> train = data.load("shapes", "train")  # 1,000 (64x64x3 image, 64x64 mask) pairs
"""

import numpy as np

from dfad_tf.data.segmentation import IGNORE_LABEL, to_dataset
from dfad_tf.data.spec import DatasetSpec

CLASSES = ("background", "ellipse", "rectangle", "triangle")
SIZE = 64
SPLIT_SIZES = {"train": 1000, "test": 300}
SPLIT_SEEDS = {"train": 0, "test": 1}
# Mean and std: of the train split, rounded.
SPEC = DatasetSpec(image_shape=(48, 48, 3), num_classes=len(CLASSES), mean=(0.5, 0.5, 0.5), std=(0.26, 0.26, 0.26),
                   augmentation="crop_flip", task="segmentation", ignore_label=IGNORE_LABEL,
                   eval_shape=(SIZE, SIZE, 3), class_names=CLASSES)

_Y, _X = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5


def _texture(rng, first, second):
    """A `(SIZE, SIZE, 3)` fill blending two colours by stripes, a gradient or noise."""
    angle = rng.uniform(0, np.pi)
    along = (_X * np.cos(angle) + _Y * np.sin(angle)) / SIZE
    kind = rng.integers(3)
    if kind == 0:
        blend = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 6) * along + rng.uniform(0, 2 * np.pi))
    elif kind == 1:
        blend = (along - along.min()) / np.ptp(along)
    else:
        blend = rng.random((SIZE, SIZE))
    return first + blend[..., None] * (second - first)


def _shape(rng, label):
    """A boolean `(SIZE, SIZE)` mask of a random ellipse (1), rectangle (2) or triangle (3)."""
    centre_y, centre_x = rng.uniform(8, SIZE - 8, 2)
    radius = rng.uniform(6, 16)
    angle = rng.uniform(0, np.pi)
    u = (_X - centre_x) * np.cos(angle) + (_Y - centre_y) * np.sin(angle)
    v = (_Y - centre_y) * np.cos(angle) - (_X - centre_x) * np.sin(angle)
    half_u, half_v = radius * rng.uniform(0.6, 1.0, 2)
    if label == 1:
        return (u / half_u) ** 2 + (v / half_v) ** 2 <= 1
    if label == 2:
        return (np.abs(u) <= half_u) & (np.abs(v) <= half_v)
    corners = angle + np.arange(3) * 2 * np.pi / 3 + rng.uniform(-0.4, 0.4, 3)
    distances = radius * rng.uniform(0.8, 1.2, 3)
    ys, xs = centre_y + distances * np.sin(corners), centre_x + distances * np.cos(corners)
    # Inside a counter-clockwise triangle: left of all three edges.
    inside = np.ones((SIZE, SIZE), bool)
    for start, end in ((0, 1), (1, 2), (2, 0)):
        inside &= (xs[end] - xs[start]) * (_Y - ys[start]) - (ys[end] - ys[start]) * (_X - xs[start]) >= 0
    return inside


def arrays(split):
    """Generates one split: uint8 images `(n, 64, 64, 3)` and masks `(n, 64, 64)`.

    Args:
        split: "train" or "test" (sizes in `SPLIT_SIZES`, seeds in `SPLIT_SEEDS`).

    Returns:
        `(images, masks)`; masks hold 0..3 and 255 on class boundaries.

    Example:
    >>> images, masks = arrays("test")
    """
    rng = np.random.default_rng(SPLIT_SEEDS[split])
    images = np.empty((SPLIT_SIZES[split], SIZE, SIZE, 3), np.uint8)
    masks = np.empty((SPLIT_SIZES[split], SIZE, SIZE), np.uint8)
    for index in range(len(images)):
        colours = rng.random((2, 3))
        image = _texture(rng, *colours)
        mask = np.zeros((SIZE, SIZE), np.uint8)
        for label in rng.integers(1, len(CLASSES), rng.integers(2, 5)):
            # A colour far from the background's mean in every channel, and a second one near it.
            first = (colours.mean(0) + 0.5 + rng.uniform(-0.2, 0.2, 3)) % 1
            second = np.clip(first + rng.uniform(-0.25, 0.25, 3), 0, 1)
            inside = _shape(rng, label)
            image[inside] = _texture(rng, first, second)[inside]
            mask[inside] = label
        boundary = np.zeros((SIZE, SIZE), bool)
        boundary[:-1] |= mask[:-1] != mask[1:]
        boundary[:, :-1] |= mask[:, :-1] != mask[:, 1:]
        mask[boundary] = IGNORE_LABEL
        image += rng.normal(0, 0.03, image.shape)
        images[index] = np.round(np.clip(image, 0, 1) * 255)
        masks[index] = mask
    return images, masks


def load(split, data_dir=None):
    """Loads one split as normalised `(image, mask)` pairs (generated, no files).

    Args:
        split: "train" or "test".
        data_dir: ignored; the data is generated.

    Returns:
        An unbatched `tf.data.Dataset` of float32 `(64, 64, 3)` images and int32 `(64, 64)` masks.

    Example:
    >>> load("test").batch(32)
    """
    del data_dir  # generated
    return to_dataset(*arrays(split), SPEC)

"""Input conventions: the pixel range or normalisation a teacher expects.

dfad_tf's datasets and generators work in a dataset's normalised space
(`(pixel - mean) / std`, pixels in [0, 1]). A teacher downloaded from elsewhere
may want pixels in [0, 1], [-1, 1], [0, 255] or its own mean/std. Feeding it the
wrong range silently ruins distillation, so the convention is explicit, and one
affine map, `teacher_input = scale * normalised + offset`, is applied both to
the generator's output (a final `Rescaling` layer) and to evaluation images. A
generator that ends at its tanh makes pixels (-1 black, 1 white) instead:
`from_tanh_pixels` gives its map to the teacher's input.

A wrong convention can be caught for a teacher with BatchNorm layers:
`check_input_convention` compares the batch statistics that the teacher's
first BatchNorm layer sees on generated images, mapped by each convention, with
the running statistics it learnt from its training data.

Example:
>>> scale, offset = to_teacher_input("unit", data_mean=(0.1307,), data_std=(0.3081,))
>>> generator = adapt_generator(generator, scale, offset)
"""

import collections

import keras
import numpy as np
from keras import ops

from dfad_tf import objectives

CONVENTIONS = ("normalized", "unit", "symmetric", "byte", "mean_std")

# `check_input_convention` suggests another convention when the chosen one's BatchNorm mismatch is this
# many times the best one's. Measured on generated digits (examples/byo_teacher.py's teacher, [0, 1]
# inputs): 0.58 to 0.64 for the right convention, 6.6 or more for every wrong one.
MISMATCH_RATIO = 4.0

# With no dataset there are no statistics to undo: a generator's standardised
# output (the paper's Generator-A) is then read as pixels of mean 0.5 and standard
# deviation 0.25. A generator that makes pixels (`from_tanh_pixels`) needs none.
GENERIC_MEAN, GENERIC_STD = (0.5,), (0.25,)


def _from_unit(convention, mean, std):
    """(scale, offset) taking pixels in [0, 1] to the convention."""
    if convention == "unit":
        return 1.0, 0.0
    if convention == "symmetric":
        return 2.0, -1.0
    if convention == "byte":
        return 255.0, 0.0
    if convention == "mean_std":
        if mean is None or std is None:
            raise ValueError("the mean_std convention needs the teacher's per-channel mean and std")
        std = np.asarray(std, "float32")
        return 1.0 / std, -np.asarray(mean, "float32") / std
    raise ValueError(f"unknown input convention {convention!r}; choose one of: {', '.join(CONVENTIONS)}")


def to_teacher_input(convention, data_mean=GENERIC_MEAN, data_std=GENERIC_STD, mean=None, std=None):
    """The affine map from normalised images to the teacher's input convention.

    Args:
        convention: one of `CONVENTIONS`. "normalized" means the teacher takes
            the dataset's own normalisation (dfad_tf's teachers do): no change.
        data_mean, data_std: the dataset's per-channel normalisation.
        mean, std: the teacher's own per-channel mean and std ("mean_std").

    Returns:
        `(scale, offset)`, floats or per-channel float32 arrays.
    """
    if convention == "normalized":
        return 1.0, 0.0
    scale, offset = _from_unit(convention, mean, std)
    data_mean, data_std = np.asarray(data_mean, "float32"), np.asarray(data_std, "float32")
    scale, offset = scale * data_std, scale * data_mean + offset
    if np.size(scale) == 1:
        return float(np.ravel(scale)[0]), float(np.ravel(offset)[0])
    return scale, offset


def from_unit_pixels(input_map, data_mean=GENERIC_MEAN, data_std=GENERIC_STD):
    """The affine map from pixels in [0, 1] to the model's input: normalisation, then `input_map`.

    Args:
        input_map: `(scale, offset)` from normalised images to the model's
            input, from `to_teacher_input`.
        data_mean, data_std: the dataset's per-channel normalisation.

    Returns:
        `(scale, offset)`, float32 arrays with one value per channel (or one
        for all).

    Example:
    >>> from_unit_pixels((1.0, 0.0), (0.1307,), (0.3081,))  # digits: (pixel - 0.1307) / 0.3081
    (array([3.2457], dtype=float32), array([-0.4242], dtype=float32))
    """
    scale, offset = (np.asarray(value, "float32") for value in input_map)
    mean, std = np.asarray(data_mean, "float32"), np.asarray(data_std, "float32")
    return scale / std, offset - scale * mean / std


def from_tanh_pixels(input_map, data_mean=GENERIC_MEAN, data_std=GENERIC_STD):
    """`from_unit_pixels` for a generator's tanh read as pixels: -1 black, 1 white.

    Example:
    >>> from_tanh_pixels(to_teacher_input("unit", (0.1307,), (0.3081,)), (0.1307,), (0.3081,))
    (array([0.5], dtype=float32), array([0.5], dtype=float32))
    """
    scale, offset = from_unit_pixels(input_map, data_mean, data_std)
    return scale / 2, offset + scale / 2


def is_identity(scale, offset):
    return np.all(np.asarray(scale) == 1) and np.all(np.asarray(offset) == 0)


def pixel_range(scale, offset, data_mean=GENERIC_MEAN, data_std=GENERIC_STD):
    """The values that real pixels (in [0, 1]) take after normalisation and `(scale, offset)`: `(low, high)`.

    Example:
    >>> pixel_range(*to_teacher_input("byte", (0.5,), (0.25,)), (0.5,), (0.25,))
    (0.0, 255.0)
    """
    mean, std = np.asarray(data_mean, "float32"), np.asarray(data_std, "float32")
    low, high = (np.asarray(scale, "float32") * (pixel - mean) / std + np.asarray(offset, "float32")
                 for pixel in (0.0, 1.0))
    if np.size(low) == 1:
        return float(np.ravel(low)[0]), float(np.ravel(high)[0])
    return low, high


@keras.saving.register_keras_serializable(package="dfad_tf")
class PixelRange(keras.layers.Layer):
    """Clips images to `[low, high]` (per channel): the range real pixels have in the teacher's convention.

    A teacher never saw a pixel darker than black or brighter than white; a
    generator left free to produce them finds images on which a teacher's
    logits grow without bound (README, "Bring your own teacher").

    Args:
        low, high: floats or per-channel lists.
    """

    def __init__(self, low, high, **kwargs):
        super().__init__(**kwargs)
        self.low, self.high = np.asarray(low).tolist(), np.asarray(high).tolist()

    def call(self, images):
        low, high = (ops.cast(value, images.dtype) for value in (self.low, self.high))
        return ops.minimum(ops.maximum(images, low), high)

    def get_config(self):
        return {**super().get_config(), "low": self.low, "high": self.high}


def adapt_generator(generator, scale, offset, clip_to=None):
    """The generator followed by `Rescaling(scale, offset)` and, with `clip_to=(low, high)`, `PixelRange`.

    Returns the generator itself when there is nothing to add.
    """
    outputs = generator.output
    if not is_identity(scale, offset):
        outputs = keras.layers.Rescaling(np.asarray(scale).tolist(), np.asarray(offset).tolist(),
                                         name="to_teacher_input")(outputs)
    if clip_to is not None:
        outputs = PixelRange(*clip_to, name="pixel_range")(outputs)
    if outputs is generator.output:
        return generator
    return keras.Model(generator.input, outputs, name=generator.name)


def adapt_images(images, scale, offset):
    """Normalised images mapped to the teacher's convention."""
    return (np.asarray(images, "float32") * np.asarray(scale, "float32") + np.asarray(offset, "float32")).astype(
        "float32")


def batchnorm_mismatch(teacher, images):
    """How far `images` are from the teacher's training data, as its first BatchNorm layer sees them.

    The mean over channels of KL(N(batch mean, batch variance) || N(moving mean,
    moving variance)) at the input of the first `BatchNormalization` among the
    teacher's layers: near 0 for images like its training data, orders of
    magnitude larger for pixels in another range.

    Args:
        teacher: a functional Keras classifier, or a SavedModel one from `model_files`.
        images: a batch in the teacher's input convention.

    Returns:
        A float, or None when the teacher has no BatchNormalization layer that
        `objectives.batchnorm_probe` can read.

    Example:
    >>> batchnorm_mismatch(teacher, adapt_images(test_images, *to_teacher_input("unit")))
    0.0028
    """
    layers, probe = objectives.batchnorm_probe(teacher)
    return None if probe is None else _first_batchnorm_kl(layers, probe, images)


def _first_batchnorm_kl(layers, probe, images):
    """`batchnorm_mismatch` with the teacher's `objectives.batchnorm_probe` already read."""
    return float(ops.mean(objectives.batchnorm_kl(probe(images)[1], layers[0])))


ConventionCheck = collections.namedtuple("ConventionCheck", ["convention", "mismatches", "suggestion"])
ConventionCheck.__doc__ = """What `check_input_convention` found.

Attributes:
    convention: the chosen convention.
    mismatches: each convention's `batchnorm_mismatch` on the same images.
    suggestion: the convention to use instead, or None when the chosen one fits.
"""


def check_input_convention(teacher, images, convention, input_map, data_mean=GENERIC_MEAN, data_std=GENERIC_STD):
    """Whether generated images in `convention` look like the teacher's training data, against the other conventions.

    `images` are mapped back to normalised space and into each of "normalized",
    "unit", "symmetric" and "byte" (and `convention` itself, which may be
    "mean_std"), and each is scored by `batchnorm_mismatch`.

    Args:
        teacher: a functional Keras classifier.
        images: a batch of generated images in `convention`, e.g. the adapted
            generator's output in training mode at step 0.
        convention: the chosen convention, a name of `CONVENTIONS`.
        input_map: its `(scale, offset)` from `to_teacher_input`.
        data_mean, data_std: the dataset's per-channel normalisation.

    Returns:
        A `ConventionCheck(convention, mismatches, suggestion)`: `mismatches`
        maps each convention to its mismatch; `suggestion` is the best-matching
        other convention when the chosen one's mismatch is `MISMATCH_RATIO`
        times the best one's, else None. None when the teacher has no
        BatchNormalization layer (no check is possible).

    Example:
    >>> check = check_input_convention(teacher, generator(noise, training=True), "byte", (255 * 0.3081, 255 * 0.1307),
    ...                                data_mean=(0.1307,), data_std=(0.3081,))
    >>> check.suggestion
    'unit'
    """
    scale, offset = (np.asarray(value, "float32") for value in input_map)
    normalised = (np.asarray(images, "float32") - offset) / scale
    maps = {name: to_teacher_input(name, data_mean, data_std) for name in CONVENTIONS if name != "mean_std"}
    maps[convention] = input_map
    layers, probe = objectives.batchnorm_probe(teacher)  # read once: for a SavedModel that freezes its graph
    if probe is None:
        return None
    mismatches = {name: _first_batchnorm_kl(layers, probe, adapt_images(normalised, scale, offset))
                  for name, (scale, offset) in maps.items()}
    best = min(mismatches, key=mismatches.get)
    suggestion = best if mismatches[convention] > MISMATCH_RATIO * mismatches[best] else None
    return ConventionCheck(convention, mismatches, suggestion)

"""Input conventions: the pixel range or normalisation a teacher expects.

dfad_tf's datasets and generators work in a dataset's normalised space
(`(pixel - mean) / std`, pixels in [0, 1]). A teacher downloaded from elsewhere
may want pixels in [0, 1], [-1, 1], [0, 255] or its own mean/std. Feeding it the
wrong range silently ruins distillation, so the convention is explicit, and one
affine map, `teacher_input = scale * normalised + offset`, is applied both to
the generator's output (a final `Rescaling` layer) and to evaluation images.

Example:
>>> scale, offset = to_teacher_input("unit", data_mean=(0.1307,), data_std=(0.3081,))
>>> generator = adapt_generator(generator, scale, offset)
"""

import keras
import numpy as np

CONVENTIONS = ("normalized", "unit", "symmetric", "byte", "mean_std")

# With no dataset there are no statistics to undo: the generator's standardised
# output is then read as pixels of mean 0.5 and standard deviation 0.25.
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


def is_identity(scale, offset):
    return np.all(np.asarray(scale) == 1) and np.all(np.asarray(offset) == 0)


def adapt_generator(generator, scale, offset):
    """The generator followed by `Rescaling(scale, offset)` (itself when the map is the identity)."""
    if is_identity(scale, offset):
        return generator
    rescale = keras.layers.Rescaling(np.asarray(scale).tolist(), np.asarray(offset).tolist(), name="to_teacher_input")
    return keras.Model(generator.input, rescale(generator.output), name=generator.name)


def adapt_images(images, scale, offset):
    """Normalised images mapped to the teacher's convention."""
    return (np.asarray(images, "float32") * np.asarray(scale, "float32") + np.asarray(offset, "float32")).astype(
        "float32")

"""Model registry: maps the names used by flags to builders.

Example:
>>> from dfad_tf import models
>>> student = models.build_classifier("lenet5_half", (32, 32, 1), 10)
>>> generator = models.build_generator("generator_a", 256, (32, 32, 1), width=32)
"""

import functools

import keras

from dfad_tf.models.classifiers import lenet5, resnet_8x
from dfad_tf.models.generators import generator_a, generator_b

CLASSIFIERS = {
    "lenet5": functools.partial(lenet5, name="lenet5"),
    "lenet5_half": functools.partial(lenet5, width=0.5, name="lenet5_half"),
    "resnet18_8x": functools.partial(resnet_8x, blocks_per_stage=(2, 2, 2, 2), name="resnet18_8x"),
    "resnet34_8x": functools.partial(resnet_8x, blocks_per_stage=(3, 4, 6, 3), name="resnet34_8x"),
}

GENERATORS = {
    "generator_a": generator_a,
    "generator_b": generator_b,
}


def _lookup(registry, kind, name):
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(registry))}")
    return registry[name]


def build_classifier(name, input_shape, num_classes, keras_module=keras):
    """Builds a registered classifier (teacher or student) by name.

    Args:
        name: a key of `CLASSIFIERS`.
        input_shape: `(height, width, channels)`.
        num_classes: number of output logits.
        keras_module: `keras` (Keras 3), or `tf_keras` to build the same
            architecture as a tf_keras model (for tensorflow-model-optimization).

    Returns:
        An uncompiled model producing logits.
    """
    return _lookup(CLASSIFIERS, "classifier", name)(input_shape, num_classes, keras_module=keras_module)


def build_generator(name, latent_dim, image_shape, width=64):
    """Builds a registered generator by name.

    Args:
        name: a key of `GENERATORS`.
        latent_dim: length of the noise vector.
        image_shape: `(height, width, channels)` of the images to produce.
        width: base filter count (64 in the paper).

    Returns:
        A `keras.Model` mapping latent vectors to images.
    """
    return _lookup(GENERATORS, "generator", name)(latent_dim, image_shape, width=width)

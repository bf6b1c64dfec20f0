"""Model registry: maps the names used by flags to builders.

Example:
>>> from dfad_tf import models
>>> student = models.build_classifier("lenet5_half", (32, 32, 1), 10)
>>> generator = models.build_generator("generator_a", 256, (32, 32, 1), width=32)
"""

import keras

from dfad_tf.models.classifiers import lenet5, mobilenet, resnet
from dfad_tf.models.generators import generator_a, generator_b

# name -> (builder, its width for width=1, fixed arguments)
CLASSIFIERS = {
    "lenet5": (lenet5, 1.0, {}),
    "lenet5_half": (lenet5, 0.5, {}),
    "resnet18_8x": (resnet, 1.0, {"blocks_per_stage": (2, 2, 2, 2), "stem": "cifar"}),
    "resnet34_8x": (resnet, 1.0, {"blocks_per_stage": (3, 4, 6, 3), "stem": "cifar"}),
    "resnet18": (resnet, 1.0, {"blocks_per_stage": (2, 2, 2, 2), "stem": "imagenet"}),
    "resnet34": (resnet, 1.0, {"blocks_per_stage": (3, 4, 6, 3), "stem": "imagenet"}),
    "mobilenet_v2": (mobilenet, 1.0, {"version": "v2"}),
    "mobilenet_v3_small": (mobilenet, 1.0, {"version": "v3_small"}),
    "mobilenet_v3_large": (mobilenet, 1.0, {"version": "v3_large"}),
}

GENERATORS = {
    "generator_a": generator_a,
    "generator_b": generator_b,
}


def _lookup(registry, kind, name):
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(registry))}")
    return registry[name]


def build_classifier(name, input_shape, num_classes, width=1.0, keras_module=keras):
    """Builds a registered classifier (teacher or student) by name.

    Args:
        name: a key of `CLASSIFIERS`.
        input_shape: `(height, width, channels)`.
        num_classes: number of output logits.
        width: multiplier on the architecture's filter counts: a scaled copy
            (e.g. `build_classifier("lenet5", ..., width=0.5)` is LeNet-5-Half).
        keras_module: `keras` (Keras 3), or `tf_keras` to build the same
            architecture as a tf_keras model (for tensorflow-model-optimization).

    Returns:
        An uncompiled model producing logits, named `name`.
    """
    builder, base_width, arguments = _lookup(CLASSIFIERS, "classifier", name)
    return builder(tuple(input_shape), num_classes, width=base_width * width, name=name, keras_module=keras_module,
                   **arguments)


def build_generator(name, latent_dim, image_shape, width=64, synchronized_batchnorm=False):
    """Builds a registered generator by name.

    Args:
        name: a key of `GENERATORS`.
        latent_dim: length of the noise vector.
        image_shape: `(height, width, channels)` of the images to produce.
        width: base filter count (64 in the paper).
        synchronized_batchnorm: BatchNorm statistics over the global batch of
            a `tf.distribute` strategy rather than each replica's part.

    Returns:
        A `keras.Model` mapping latent vectors to images.
    """
    return _lookup(GENERATORS, "generator", name)(latent_dim, image_shape, width=width,
                                                  synchronized_batchnorm=synchronized_batchnorm)

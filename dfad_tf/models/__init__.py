"""Model registry: maps the names used by flags to builders.

Example:
>>> from dfad_tf import models
>>> student = models.build_classifier("lenet5_half", (32, 32, 1), 10)
>>> generator = models.build_generator("generator_a", 256, (32, 32, 1), width=32)
>>> segmenter = models.build_model("deeplabv3_mobilenet_v2", (128, 128, 3), 11, output_stride=8)
"""

import keras

from dfad_tf.models.classifiers import lenet5, mobilenet, resnet
from dfad_tf.models.generators import generator_a, generator_b
from dfad_tf.models.segmentation import deeplab_v3

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

# name -> backbone of a DeepLabV3 segmentation model (paper Table 7: ResNet-50 teacher, MobileNetV2 student)
SEGMENTERS = {
    "deeplabv3_resnet50": "resnet50",
    "deeplabv3_mobilenet_v2": "mobilenet_v2",
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


def takes(model, image_shape):
    """Whether `model` takes images of `image_shape` (its None sizes take any size).

    Example:
    >>> takes(build_model("deeplabv3_mobilenet_v2", (128, 128, 3), 11), (256, 341, 3))
    True
    """
    accepted = tuple(model.input_shape[1:])
    return len(accepted) == len(image_shape) and all(a is None or a == s for s, a in zip(image_shape, accepted))


def task(name):
    """"classification" or "segmentation": what the registered model `name` predicts."""
    if name in SEGMENTERS:
        return "segmentation"
    _lookup(CLASSIFIERS, "model", name)
    return "classification"


def task_of(model):
    """"classification" or "segmentation": what `model` predicts, from the ranks of its input and output.

    Raises:
        ValueError: it is neither an image classifier nor a segmentation model.
    """
    if len(model.input_shape) == 4 and len(model.output_shape) == 2:
        return "classification"
    if len(model.input_shape) == 4 and len(model.output_shape) == 4:
        return "segmentation"
    raise ValueError(f"expected an image classifier (batch, h, w, c) -> (batch, classes) or a segmentation model "
                     f"(batch, h, w, c) -> (batch, h, w, classes), got {model.input_shape} -> {model.output_shape}")


def build_model(name, input_shape, num_classes, width=1.0, output_stride=16, backbone_weights=None):
    """Builds a registered classifier or segmentation model by name.

    Args:
        name: a key of `CLASSIFIERS` or `SEGMENTERS`.
        input_shape: `(height, width, channels)`. Segmentation models are
            fully convolutional: they take images of any height and width,
            and only the channel count is used.
        num_classes: number of logits (per image, or per pixel).
        width: width multiplier (see `build_classifier` and
            `segmentation.deeplab_v3`).
        output_stride: segmentation only: 8 or 16.
        backbone_weights: segmentation only: local weights file of the
            backbone (ImageNet weights for the paper's teacher).

    Returns:
        An uncompiled model producing logits, named `name`.
    """
    if name not in SEGMENTERS:
        if backbone_weights:
            raise ValueError(f"{name} is a classifier; backbone weights are for segmentation models")
        return build_classifier(name, input_shape, num_classes, width=width)
    return deeplab_v3((None, None, input_shape[-1]), num_classes, SEGMENTERS[name], output_stride=output_stride,
                      width=width, backbone_weights=backbone_weights, name=name)


def build_generator(name, latent_dim, image_shape, width=64, synchronized_batchnorm=False, standardize_output=None):
    """Builds a registered generator by name.

    Args:
        name: a key of `GENERATORS`.
        latent_dim: length of the noise vector.
        image_shape: `(height, width, channels)` of the images to produce.
        width: base filter count (64 in the paper).
        synchronized_batchnorm: BatchNorm statistics over the global batch of
            a `tf.distribute` strategy rather than each replica's part.
        standardize_output: end with a non-affine BN that standardises each
            channel of the batch (True) or at the tanh (False); None: as the
            paper publishes the generator (Generator-A with it, Generator-B
            without).

    Returns:
        A `keras.Model` mapping latent vectors to images.
    """
    published = {} if standardize_output is None else {"standardize_output": standardize_output}
    return _lookup(GENERATORS, "generator", name)(latent_dim, image_shape, width=width,
                                                  synchronized_batchnorm=synchronized_batchnorm, **published)

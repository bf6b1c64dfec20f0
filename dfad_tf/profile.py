"""Counting what a model costs: parameters, multiply-accumulates, BatchNorm layers."""

import keras

# Preprocessing layers that tell how a model expects its input to be scaled.
_SCALING_LAYERS = ("Rescaling", "Normalization")


def _layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        else:
            yield layer


def _layer_macs(layer):
    kind = type(layer).__name__
    if kind not in ("Conv2D", "DepthwiseConv2D", "Conv2DTranspose", "Dense"):
        return 0
    kernel = layer.kernel.shape
    if kind == "Dense":
        positions = 1
        for size in layer.output.shape[1:-1]:
            positions *= size
        return positions * kernel[0] * kernel[1]
    height, width = (layer.input if kind == "Conv2DTranspose" else layer.output).shape[1:3]
    # Conv2D kernel (kh, kw, cin / groups, cout); DepthwiseConv2D (kh, kw, cin, multiplier);
    # Conv2DTranspose (kh, kw, cout, cin): each is one multiply-add per element per position.
    return height * width * kernel[0] * kernel[1] * kernel[2] * kernel[3]


def macs_per_image(model, image_shape=None):
    """Multiply-accumulates of one image through the convolutions and dense layers.

    The papers' "FLOPs" (LeNet-5 433K, ResNet-34-8x 1.16G) count the same
    multiply-adds, plus small extras for pooling and activations.

    Args:
        model: a functional Keras model.
        image_shape: `(height, width, channels)` to count at, for a model that
            takes any image size (a segmentation model); ignored otherwise.

    Returns:
        An int, or None when the model hides its layers (a SavedModel, say)
        or takes any size and no `image_shape` is given.

    Example:
    >>> macs_per_image(models.build_classifier("lenet5", (32, 32, 1), 10))
    416520
    """
    if any(type(layer).__name__ == "TFSMLayer" for layer in _layers(model)):
        return None
    if None in model.input_shape[1:]:
        if image_shape is None:
            return None
        # The same layers on a fixed-size input: every layer's output size becomes known.
        model = keras.models.clone_model(model, input_tensors=keras.Input(tuple(image_shape)))
    return int(sum(_layer_macs(layer) for layer in _layers(model)))


def batchnorm_layers(model):
    """Number of BatchNormalization layers (what a BatchNorm-statistics prior can use)."""
    return sum(isinstance(layer, keras.layers.BatchNormalization) for layer in _layers(model))


def input_convention_guess(model):
    """What the model's own first layers say about its input range, in words."""
    for layer in _layers(model):
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        if kind == "Rescaling":
            config = layer.get_config()
            return f"rescales its input itself (scale {config['scale']}, offset {config['offset']}): likely [0, 255]"
        if kind == "Normalization":
            return "normalises its input itself: likely [0, 1] or [0, 255] pixels"
        if kind == "TFSMLayer":
            return "unknown (SavedModel): pass --teacher_input"
        return "not declared by the model: pass --teacher_input (dfad_tf's own teachers are 'normalized')"
    return "unknown"

"""Counting what a model costs: parameters, multiply-accumulates, BatchNorm layers."""

import warnings

import keras

from dfad_tf import objectives

# Preprocessing layers that tell how a model expects its input to be scaled.
_SCALING_LAYERS = ("Rescaling", "Normalization")
# Layers whose multiply-adds are counted, and layers with weights whose cost is a few operations per value.
_COUNTED = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose", "UpsampleConv2D", "Dense")
_ELEMENTWISE = ("BatchNormalization", "FusedBatchNormalization", "LayerNormalization", "GroupNormalization",
                "Normalization", "PReLU")


def _layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        else:
            yield layer


def _layer_macs(layer):
    kind = type(layer).__name__
    if kind not in _COUNTED:
        return 0
    if kind == "SeparableConv2D":  # a depthwise convolution, then a 1x1 one, both at every output position
        height, width = layer.output.shape[1:3]
        depthwise, pointwise = layer.depthwise_kernel.shape, layer.pointwise_kernel.shape
        return height * width * (depthwise[0] * depthwise[1] * depthwise[2] * depthwise[3]
                                  + pointwise[2] * pointwise[3])
    kernel = layer.kernel.shape
    if kind == "Dense":
        positions = 1
        for size in layer.output.shape[1:-1]:
            positions *= size
        return positions * kernel[0] * kernel[1]
    height, width = (layer.input if kind == "Conv2DTranspose" else layer.output).shape[1:3]
    if kind == "UpsampleConv2D":  # 2x2 distinct input pixels under each 3x3 window (its docstring)
        return height * width * 4 * kernel[2] * kernel[3]
    # Conv2D kernel (kh, kw, cin / groups, cout); DepthwiseConv2D (kh, kw, cin, multiplier);
    # Conv2DTranspose (kh, kw, cout, cin): each is one multiply-add per element per position.
    return height * width * kernel[0] * kernel[1] * kernel[2] * kernel[3]


def macs_per_image(model, image_shape=None):
    """Multiply-accumulates of one image through the convolutions and dense layers.

    The papers' "FLOPs" (LeNet-5 433K, ResNet-34-8x 1.16G) count the same
    multiply-adds, plus small extras for pooling and activations. Layers with
    weights that it does not count (attention, recurrent or 1D/3D
    convolutions, say) are named in a warning (`uncounted_layers`).

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
    uncounted = uncounted_layers(model)
    if uncounted:
        warnings.warn(f"{model.name}: the multiply-adds of these layers are not counted: "
                      f"{', '.join(uncounted[:5])}{f' and {len(uncounted) - 5} more' if len(uncounted) > 5 else ''}",
                      stacklevel=2)
    return int(sum(_layer_macs(layer) for layer in _layers(model)))


def uncounted_layers(model):
    """Layers with weights whose multiply-adds `macs_per_image` leaves out, as "name (Type)".

    Example:
    >>> uncounted_layers(model_with_attention)
    ['attention (MultiHeadAttention)']
    """
    return [f"{layer.name} ({type(layer).__name__})" for layer in _layers(model)
            if layer.weights and type(layer).__name__ not in _COUNTED + _ELEMENTWISE]


def batchnorm_layers(model):
    """Number of BatchNorm layers the BatchNorm prior can read: a Keras model's, or those in a SavedModel's graph."""
    return len(objectives.batchnorm_probe(model)[0])


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

"""DeepLabV3 segmentation teachers and students (paper Sec. 4.3, Table 7).

A backbone from `keras.applications`, built without downloads and made
atrous: the strides that would take its output below `output_stride` are
removed and the convolutions after them dilated instead (Chen et al., 2017),
so the ImageNet weights of the original layout still fit (`backbone_weights`,
a local `keras.applications` "notop" file). On top, DeepLabV3's head: atrous
spatial pyramid pooling (ASPP: a 1x1 branch, three 3x3 atrous branches and an
image-pooling branch), a 3x3 convolution and a 1x1 classifier, bilinearly
upsampled to the input size. The models take images of any size, so a teacher
trained on 128x128 crops is evaluated on whole 256x341 images and distilled on
generated 128x128 ones.

Example:
>>> model = deeplab_v3((None, None, 3), 11, backbone="mobilenet_v2")
>>> model.output_shape
(None, None, None, 11)
"""

import keras
import tensorflow as tf
from keras import layers

from dfad_tf.models.classifiers import pytorch_batchnorm_momentum

_BN = dict(momentum=0.9, epsilon=1e-5)  # PyTorch's defaults, as in the classifiers

# backbone -> (applications builder, its output layer at the end of the last stage)
BACKBONES = {
    "resnet50": (keras.applications.ResNet50, "conv5_block3_out"),
    # The last inverted-residual block, without the final 1x1 expansion to 1280 channels, as in
    # the DeepLab implementations the paper's authors used.
    "mobilenet_v2": (keras.applications.MobileNetV2, "block_16_project_BN"),
}
OUTPUT_STRIDES = (8, 16)


@keras.saving.register_keras_serializable(package="dfad_tf")
class ResizeLike(layers.Layer):
    """Bilinearly resizes its first input to the height and width of its second.

    Both may have unknown sizes: the target size is read at run time. A 1x1
    first input is broadcast (DeepLabV3's image-pooling branch).

    Example:
    >>> upsampled = ResizeLike(name="upsample")([logits, images])
    """

    def call(self, inputs):
        features, reference = inputs
        # tf.image, not keras.ops.image: Keras's checks the size in Python, which fails for sizes known
        # only at run time (a SavedModel or TFLite export of a model that takes any size).
        return tf.image.resize(features, tf.shape(reference)[1:3], method="bilinear")

    def compute_output_shape(self, input_shapes):
        features, reference = input_shapes
        return (features[0], reference[1], reference[2], features[3])


def _strides(layer):
    return tuple(layer.get_config().get("strides") or (1, 1))


def _atrous_plan(network, output_stride):
    """Which layers change to make `network` atrous, as `{layer name: config changes}`.

    Walks the layers in order, multiplying the running stride at each stride-2
    layer until `output_stride` is reached; every later stride-2 layer becomes
    stride 1 and doubles the dilation of the convolutions that follow. A
    "valid" stride-2 convolution padded by a ZeroPadding2D layer (MobileNetV2)
    becomes "same", and its padding layer a no-op.
    """
    plan, stride, dilation = {}, 1, 1
    producers = {id(layer.output): layer for layer in network.layers}
    downsampled = {}  # input tensor -> changes of the stride-2 layers reading it (a block and its shortcut)
    for layer in network.layers:
        kernel = layer.get_config().get("kernel_size", (1, 1))
        if _strides(layer) == (2, 2):
            if id(layer.input) not in downsampled:
                downsampled[id(layer.input)] = None if stride < output_stride else dilation
                if stride < output_stride:
                    stride *= 2
                else:
                    dilation *= 2
            dilation_here = downsampled[id(layer.input)]
            if dilation_here is None:
                continue
            changes = {"strides": (1, 1)}
            if max(kernel) > 1:
                changes.update(padding="same", dilation_rate=(dilation_here, dilation_here))
                padding = producers.get(id(layer.input))
                if isinstance(padding, layers.ZeroPadding2D):
                    plan[padding.name] = {"padding": ((0, 0), (0, 0))}
            plan[layer.name] = changes
        elif dilation > 1 and max(kernel) > 1:
            plan[layer.name] = {"dilation_rate": (dilation, dilation)}
    return plan


def atrous_backbone(name, input_shape, output_stride=16, width=1.0, weights=None):
    """A `keras.applications` backbone whose features have `output_stride`.

    Its BatchNorm layers take PyTorch's momentum (0.9 in Keras's terms), as
    the rest of dfad_tf's models.

    Args:
        name: a key of `BACKBONES`: "resnet50" or "mobilenet_v2".
        input_shape: `(height, width, channels)`; heights and widths may be None.
        output_stride: 8 or 16: input size over feature size.
        width: MobileNetV2's width multiplier (alpha); ResNet-50 has none.
        weights: optional local weights file of the original (non-atrous)
            backbone without its top, e.g. keras.applications'
            `resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5`.

    Returns:
        A `keras.Model` from images to features.

    Example:
    >>> atrous_backbone("resnet50", (128, 128, 3), 8).output_shape
    (None, 16, 16, 2048)
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output stride must be 8 or 16, got {output_stride!r}")
    builder, output_layer = BACKBONES[name]
    arguments = dict(input_shape=tuple(input_shape), include_top=False, weights=weights)
    if name == "mobilenet_v2":
        arguments["alpha"] = width
    elif width != 1.0:
        raise ValueError(f"{name} has no width multiplier (got {width})")
    network = builder(**arguments)
    network = keras.Model(network.inputs, network.get_layer(output_layer).output, name=name)
    plan = _atrous_plan(network, output_stride)

    pytorch_batchnorm_momentum(network)  # before cloning: the clones take it from the layers' configs

    def atrous(layer):
        return layer.__class__.from_config({**layer.get_config(), **plan.get(layer.name, {})})

    atrous_network = keras.models.clone_model(network, clone_function=atrous,
                                              input_tensors=[keras.Input(tuple(input_shape), name="image")])
    atrous_network.set_weights(network.get_weights())  # stride and dilation leave every weight's shape alone
    return atrous_network


def _conv_bn_relu(x, filters, kernel, name, dilation=1):
    x = layers.Conv2D(filters, kernel, padding="same", dilation_rate=dilation, use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(**_BN, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def deeplab_v3(input_shape, num_classes, backbone="resnet50", output_stride=16, width=1.0, head_filters=256,
               backbone_weights=None, name=None):
    """DeepLabV3: an atrous backbone, ASPP and a classifier upsampled to the input size.

    Args:
        input_shape: `(height, width, channels)`; None sizes take any image.
        num_classes: number of per-pixel logits.
        backbone: "resnet50" (the paper's teacher) or "mobilenet_v2" (its student).
        output_stride: 16 (ASPP rates 6, 12, 18) or 8 (rates 12, 24, 36).
        width: MobileNetV2's width multiplier; also scales `head_filters`,
            so `width=0.5` is a half-width copy of the whole network.
        head_filters: channels of the ASPP branches and the head at width 1.
        backbone_weights: optional local weights file of the backbone (see
            `atrous_backbone`); the head always starts from scratch.
        name: model name (default `deeplabv3_BACKBONE`).

    Returns:
        A `keras.Model` mapping `(batch, h, w, c)` images to `(batch, h, w,
        num_classes)` logits.

    Example:
    >>> deeplab_v3((None, None, 3), 13, "mobilenet_v2", output_stride=8, width=0.5).count_params()
    """
    features_model = atrous_backbone(backbone, input_shape, output_stride, width, backbone_weights)
    filters = max(8, round(head_filters * width))
    rates = (6, 12, 18) if output_stride == 16 else (12, 24, 36)
    images, features = features_model.inputs[0], features_model.output  # one flat model: every layer visible
    branches = [_conv_bn_relu(features, filters, 1, "aspp_1x1")]
    branches += [_conv_bn_relu(features, filters, 3, f"aspp_rate{rate}", dilation=rate) for rate in rates]
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pool")(features)
    pooled = _conv_bn_relu(pooled, filters, 1, "aspp_pool")
    branches.append(ResizeLike(name="aspp_pool_broadcast")([pooled, features]))
    x = layers.Concatenate(name="aspp_concat")(branches)
    x = _conv_bn_relu(x, filters, 1, "aspp_project")
    x = _conv_bn_relu(x, filters, 3, "head")
    x = layers.Conv2D(num_classes, 1, name="classifier")(x)
    logits = ResizeLike(name="upsample")([x, images])
    return keras.Model(images, logits, name=name or f"deeplabv3_{backbone}")

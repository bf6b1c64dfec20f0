"""Teacher and student classifiers of the paper (Tables 5 and 6).

All models are plain functional `keras.Model`s made of built-in layers, so a
saved `.keras` file reloads with `keras.saving.load_model` and no custom objects.
Each builder takes the Keras module to build with: `keras` (Keras 3) by
default, or `tf_keras` for the twin that tensorflow-model-optimization needs.
"""

import keras

# PyTorch's BatchNorm defaults, which the paper's reference code uses.
_BN = dict(momentum=0.9, epsilon=1e-5)


def lenet5(input_shape, num_classes, width=1.0, name="lenet5", keras_module=keras):
    """LeNet-5 (paper Table 5); `width=0.5` gives LeNet-5-Half.

    Args:
        input_shape: `(height, width, channels)`, 32x32 in the paper.
        num_classes: number of output logits.
        width: multiplier on every layer's filter or unit count.
        name: model name.
        keras_module: `keras` or `tf_keras`.

    Returns:
        A `keras.Model` mapping images to logits.

    Example:
    >>> lenet5((32, 32, 1), 10).count_params()
    61706
    """
    layers = keras_module.layers
    filters = [max(1, round(f * width)) for f in (6, 16, 120, 84)]
    inputs = keras_module.Input(input_shape, name="image")
    x = layers.Conv2D(filters[0], 5, activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(filters[1], 5, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Conv2D(filters[2], 5, activation="relu", name="conv3")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(filters[3], activation="relu", name="fc1")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras_module.Model(inputs, outputs, name=name)


def _basic_block(layers, x, filters, stride, name):
    shortcut = x
    y = layers.Conv2D(filters, 3, stride, "same", use_bias=False, name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(**_BN, name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, 1, "same", use_bias=False, name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(**_BN, name=f"{name}_bn2")(y)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, stride, use_bias=False, name=f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(**_BN, name=f"{name}_proj_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def resnet(input_shape, num_classes, blocks_per_stage, stem="cifar", width=1.0, name="resnet", keras_module=keras):
    """ResNet with basic blocks: the paper's 8x-downsampling CIFAR layout or the standard ImageNet one.

    Four stages of basic blocks with 64, 128, 256 and 512 filters downsample by
    2 at the start of stages 2-4. The "cifar" stem (paper Table 6) is a 3x3
    convolution at full resolution, 8x downsampling in all; the "imagenet"
    stem (He et al., used for Caltech101) is a 7x7 stride-2 convolution and a
    3x3 stride-2 max-pool, 32x in all.

    Args:
        input_shape: `(height, width, channels)`: 32x32x3 for the CIFAR
            layout, 128x128x3 for Caltech101 in the paper.
        num_classes: number of output logits.
        blocks_per_stage: basic blocks in each of the four stages,
            `(2, 2, 2, 2)` for ResNet-18, `(3, 4, 6, 3)` for ResNet-34.
        stem: "cifar" or "imagenet".
        width: multiplier on every stage's filter count.
        name: model name.
        keras_module: `keras` or `tf_keras`.

    Returns:
        A `keras.Model` mapping images to logits.

    Example:
    >>> resnet((32, 32, 3), 10, (2, 2, 2, 2)).count_params()
    11183562
    >>> resnet((128, 128, 3), 101, (2, 2, 2, 2), stem="imagenet").count_params()
    11237925
    """
    layers = keras_module.layers
    inputs = keras_module.Input(input_shape, name="image")
    if stem == "cifar":
        x = layers.Conv2D(round(64 * width), 3, 1, "same", use_bias=False, name="stem_conv")(inputs)
    elif stem == "imagenet":
        x = layers.Conv2D(round(64 * width), 7, 2, "same", use_bias=False, name="stem_conv")(inputs)
    else:
        raise ValueError(f"unknown ResNet stem {stem!r}; choose cifar or imagenet")
    x = layers.BatchNormalization(**_BN, name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    if stem == "imagenet":
        x = layers.MaxPooling2D(3, 2, "same", name="stem_pool")(x)
    for stage, blocks in enumerate(blocks_per_stage):
        filters = round(64 * 2**stage * width)
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(layers, x, filters, stride, name=f"stage{stage + 1}_block{block + 1}")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras_module.Model(inputs, outputs, name=name)


def mobilenet(input_shape, num_classes, version="v2", width=1.0, name="mobilenet_v2", keras_module=keras):
    """MobileNetV2 or MobileNetV3 (Small/Large) from `applications`, built without downloads.

    Edge students for any teacher: any input size of at least 32x32 and any
    channel count; `width` is the networks' own width multiplier (alpha).
    Their BatchNorm moving averages use momentum 0.9 (as the paper's networks),
    not the applications' 0.999: a data-free student's statistics come from a
    generator that keeps changing, and at 0.999 they lag so far behind it that
    a MobileNetV3-Small student predicted one class in inference mode (0.10
    held-out accuracy, 0.41 with the same weights and statistics of the
    current generator's images).

    Args:
        input_shape: `(height, width, channels)`.
        num_classes: number of output logits.
        version: "v2", "v3_small" or "v3_large".
        width: width multiplier.
        name: model name.
        keras_module: `keras` or `tf_keras`.

    Returns:
        A functional model mapping images to logits (no softmax, no built-in
        rescaling: it takes the teacher's inputs as they are).

    Example:
    >>> mobilenet((32, 32, 1), 10, "v3_small", width=0.75).output_shape
    (None, 10)
    """
    applications = keras_module.applications
    common = dict(input_shape=tuple(input_shape), alpha=width, weights=None, classes=num_classes,
                  classifier_activation=None)
    if version == "v2":
        network = applications.MobileNetV2(**common)
    elif version in ("v3_small", "v3_large"):
        builder = applications.MobileNetV3Small if version == "v3_small" else applications.MobileNetV3Large
        network = builder(**common, include_preprocessing=False)
    else:
        raise ValueError(f"unknown MobileNet version {version!r}; choose v2, v3_small or v3_large")
    pytorch_batchnorm_momentum(network, keras_module)
    return keras_module.Model(network.inputs, network.outputs, name=name)


def pytorch_batchnorm_momentum(network, keras_module=keras):
    """Gives an `applications` network's BatchNorm layers PyTorch's momentum (0.9 in Keras's terms), in place.

    The applications' 0.999 lets the moving statistics trail by thousands of
    steps a network trained from scratch, or a data-free student whose inputs
    keep changing (see `mobilenet`).
    """
    for layer in network.layers:
        if isinstance(layer, keras_module.layers.BatchNormalization):
            layer.momentum = _BN["momentum"]

"""Generators that turn latent noise into images (paper Table 4).

Both take any image size and channel count: the first feature map is the
image size divided by the total upsampling factor, rounded up, and the output
is centre-cropped when the size does not divide evenly.
"""

import math

import keras
import tensorflow as tf
from keras import layers


@keras.saving.register_keras_serializable(package="dfad_tf")
class FusedBatchNormalization(layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose training pass is TensorFlow's fused kernel.

    Keras computes a training batch's mean and variance and normalises with
    four separate passes over the activations, casting bfloat16 ones to
    float32 and back; `FusedBatchNormV3` does it in one pass in the input's
    type. The generator runs its BatchNorm layers in training mode k + 1 times
    per DFAD iteration, where they took a quarter of the float32 time and
    two fifths of the bfloat16 time (`benchmarks/op_profile.py`). Same weights,
    configuration, moving-statistics update and inference pass as Keras's
    layer; cases the fused kernel does not cover (a mask, renormalisation,
    synchronised statistics, another axis or rank) take Keras's path.

    Example:
    >>> layer = FusedBatchNormalization(momentum=0.9, epsilon=1e-5)
    >>> layer(images, training=True).shape == images.shape
    True
    """

    def call(self, inputs, training=None, mask=None):
        rank = len(inputs.shape)
        if (not (training and self.trainable) or mask is not None or self.renorm or self.synchronized
                or rank != 4 or self.axis not in (-1, 3)):
            return super().call(inputs, training=training, mask=mask)
        inputs = tf.cast(inputs, self.compute_dtype)
        channels = inputs.shape[-1]
        scale = self.gamma if self.scale else tf.ones([channels], "float32")
        offset = self.beta if self.center else tf.zeros([channels], "float32")
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, tf.cast(scale, "float32"), tf.cast(offset, "float32"), epsilon=self.epsilon,
            is_training=True)[:3]
        # The kernel returns the unbiased variance for the running average; Keras averages the biased one.
        count = tf.cast(tf.size(inputs) // channels, "float32")
        variance = variance * (count - 1.0) / count
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return outputs


@keras.saving.register_keras_serializable(package="dfad_tf")
class UpsampleConv2D(layers.Conv2D):
    """Nearest-neighbour 2x upsampling then a 3x3 "same" convolution, in 4/9 of the work.

    Over a nearest-upsampled map, a 3x3 window reads only 2x2 distinct input
    pixels: even output rows read input rows i - 1 and i with kernel rows 0 and
    1 + 2 summed, odd ones rows i and i + 1 with kernel rows 0 + 1 and 2 (the
    same for columns). That is one stride-2 transposed convolution of the
    input with a 4x4 kernel of summed taps, so the upsampled map is never
    built. Same weights (a 3x3 kernel and a bias) and outputs as
    `UpSampling2D(2)` followed by `Conv2D(filters, 3, padding="same")`;
    these convolutions were most of a DFAD iteration's float32 time
    (`benchmarks/op_profile.py`).

    Example:
    >>> layer = UpsampleConv2D(8)
    >>> layer(tf.zeros((2, 7, 7, 4))).shape
    TensorShape([2, 14, 14, 8])
    """

    def __init__(self, filters, **kwargs):
        kwargs.setdefault("kernel_size", 3)
        kwargs.setdefault("padding", "same")
        super().__init__(filters, **kwargs)
        if self.kernel_size != (3, 3) or self.padding != "same" or self.strides != (1, 1) \
                or self.dilation_rate != (1, 1) or self.groups != 1 or self.data_format != "channels_last":
            raise ValueError("UpsampleConv2D is a 3x3, stride-1, 'same', channels-last convolution")

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        return (batch, None if height is None else 2 * height, None if width is None else 2 * width,
                self.filters)

    def call(self, inputs):
        kernel = _summed_taps(_summed_taps(tf.convert_to_tensor(self.kernel), axis=0), axis=1)
        shape = tf.shape(inputs)
        outputs = tf.nn.conv2d_transpose(inputs, tf.transpose(kernel, [0, 1, 3, 2]),
                                         [shape[0], 2 * shape[1], 2 * shape[2], self.filters], 2, "SAME")
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, tf.convert_to_tensor(self.bias))
        return self.activation(outputs) if self.activation is not None else outputs


def _summed_taps(kernel, axis):
    """A 3x3 kernel's taps along `axis` as the 4 taps of `UpsampleConv2D`'s transposed convolution.

    With stride 2 and "same" padding, that convolution gives output row 2i the
    input rows i - 1 and i through its taps 3 and 1, and row 2i + 1 the rows i
    and i + 1 through its taps 2 and 0.
    """
    first, middle, last = tf.unstack(kernel, axis=axis)
    return tf.stack([last, middle + last, first + middle, first], axis=axis)


_BN = dict(momentum=0.9, epsilon=1e-5)


def _project(latent_dim, image_shape, channels, upsampling, bn):
    """Latent input, then FC -> reshape -> BN to the first feature map."""
    height, width = image_shape[:2]
    init = (math.ceil(height / upsampling), math.ceil(width / upsampling))
    z = keras.Input((latent_dim,), name="latent")
    x = layers.Dense(channels * init[0] * init[1], name="project")(z)
    x = layers.Reshape((*init, channels), name="reshape")(x)
    x = FusedBatchNormalization(**bn, name="project_bn")(x)
    return z, x


def _to_image(z, x, image_shape, standardize_output, bn, name):
    """3x3 conv to the image channels, tanh and, with `standardize_output`, a non-affine BN; crop; the model."""
    x = layers.Conv2D(image_shape[-1], 3, padding="same", name="to_image")(x)
    x = layers.Activation("tanh", name="tanh")(x)
    if standardize_output:
        x = FusedBatchNormalization(center=False, scale=False, **bn, name="out_bn")(x)
    height, width = image_shape[:2]
    if x.shape[1:3] != (height, width):
        x = layers.CenterCrop(height, width, name="crop")(x)
    return keras.Model(z, x, name=name)


def generator_a(latent_dim, image_shape, width=64, synchronized_batchnorm=False, standardize_output=True,
                name="generator_a"):
    """Generator-A: nearest-neighbour upsampling, for MNIST and CIFAR.

    FC, reshape, BN; 2x upsample, 3x3 conv (2*width), BN, LeakyReLU(0.2);
    2x upsample, 3x3 conv (width), BN, LeakyReLU(0.2); 3x3 conv to the image
    channels, tanh, and (as published) a non-affine BN that standardises each
    channel of the batch.

    Args:
        latent_dim: length of the noise vector.
        image_shape: `(height, width, channels)` of the images to produce.
        width: base filter count (64 in the paper).
        synchronized_batchnorm: compute BatchNorm statistics over the global
            batch of a `tf.distribute` strategy, not each replica's part.
        standardize_output: end with the non-affine BN (the paper's); False
            ends at the tanh, whose values in [-1, 1] can then be read as
            pixels from black to white (`conventions.from_tanh_pixels`).
        name: model name.

    Returns:
        A `keras.Model` mapping `(batch, latent_dim)` to images.

    Example:
    >>> generator_a(256, (32, 32, 1)).output_shape
    (None, 32, 32, 1)
    """
    bn = dict(_BN, synchronized=synchronized_batchnorm)
    z, x = _project(latent_dim, image_shape, 2 * width, upsampling=4, bn=bn)
    for i, filters in enumerate((2 * width, width), start=1):
        x = UpsampleConv2D(filters, name=f"conv{i}")(x)
        x = FusedBatchNormalization(**bn, name=f"bn{i}")(x)
        x = layers.LeakyReLU(0.2, name=f"lrelu{i}")(x)
    return _to_image(z, x, image_shape, standardize_output, bn, name)


def generator_b(latent_dim, image_shape, width=64, synchronized_batchnorm=False, standardize_output=False,
                name="generator_b"):
    """Generator-B: DCGAN-style transposed convolutions, for larger images.

    FC, reshape, BN; four 3x3 stride-2 transposed convolutions with 8, 4, 2
    and 1 times `width` filters, each with BN and LeakyReLU(0.2); a 3x3 conv
    to the image channels and tanh.

    Args:
        latent_dim: length of the noise vector.
        image_shape: `(height, width, channels)` of the images to produce.
        width: base filter count (64 in the paper).
        synchronized_batchnorm: as for `generator_a`.
        standardize_output: end with a non-affine BN as Generator-A does
            (not the paper's Generator-B).
        name: model name.

    Returns:
        A `keras.Model` mapping `(batch, latent_dim)` to images.

    Example:
    >>> generator_b(256, (128, 128, 3)).output_shape
    (None, 128, 128, 3)
    """
    bn = dict(_BN, synchronized=synchronized_batchnorm)
    z, x = _project(latent_dim, image_shape, 8 * width, upsampling=16, bn=bn)
    for i, multiple in enumerate((8, 4, 2, 1), start=1):
        x = layers.Conv2DTranspose(
            multiple * width, 3, 2, padding="same", use_bias=False, name=f"deconv{i}"
        )(x)
        x = FusedBatchNormalization(**bn, name=f"bn{i}")(x)
        x = layers.LeakyReLU(0.2, name=f"lrelu{i}")(x)
    return _to_image(z, x, image_shape, standardize_output, bn, name)

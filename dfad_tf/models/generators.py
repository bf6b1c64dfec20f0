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


def _to_image(z, x, image_shape, name):
    height, width = image_shape[:2]
    if x.shape[1:3] != (height, width):
        x = layers.CenterCrop(height, width, name="crop")(x)
    return keras.Model(z, x, name=name)


def generator_a(latent_dim, image_shape, width=64, synchronized_batchnorm=False, name="generator_a"):
    """Generator-A: nearest-neighbour upsampling, for MNIST and CIFAR.

    FC, reshape, BN; 2x upsample, 3x3 conv (2*width), BN, LeakyReLU(0.2);
    2x upsample, 3x3 conv (width), BN, LeakyReLU(0.2); 3x3 conv to the image
    channels, tanh, and a non-affine BN that standardises each channel.

    Args:
        latent_dim: length of the noise vector.
        image_shape: `(height, width, channels)` of the images to produce.
        width: base filter count (64 in the paper).
        synchronized_batchnorm: compute BatchNorm statistics over the global
            batch of a `tf.distribute` strategy, not each replica's part.
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
        x = layers.UpSampling2D(2, interpolation="nearest", name=f"up{i}")(x)
        x = layers.Conv2D(filters, 3, padding="same", name=f"conv{i}")(x)
        x = FusedBatchNormalization(**bn, name=f"bn{i}")(x)
        x = layers.LeakyReLU(0.2, name=f"lrelu{i}")(x)
    x = layers.Conv2D(image_shape[-1], 3, padding="same", name="to_image")(x)
    x = layers.Activation("tanh", name="tanh")(x)
    x = FusedBatchNormalization(center=False, scale=False, **bn, name="out_bn")(x)
    return _to_image(z, x, image_shape, name)


def generator_b(latent_dim, image_shape, width=64, synchronized_batchnorm=False, name="generator_b"):
    """Generator-B: DCGAN-style transposed convolutions, for larger images.

    FC, reshape, BN; four 3x3 stride-2 transposed convolutions with 8, 4, 2
    and 1 times `width` filters, each with BN and LeakyReLU(0.2); a 3x3 conv
    to the image channels and tanh.

    Args:
        latent_dim: length of the noise vector.
        image_shape: `(height, width, channels)` of the images to produce.
        width: base filter count (64 in the paper).
        synchronized_batchnorm: as for `generator_a`.
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
    x = layers.Conv2D(image_shape[-1], 3, padding="same", name="to_image")(x)
    x = layers.Activation("tanh", name="tanh")(x)
    return _to_image(z, x, image_shape, name)

"""What a generator optimises: one weighted objective for every generator-based method.

DFAD, DAFL and DFQ-style methods differ only in the weights of a few terms
computed on the generated images `x` (the shape of the public DataFree
benchmark):

- `adversarial`: `-D(T(x), S(x))`, the negated teacher-student discrepancy
  (DFAD's only term; the generator seeks images the student gets wrong).
- `batchnorm`: distance of the batch statistics at each of the teacher's
  BatchNorm inputs to that layer's running mean and variance (DeepInversion,
  DFQ): a prior that generated images look like the teacher's training data.
- `batchnorm_kl`: the same prior measured so that its size does not depend on
  the teacher: the mean over BatchNorm layers and channels of the KL
  divergence from the batch's Gaussian to the running one, 0 on data like the
  teacher's training data whatever its widths, depth or activation scale.
- `one_hot`: cross-entropy of the teacher's prediction with its own argmax
  (DAFL): images the teacher classifies confidently.
- `activation`: minus the mean absolute activation of the teacher's features
  before its last dense layer (DAFL).
- `balance`: minus the entropy of the teacher's mean prediction over the batch
  (DAFL's information entropy): every class equally often.
- `smoothness`: the images' total variation relative to their standard
  deviation (an image prior as in DeepInversion, needing nothing of the
  teacher but its outputs, so it also serves SavedModel teachers).

Example:
>>> objective = GeneratorObjective(teacher, losses.get("mae"), METHOD_WEIGHTS["dafl"])
>>> loss = objective(generator(noise, training=True), student)
"""

import keras
import tensorflow as tf
from keras import ops

TERMS = ("adversarial", "batchnorm", "batchnorm_kl", "one_hot", "activation", "balance", "smoothness")
BATCHNORM_TERMS = ("batchnorm", "batchnorm_kl")

# The generator-based methods of the paper's Table 2 and the DataFree benchmark.
# DAFL's weights are those of its paper (one-hot 1, activation 0.1, entropy 5).
METHOD_WEIGHTS = {
    "dfad": {"adversarial": 1.0},
    "dfad_bn": {"adversarial": 1.0, "batchnorm": 1.0},
    "dafl": {"one_hot": 1.0, "activation": 0.1, "balance": 5.0},
}


class GeneratorObjective:
    """The generator's loss: a weighted sum of the terms in `TERMS`.

    The teacher runs in inference mode; the student is only run when the
    `adversarial` weight is non-zero. The `batchnorm` and `activation` terms
    read the teacher's inner layers, so they need a functional Keras teacher
    (not a SavedModel wrapped in `TFSMLayer`).

    Args:
        teacher: the frozen teacher `keras.Model`.
        discrepancy: `keras.losses.Loss` taking `(teacher_outputs, student_outputs)`.
        weights: mapping of term name to weight; missing terms weigh 0.
            Default: `{"adversarial": 1.0}` (DFAD).

    Example:
    >>> objective = GeneratorObjective(teacher, losses.get("mae"), {"adversarial": 1, "batchnorm": 0.1})
    >>> objective.weights["batchnorm"]
    0.1
    """

    def __init__(self, teacher, discrepancy, weights=None):
        self.weights = check_weights({"adversarial": 1.0} if weights is None else weights)
        self.teacher = teacher
        self.discrepancy = discrepancy
        self._batchnorms = []
        self._probe = None
        if self._uses_batchnorm or self.weights["activation"]:
            self._probe = self._build_probe(teacher)

    @property
    def _uses_batchnorm(self):
        return any(self.weights[term] for term in BATCHNORM_TERMS)

    def _build_probe(self, teacher):
        """A model sharing the teacher's layers that also returns its features and BN inputs."""
        try:
            dense = [layer for layer in teacher.layers if isinstance(layer, keras.layers.Dense)]
            if self._uses_batchnorm:
                self._batchnorms = batchnorm_layers(teacher)
            features = [dense[-1].input] if dense and self.weights["activation"] else []
            bn_inputs = [layer.input for layer in self._batchnorms]
        except (AttributeError, ValueError) as error:
            raise ValueError("the batchnorm and activation terms need a functional Keras teacher whose inner "
                             f"layers can be read ({teacher.name} is not one)") from error
        if self._uses_batchnorm and not bn_inputs:
            raise ValueError(f"the batchnorm terms need a teacher with BatchNormalization layers; {teacher.name} "
                             "has none")
        if self.weights["activation"] and not features:
            raise ValueError(f"the activation term needs a teacher with a Dense layer; {teacher.name} has none")
        return keras.Model(teacher.inputs, [teacher.outputs[0], *features, *bn_inputs])

    def __call__(self, images, student):
        """The generator's loss on `images` (call inside the generator's gradient tape)."""
        if self._probe is None:
            teacher_outputs, inner = self.teacher(images, training=False), []
        else:
            teacher_outputs, *inner = self._probe(images, training=False)
        terms = {}
        if self.weights["adversarial"]:
            terms["adversarial"] = -self.discrepancy(teacher_outputs, student(images, training=True))
        if self.weights["activation"]:
            terms["activation"] = activation_loss(inner.pop(0))
        if self.weights["batchnorm"]:
            terms["batchnorm"] = batchnorm_statistics_loss(inner, self._batchnorms)
        if self.weights["batchnorm_kl"]:
            terms["batchnorm_kl"] = ops.mean(ops.stack([ops.mean(batchnorm_kl(inputs, layer))
                                                        for inputs, layer in zip(inner, self._batchnorms)]))
        if self.weights["one_hot"]:
            terms["one_hot"] = one_hot_loss(teacher_outputs)
        if self.weights["balance"]:
            terms["balance"] = balance_loss(teacher_outputs)
        if self.weights["smoothness"]:
            terms["smoothness"] = smoothness_loss(images)
        # Like Keras's own losses (the adversarial term), each replica's share is its mean divided by
        # the number of replicas, so that the gradients summed over replicas are those of the mean.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return sum(self.weights[term] * (value if term == "adversarial" else value / replicas)
                   for term, value in terms.items())


def check_weights(weights):
    """`weights` over all of `TERMS` (missing ones 0.0); a ValueError if they are not valid weights.

    Args:
        weights: mapping of term name to a weight >= 0, at least one positive.
    """
    unknown = sorted(set(weights) - set(TERMS))
    if unknown:
        raise ValueError(f"unknown generator loss term(s) {', '.join(unknown)}; choose from {', '.join(TERMS)}")
    if any(value < 0 for value in weights.values()):
        raise ValueError(f"generator loss weights must be >= 0, got {dict(weights)}")
    if not any(weights.values()):
        raise ValueError("at least one generator loss weight must be positive")
    return {term: float(weights.get(term, 0.0)) for term in TERMS}


def batchnorm_statistics_loss(bn_inputs, batchnorms):
    """Sum over BN layers of `||mean - running_mean||_2 + ||var - running_var||_2`.

    Args:
        bn_inputs: the inputs of each BatchNormalization layer, `(batch, ..., channels)`.
        batchnorms: the matching `keras.layers.BatchNormalization` layers.
    """
    total = 0.0
    for inputs, layer in zip(bn_inputs, batchnorms):
        axes = tuple(range(len(inputs.shape) - 1))
        mean, variance = ops.moments(ops.cast(inputs, "float32"), axes=axes)
        total += ops.norm(mean - layer.moving_mean) + ops.norm(variance - layer.moving_variance)
    return total


def batchnorm_layers(teacher):
    """The teacher's BatchNormalization layers, in order; [] when it has none or none can be read (a SavedModel)."""
    return [layer for layer in getattr(teacher, "layers", []) if isinstance(layer, keras.layers.BatchNormalization)]


def batchnorm_probe(teacher, layers):
    """A model sharing the teacher's layers that returns the inputs of `layers`; None if they cannot be read.

    Args:
        teacher: a Keras model.
        layers: some of its `batchnorm_layers`, at least one.

    Returns:
        A `keras.Model` returning a dict from each layer's name to its inputs
        (a dict, as Keras would unwrap a list of one), or None.

    Example:
    >>> first = batchnorm_layers(teacher)[0]
    >>> first_inputs = batchnorm_probe(teacher, [first])(images)[first.name]
    """
    try:
        return keras.Model(teacher.input, {layer.name: layer.input for layer in layers})
    except (AttributeError, ValueError):  # a layer used twice, or a subclassed teacher: no single input to read
        return None


def readable_batchnorms(teacher):
    """The teacher's BatchNormalization layers whose inputs a model sharing its layers can return; else []."""
    layers = batchnorm_layers(teacher)
    return layers if layers and batchnorm_probe(teacher, layers) is not None else []


def batchnorm_kl(inputs, layer):
    """Per channel, KL(N(batch mean, batch variance) || N(moving mean, moving variance)) at a BatchNorm input.

    Args:
        inputs: the layer's inputs, `(batch, ..., channels)`.
        layer: the `keras.layers.BatchNormalization` layer.

    Returns:
        A `(channels,)` tensor: 0 where the batch has the running statistics.
    """
    axes = tuple(range(len(inputs.shape) - 1))
    mean, variance = ops.moments(ops.cast(inputs, "float32"), axes=axes)
    running_variance = layer.moving_variance + layer.epsilon
    ratio = (variance + layer.epsilon) / running_variance
    return 0.5 * (ratio + ops.square(mean - layer.moving_mean) / running_variance - 1 - ops.log(ratio))


def one_hot_loss(logits):
    """Cross-entropy of `logits` with their own argmax, averaged over the batch."""
    labels = ops.argmax(logits, axis=-1)
    return ops.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))


def activation_loss(features):
    """Minus the mean absolute feature activation."""
    return -ops.mean(ops.abs(features))


def balance_loss(logits):
    """`sum_c p_c log p_c` of the batch-mean softmax `p`: minus its entropy."""
    mean_probabilities = ops.mean(ops.softmax(logits, axis=-1), axis=0)
    return ops.sum(mean_probabilities * ops.log(mean_probabilities + 1e-8))


def smoothness_loss(images):
    """Mean absolute difference of neighbouring pixels over the images' standard deviation.

    Dividing by the standard deviation makes it the same in every input
    convention (an affine map of the pixels) and stops the generator from
    lowering it by flattening its images. Real digits score 0.30 here, an
    untrained Generator-A's images 1.35.

    Args:
        images: `(batch, height, width, channels)`.
    """
    images = ops.cast(images, "float32")
    variation = (ops.mean(ops.abs(images[:, 1:] - images[:, :-1]))
                 + ops.mean(ops.abs(images[:, :, 1:] - images[:, :, :-1])))
    return variation / (ops.std(images) + 1e-6)

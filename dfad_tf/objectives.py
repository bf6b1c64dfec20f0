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

import functools

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from dfad_tf import savedmodel_batchnorm

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
    `adversarial` weight is non-zero, in training mode as in DFAD unless
    `student_training` is False. The `batchnorm` terms read the teacher's
    BatchNorm layers (`batchnorm_probe`: a functional Keras teacher, or a
    SavedModel whose graph holds them); the `activation` term reads its last
    Dense layer, so it needs a functional Keras teacher.

    Args:
        teacher: the frozen teacher `keras.Model`.
        discrepancy: `keras.losses.Loss` taking `(teacher_outputs, student_outputs)`.
        weights: mapping of term name to weight; missing terms weigh 0.
            Default: `{"adversarial": 1.0}` (DFAD).
        student_training: run the student in training mode for the
            `adversarial` term (DFAD's: its BatchNorm layers normalise with
            the batch's statistics). False runs it in inference mode (their
            moving statistics): a student that normalises with the batch's
            statistics magnifies the faint contrast of near-uniform images,
            which the teacher sees as flat, so the generator can win by
            making such images, and did (README "Recipes").

    Example:
    >>> objective = GeneratorObjective(teacher, losses.get("mae"), {"adversarial": 1, "batchnorm": 0.1})
    >>> objective.weights["batchnorm"]
    0.1
    """

    def __init__(self, teacher, discrepancy, weights=None, student_training=True):
        self.weights = check_weights({"adversarial": 1.0} if weights is None else weights)
        self.teacher = teacher
        self.discrepancy = discrepancy
        self.student_training = student_training
        self._batchnorms = []
        self._probe = None
        if self._uses_batchnorm or self.weights["activation"]:
            self._probe = self._build_probe(teacher)

    @property
    def _uses_batchnorm(self):
        return uses_batchnorm(self.weights)

    def _build_probe(self, teacher):
        """A function of images returning the teacher's outputs, then its features and BN inputs as needed."""
        if not self.weights["activation"]:  # the batchnorm terms alone: Keras and SavedModel teachers alike
            self._batchnorms, probe = batchnorm_probe(teacher)
            if not self._batchnorms:
                raise ValueError(f"the batchnorm terms need a teacher with BatchNormalization layers that can be "
                                 f"read; {teacher.name} has none")
            return probe
        try:
            dense = [layer for layer in teacher.layers if isinstance(layer, keras.layers.Dense)]
            if self._uses_batchnorm:
                self._batchnorms = _keras_batchnorms(teacher)
            features = [dense[-1].input] if dense else []
            bn_inputs = [layer.input for layer in self._batchnorms]
        except (AttributeError, ValueError) as error:
            raise ValueError("the activation term needs a functional Keras teacher whose inner layers can be read "
                             f"({teacher.name} is not one)") from error
        if self._uses_batchnorm and not bn_inputs:
            raise ValueError(f"the batchnorm terms need a teacher with BatchNormalization layers; {teacher.name} "
                             "has none")
        if not features:
            raise ValueError(f"the activation term needs a teacher with a Dense layer; {teacher.name} has none")
        return functools.partial(keras.Model(teacher.inputs, [teacher.outputs[0], *features, *bn_inputs]),
                                 training=False)

    def __call__(self, images, student):
        """The generator's loss on `images` (call inside the generator's gradient tape)."""
        if self._probe is None:
            teacher_outputs, inner = self.teacher(images, training=False), []
        else:
            teacher_outputs, *inner = self._probe(images)
        terms = {}
        if self.weights["adversarial"]:
            terms["adversarial"] = -self.discrepancy(teacher_outputs,
                                                     student(images, training=self.student_training))
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


def uses_batchnorm(weights):
    """Whether generator loss weights (as `check_weights` returns them) turn a BatchNorm prior on."""
    return any(weights[term] for term in BATCHNORM_TERMS)


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


def batchnorm_probe(teacher):
    """The teacher's BatchNorm layers and a function of images returning the teacher's outputs and their inputs.

    Reads the BatchNormalization layers of a functional Keras teacher, or those
    in the graph of a SavedModel teacher (a model around one
    `keras.layers.TFSMLayer`, as `model_files` loads it; see
    `savedmodel_batchnorm`).

    Args:
        teacher: a Keras model.

    Returns:
        `(layers, probe)`: per BatchNorm layer in order, an object with its
        `moving_mean`, `moving_variance` and `epsilon` (the Keras layer, or a
        `savedmodel_batchnorm.BatchNormStatistics`), and `probe(images)`
        returning `[teacher outputs, *each layer's inputs]` in inference mode.
        `([], None)` when the teacher has no BatchNorm layer that can be read.

    Example:
    >>> layers, probe = batchnorm_probe(teacher)
    >>> outputs, first_inputs, *_ = probe(images)
    """
    saved = [layer for layer in getattr(teacher, "layers", []) if isinstance(layer, keras.layers.TFSMLayer)]
    if saved:
        return _savedmodel_batchnorm_probe(teacher, saved)
    layers = _keras_batchnorms(teacher)
    if not layers:
        return [], None
    try:
        model = keras.Model(teacher.input, [teacher.outputs[0], *(layer.input for layer in layers)])
    except (AttributeError, ValueError):  # a layer used twice, or a subclassed teacher: no single input to read
        return [], None
    return layers, functools.partial(model, training=False)


def _keras_batchnorms(teacher):
    return [layer for layer in getattr(teacher, "layers", []) if isinstance(layer, keras.layers.BatchNormalization)]


def _savedmodel_batchnorm_probe(teacher, saved):
    """`batchnorm_probe` of a teacher whose only layer with weights is one SavedModel."""
    weighted = [layer for layer in teacher.layers if layer.weights and layer not in saved]
    if len(saved) != 1 or weighted:
        return [], None
    layers, probe = savedmodel_batchnorm.read_batchnorms(saved[0].call_endpoint_fn)
    if not layers:
        return [], None
    # The graph's output is the teacher's only if the model around the SavedModel merely passes it on.
    images = keras.random.uniform((2, *teacher.input_shape[1:]), seed=0)
    outputs = keras.tree.flatten(teacher(images, training=False))
    if len(outputs) != 1 or not np.allclose(probe(images)[0], outputs[0], rtol=1e-4, atol=1e-4):
        return [], None
    return layers, probe


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

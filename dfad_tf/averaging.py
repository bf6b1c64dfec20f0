"""Momentum averages of a model's weights: of the student (the student a run keeps) or of the generator.

DFAD's student follows a generator that keeps moving to wherever the student is
wrong now, so its held-out accuracy swings from epoch to epoch and the last
epoch's student can be far below the best one, which only labels could pick.
An average of its weights over its last iterations (Polyak averaging) smooths
those swings out without labels. Averaging the generator instead (MAD, Do et
al. 2022) gives the student images from where the generator has been over its
last iterations beside those from where it is now, so that it does not forget
what the generator's earlier states taught it.
"""

import keras
from keras import ops


class WeightAverage(keras.layers.Layer):
    """A moving average of a model's floating-point weights over its last updates.

    `update(model)` sets `average = m * average + (1 - m) * weight` for every
    floating-point weight, BatchNorm statistics included, with
    `m = min(momentum, n / (n + 3))` at the n-th update counted from 0:
    polynomial-decay averaging (Shamir and Zhang, 2013), which weighs the n
    updates so far by about the square of their number, so the average covers
    about the last third of them, until the exponential average of `momentum`
    (about `1 / (1 - momentum)` updates) takes over. Short runs thus average
    their own last iterations, not the weights they started from. The
    averages are non-trainable variables of the layer, so they are saved with
    the distiller's weights and a run resumed from a backup goes on averaging
    where it stopped. Under a `tf.distribute` strategy every replica computes
    the same average from the same weights; it is written as the first
    replica's (aggregation "only_first_replica").

    Args:
        model: the built model whose weights are averaged; the average starts at its weights.
        momentum: in [0, 1): the longest the average gets is about `1 / (1 - momentum)` updates.
        name: layer name (named in the error for a momentum out of range).

    Example:
    >>> average = WeightAverage(student, momentum=0.998)
    >>> average.update(student)  # after each training step
    >>> outputs = average.call_model(student, images)  # the student with the averaged weights
    >>> copy.set_weights(average.values(student.weights))  # copy: a clone of the student
    """

    def __init__(self, model, momentum, name="student_average", **kwargs):
        super().__init__(name=name, dtype="float32", **kwargs)
        if not 0 <= momentum < 1:
            raise ValueError(f"the average's momentum ({name}) must be in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.count = self.add_weight(shape=(), initializer="zeros", dtype="int64", trainable=False, name="count",
                                     aggregation="only_first_replica")
        self.averages = {}  # a model weight's path -> its average
        for weight in model.weights:
            if "float" in str(weight.dtype):
                average = self.add_weight(shape=weight.shape, initializer="zeros", trainable=False,
                                          name=weight.path.replace("/", "_"), aggregation="only_first_replica")
                average.assign(weight)
                self.averages[weight.path] = average
        self.built = True

    def update(self, model):
        """Moves every average a step towards `model`'s current weight."""
        count = ops.cast(self.count, "float32")
        momentum = ops.minimum(self.momentum, count / (count + 3))
        for weight in model.weights:
            if weight.path in self.averages:
                average = self.averages[weight.path]
                average.assign(momentum * average + (1 - momentum) * ops.cast(weight, "float32"))
        self.count.assign_add(1)

    def call_model(self, model, inputs, training=False):
        """`model(inputs)` with the averaged weights in place of its own; the model's variables are left as they are.

        In training mode BatchNorm layers normalise with the batch's
        statistics, as the generator does when it makes images for the student.
        """
        outputs, _ = model.stateless_call(self.values(model.trainable_variables),
                                          self.values(model.non_trainable_variables), inputs, training=training)
        return outputs

    def values(self, variables):
        """The averages of the model weights `variables`, in their dtypes; a weight not averaged as it is."""
        return [ops.cast(self.averages[v.path], v.dtype) if v.path in self.averages else v.value
                for v in variables]

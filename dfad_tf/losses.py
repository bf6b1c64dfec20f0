"""Discrepancy losses between teacher and student outputs.

Each loss compares `y_true` (teacher outputs) with `y_pred` (student outputs)
of any shape `(batch, ..., classes)`: logits of a classifier or per-pixel
logits of a segmentation model alike. The per-sample value averages over every
non-batch axis, so Keras's batch reduction (and its scaling by the number of
replicas under `tf.distribute`) gives the mean over all elements, the
`1/n ||T(x) - S(x)||_1` of the paper's Eq. 2.

Example:
>>> loss = get("mae")
>>> float(loss([[1.0, -1.0]], [[0.0, 0.0]]))
1.0
"""

import keras
from keras import ops


def _mean_over_sample(values):
    return ops.mean(values, axis=tuple(range(1, len(values.shape))))


def mean_absolute_discrepancy(y_true, y_pred):
    """Mean absolute difference of the outputs (the paper's default)."""
    return _mean_over_sample(ops.abs(y_true - y_pred))


def mean_squared_discrepancy(y_true, y_pred):
    """Mean squared difference of the outputs."""
    return _mean_over_sample(ops.square(y_true - y_pred))


def kl_discrepancy(y_true, y_pred):
    """KL(softmax(teacher) || softmax(student)) over the last axis."""
    log_p = ops.log_softmax(y_true, axis=-1)
    log_q = ops.log_softmax(y_pred, axis=-1)
    kl = ops.sum(ops.exp(log_p) * (log_p - log_q), axis=-1)
    return kl if len(kl.shape) == 1 else _mean_over_sample(kl)


def squared_plus_absolute_discrepancy(y_true, y_pred):
    """Sum of the mean squared and the mean absolute differences."""
    return mean_squared_discrepancy(y_true, y_pred) + mean_absolute_discrepancy(y_true, y_pred)


def standardize(logits, epsilon=1e-4):
    """Each output vector shifted and scaled to mean 0 and standard deviation 1 over the last axis.

    `epsilon` is added to the variance: a vector whose logits are (nearly) all
    equal, such as an untrained student's on a blank image, is scaled by at most
    100 instead of a huge factor that would blow its gradients up.
    """
    mean = ops.mean(logits, axis=-1, keepdims=True)
    return (logits - mean) / ops.sqrt(ops.var(logits, axis=-1, keepdims=True) + epsilon)


DISCREPANCIES = {
    "mae": mean_absolute_discrepancy,
    "mse": mean_squared_discrepancy,
    "kld": kl_discrepancy,
    "mse+mae": squared_plus_absolute_discrepancy,
}


@keras.saving.register_keras_serializable(package="dfad_tf")
class Discrepancy(keras.losses.Loss):
    """A discrepancy of `DISCREPANCIES` as a `keras.losses.Loss`.

    Its call averages the per-sample discrepancy over the batch (and, under a
    `tf.distribute` strategy, divides by the number of replicas so that the
    summed gradients are those of the global batch).

    Args:
        name: one of `DISCREPANCIES`: "mae", "mse", "kld" or "mse+mae".
        standardize: compare the outputs after `standardize` (each logit
            vector to mean 0, std 1), so that the discrepancy ignores the
            scale of the teacher's logits: a teacher whose logits grow large
            on generated images no longer dominates it. The student then
            learns the teacher's logits up to shift and scale (the same argmax).

    Example:
    >>> float(Discrepancy("mse")([[2.0, 0.0]], [[0.0, 0.0]]))
    2.0
    >>> float(Discrepancy("mae", standardize=True)([[20.0, 0.0]], [[1.0, 0.0]]))
    0.0
    """

    def __init__(self, name="mae", standardize=False, **kwargs):
        if name not in DISCREPANCIES:
            raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(DISCREPANCIES)}")
        self.kind = name
        self.standardize = bool(standardize)
        # "+" is not allowed in TensorFlow name scopes.
        super().__init__(name=name.replace("+", "_plus_"), **kwargs)

    def call(self, y_true, y_pred):
        if self.standardize:
            y_true, y_pred = standardize(y_true), standardize(y_pred)
        return DISCREPANCIES[self.kind](y_true, y_pred)

    def get_config(self):
        return {**super().get_config(), "name": self.kind, "standardize": self.standardize}


def get(name_or_loss):
    """Returns a `Discrepancy` for a name; passes a `keras.losses.Loss` through."""
    if isinstance(name_or_loss, keras.losses.Loss):
        return name_or_loss
    return Discrepancy(name_or_loss)

"""Choosing a `tf.distribute` strategy."""

import tensorflow as tf


def default_strategy():
    """`MirroredStrategy` over all GPUs when several are visible, else TF's default strategy.

    Build and compile the teacher, student, generator and distiller inside its
    `scope()`; `fit` then splits each latent batch across the replicas.

    Example:
    >>> with default_strategy().scope():
    ...     distiller = DataFreeDistiller(teacher, student, generator)
    ...     distiller.compile(*paper_optimizers(0.1))
    """
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()

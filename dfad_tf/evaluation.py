"""Held-out evaluation of Keras and TFLite classifiers."""

import numpy as np


def arrays(dataset):
    """Materialises an unbatched `(image, label)` dataset as two numpy arrays."""
    images, labels = zip(*dataset.batch(1024).as_numpy_iterator())
    return np.concatenate(images), np.concatenate(labels)


def accuracy(logits, labels):
    """Top-1 accuracy of `logits` (`(n, ..., classes)`) against integer `labels`."""
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def predict(model, images, batch_size=512):
    """Outputs of a Keras model in inference mode, computed batch by batch.

    Calls the model directly rather than through `model.predict`, which would
    trace a new graph for every model and every odd-sized last batch.
    """
    return np.concatenate([np.asarray(model(images[start:start + batch_size], training=False))
                           for start in range(0, len(images), batch_size)])


def model_accuracy(model, images, labels, batch_size=512):
    """Top-1 accuracy of a Keras model in inference mode.

    Example:
    >>> images, labels = arrays(data.load("digits", "test"))
    >>> model_accuracy(teacher, images, labels)
    0.99
    """
    return accuracy(predict(model, images, batch_size), labels)

"""Datasets read through `tensorflow_datasets`."""

import tensorflow as tf

from dfad_tf.data.spec import DatasetSpec


class TfdsSource:
    """A tfds dataset resized and normalised like the paper's reference code.

    Args:
        tfds_name: the tfds builder name.
        spec: the `DatasetSpec` after preprocessing.

    Example:
    >>> MNIST.load("test", data_dir="~/tensorflow_datasets")
    """

    def __init__(self, tfds_name, spec):
        self.tfds_name = tfds_name
        self.SPEC = spec

    def _preprocess(self, image, label):
        image = tf.image.resize(tf.cast(image, tf.float32) / 255.0, self.SPEC.image_shape[:2])
        return (image - self.SPEC.mean) / self.SPEC.std, label

    def load(self, split, data_dir=None):
        import tensorflow_datasets as tfds

        try:
            dataset = tfds.load(self.tfds_name, split=split, data_dir=data_dir, as_supervised=True)
        except Exception as error:  # tfds raises many types; all mean "not available"
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise DatasetUnavailableError(
                f"--dataset={self.tfds_name}: cannot load split {split!r} through tfds "
                f"(data_dir={data_dir}): {reason}"
            ) from error
        return dataset.map(self._preprocess, num_parallel_calls=tf.data.AUTOTUNE)


class DatasetUnavailableError(RuntimeError):
    """A dataset is neither prepared in `data_dir` nor downloadable."""


MNIST = TfdsSource("mnist", DatasetSpec((32, 32, 1), 10, (0.1307,), (0.3081,)))

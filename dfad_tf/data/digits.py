"""scikit-learn's bundled handwritten digits, the embedded offline default.

1,797 8x8 images in 17 grey levels, upsampled to 32x32, split 70/30 with a fixed
stratified split, and normalised with MNIST's mean and standard deviation.
"""

import numpy as np
import tensorflow as tf
from sklearn import datasets, model_selection

from dfad_tf.data.spec import DatasetSpec

SPEC = DatasetSpec(image_shape=(32, 32, 1), num_classes=10, mean=(0.1307,), std=(0.3081,),
                   class_names=tuple("0123456789"))
TEST_FRACTION = 0.3
SPLIT_SEED = 0


def pixels(split):
    """Returns `(images, labels)` of one split as uint8 32x32 pixels in 0..255, what a camera would give.

    The 8x8 images (17 grey levels, 0..16) are scaled to [0, 1], upsampled
    bilinearly to 32x32, then scaled to 0..255 and rounded.
    """
    images, labels = _unit_arrays(split)
    return np.round(images * 255).astype("uint8"), labels


def arrays(split):
    """Returns `(images, labels)` numpy arrays of one split, preprocessed (normalised with `SPEC`)."""
    images, labels = _unit_arrays(split)
    return (images - np.float32(SPEC.mean)) / np.float32(SPEC.std), labels


def _unit_arrays(split):
    digits = datasets.load_digits()
    indices = np.arange(len(digits.target))
    train, test = model_selection.train_test_split(
        indices, test_size=TEST_FRACTION, stratify=digits.target, random_state=SPLIT_SEED
    )
    chosen = train if split == "train" else test
    images = digits.images[chosen, :, :, None].astype("float32") / 16.0
    images = tf.image.resize(images, SPEC.image_shape[:2], method="bilinear").numpy()
    return images, digits.target[chosen].astype("int64")


def load(split, data_dir=None):
    del data_dir  # bundled with scikit-learn
    return tf.data.Dataset.from_tensor_slices(arrays(split))

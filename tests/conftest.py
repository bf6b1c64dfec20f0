"""Shared fixtures: quiet TensorFlow, fixed seeds, one small digits teacher per session."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def fixed_seed():
    keras.utils.set_random_seed(0)


@pytest.fixture(scope="session")
def digits_arrays():
    """Held-out digits as numpy arrays `(images, labels)`."""
    from dfad_tf.data import digits

    return digits.arrays("test")


@pytest.fixture(scope="session")
def digits_teacher(tmp_path_factory):
    """A LeNet-5 trained briefly on digits (0.98 held-out), saved as .keras."""
    from dfad_tf import data, teacher

    keras.utils.set_random_seed(0)
    model, _ = teacher.train_teacher("lenet5", data.spec("digits"), data.load("digits", "train"),
                                     epochs=12, label_smoothing=0.1, verbose=0)
    path = tmp_path_factory.mktemp("teacher") / "teacher.keras"
    model.save(path)
    return path

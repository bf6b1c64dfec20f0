"""Shared fixtures and helpers: quiet TensorFlow, fixed seeds, one small digits teacher per session, the binaries."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import subprocess  # noqa: E402
import sys  # noqa: E402

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402
from absl.testing import flagsaver  # noqa: E402

from dfad_tf.cli import common  # noqa: E402

FLAGS = flags.FLAGS
# For a test of what happens on a machine without GPU (a choice or a refusal a GPU would change).
without_gpu = pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU")), reason="this machine has a GPU")
TINY = ["--epochs=2", "--iterations_per_epoch=2", "--batch_size=16", "--generator_width=4", "--latent_dim=16",
        "--imitation_steps=2"]


def run_binary(module, *args):
    """Parses `args` as the binary would and runs its main; returns the exit code."""
    with flagsaver.flagsaver():
        FLAGS.unparse_flags()
        FLAGS(common.expand_flagfiles(["prog", *args]))
        try:
            common.report_errors(module.main)(["prog"])
        except SystemExit as exit:
            return exit.code
    return 0


def one_line_error(capsys):
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert "Traceback" not in "\n".join(lines)
    return lines[-1]


def files_with_contents(directory):
    return {name: open(os.path.join(directory, name), "rb").read()
            for name in sorted(os.listdir(directory)) if os.path.isfile(os.path.join(directory, name))}


def real_program(name, *args):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", f"dfad_tf.cli.{name}", *args], capture_output=True, text=True,
                          env=env, timeout=300)




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


def _conv_bn_teacher(convention):
    """A small Conv-BN-ReLU classifier trained for two epochs on digits in `convention`."""
    from dfad_tf import conventions
    from dfad_tf.data import digits

    keras.utils.set_random_seed(0)  # the same teacher whichever test builds it first
    images, labels = digits.arrays("train")
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    teacher = keras.Model(inputs, keras.layers.Dense(10)(x), name="conv_bn_teacher")
    teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    scale, offset = conventions.to_teacher_input(convention, digits.SPEC.mean, digits.SPEC.std)
    teacher.fit(conventions.adapt_images(images, scale, offset), labels, batch_size=64, epochs=2, verbose=0)
    return teacher


@pytest.fixture(scope="session")
def conv_bn_teacher():
    """Makes a foreign teacher with BatchNorm: `conv_bn_teacher(convention)`, a Keras model taking that range."""
    return _conv_bn_teacher


@pytest.fixture(scope="session")
def unit_bn_teacher():
    """A Conv-BN teacher that takes digits with pixels in [0, 1]."""
    return _conv_bn_teacher("unit")

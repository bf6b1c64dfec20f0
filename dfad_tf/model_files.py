"""Reading models from files: `.keras`, legacy `.h5`, and SavedModel directories."""

import os

import keras
import tensorflow as tf


class ModelFileError(ValueError):
    """A model file is missing, unreadable, or refused by Keras's safe mode.

    Attributes:
        path: the offending path.
        unsafe: True when the file only loads with safe mode off.
    """

    def __init__(self, path, reason, unsafe=False):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.unsafe = unsafe


def load_model(path, safe_mode=True):
    """Loads a classifier from a `.keras`/`.h5` file or a SavedModel directory.

    A SavedModel is wrapped in a functional model around `keras.layers.TFSMLayer`
    calling its `serving_default` signature, so it has a known input shape and
    passes gradients to its input (the generation stage needs them).

    Args:
        path: the file or directory.
        safe_mode: refuse `.keras` files that would run arbitrary Python code
            (Lambda layers); turn off only for files you trust.

    Returns:
        A `keras.Model`.

    Raises:
        ModelFileError: the path is missing, unreadable or unsafe.

    Example:
    >>> teacher = load_model("runs/digits/teacher.keras")
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelFileError(path, "no such file or directory (expected a .keras file or a SavedModel directory)")
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise ModelFileError(path, "directory holds no saved_model.pb, so it is not a SavedModel")
        return _load_saved_model(path)
    try:
        return keras.saving.load_model(path, safe_mode=safe_mode)
    except Exception as error:  # Keras raises many types for unreadable files
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "safe_mode" in str(error):
            raise ModelFileError(path, "contains Python code (e.g. a Lambda layer) that safe mode refuses "
                                 "to run; load it only if you trust its source", unsafe=True) from error
        raise ModelFileError(path, f"cannot be read as a Keras model ({type(error).__name__}: {message})") from error


def _load_saved_model(path):
    try:
        signature = tf.saved_model.load(path).signatures["serving_default"]
    except Exception as error:
        raise ModelFileError(path, f"cannot be read as a SavedModel with a serving_default signature ({error})") from error
    (input_spec,) = signature.structured_input_signature[1].values()
    output_names = list(signature.structured_outputs)
    if len(output_names) != 1:
        raise ModelFileError(path, f"serving_default has {len(output_names)} outputs; expected exactly one")
    inputs = keras.Input(input_spec.shape[1:], dtype=input_spec.dtype.name, name="image")
    outputs = keras.layers.TFSMLayer(path, call_endpoint="serving_default")(inputs)
    return keras.Model(inputs, outputs[output_names[0]], name=os.path.basename(path.rstrip("/")))

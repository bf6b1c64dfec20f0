"""Reading models from files: `.keras`, legacy `.h5`, and SavedModel directories."""

import os

import keras
import tensorflow as tf

from dfad_tf import savedmodel_check


class ModelFileError(ValueError):
    """A model file is missing, unreadable, or refused in safe mode.

    Safe mode refuses a `.keras` file holding Python code (Keras's own safe mode)
    and a SavedModel whose `serving_default` could run an operation outside
    `savedmodel_check.SAFE_OPERATIONS` (files, printing, Python callbacks, ...),
    or that cannot be checked (a TensorFlow 1 export).

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
    passes gradients to its input (the generation stage needs them). In safe
    mode its `saved_model.pb` is checked first (`savedmodel_check`): nothing of
    it is loaded or run unless every operation it could run computes on tensors.

    Args:
        path: the file or directory.
        safe_mode: refuse `.keras` files that would run arbitrary Python code
            (Lambda layers) and SavedModels that could run operations other than
            tensor computation (file access, printing, Python callbacks); turn
            off only for files you trust.

    Returns:
        A `keras.Model`.

    Raises:
        ModelFileError: the path is missing, unreadable or unsafe.

    Example:
    >>> teacher = load_model("runs/digits/teacher.keras")
    """
    path = os.fspath(path)
    if not tf.io.gfile.exists(path):  # any filesystem: a run folder may be on gs://
        raise ModelFileError(path, "no such file or directory (expected a .keras file or a SavedModel directory)")
    if tf.io.gfile.isdir(path):
        if not tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
            raise ModelFileError(path, "directory holds no saved_model.pb, so it is not a SavedModel")
        if safe_mode:
            _check_saved_model(path)
        return _load_saved_model(path)
    try:
        return keras.saving.load_model(path, safe_mode=safe_mode)
    except Exception as error:  # Keras raises many types for unreadable files
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "safe_mode" in str(error):
            raise ModelFileError(path, "contains Python code (e.g. a Lambda layer) that safe mode refuses "
                                 "to run; load it only if you trust its source", unsafe=True) from error
        raise ModelFileError(path, f"cannot be read as a Keras model ({type(error).__name__}: {message})") from error


def _check_saved_model(path):
    try:
        unsafe = savedmodel_check.unsafe_operations(path)
    except savedmodel_check.SavedModelReadError as error:
        unchecked = isinstance(error, savedmodel_check.UncheckableSavedModelError)
        raise ModelFileError(path, str(error), unsafe=unchecked) from error
    if unsafe:
        raise ModelFileError(path, f"serving_default could run operations other than tensor computation "
                                   f"({', '.join(unsafe)}), which can act on this machine (files, printing, "
                                   "Python callbacks)", unsafe=True)


def _load_saved_model(path):
    try:
        signature = tf.saved_model.load(path).signatures["serving_default"]
    except Exception as error:
        raise ModelFileError(
            path, f"cannot be read as a SavedModel with a serving_default signature ({error})") from error
    (input_spec,) = signature.structured_input_signature[1].values()
    output_names = list(signature.structured_outputs)
    if len(output_names) != 1:
        raise ModelFileError(path, f"serving_default has {len(output_names)} outputs; expected exactly one")
    inputs = keras.Input(input_spec.shape[1:], dtype=input_spec.dtype.name, name="image")
    outputs = keras.layers.TFSMLayer(path, call_endpoint="serving_default")(inputs)
    return keras.Model(inputs, outputs[output_names[0]], name=os.path.basename(path.rstrip("/")))

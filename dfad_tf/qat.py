"""Data-free quantization-aware training (QAT) with tensorflow-model-optimization.

tfmot only wraps tf_keras models, and importing it switches the process to
legacy Keras (`TF_USE_LEGACY_KERAS=1`). So it is imported here alone, lazily,
with that switch undone, and the student gets a tf_keras twin built by the same
builder as the Keras 3 student, with its weights copied across.

The fine-tuning is DFAD's own iteration (the distiller's noise, imitation and
generation steps, with the run's k and generator objective) for the
fake-quantized student against the teacher on generated images, with the
generator still in play. No real image is used.

Its two packages come with the `qat` extra (`pip install 'dfad_tf[qat]'`);
`missing_packages` finds out whether they are there without importing them.
"""

import importlib.util
import os
import tempfile

import keras
import tensorflow as tf

from dfad_tf import fileio, losses, models, objectives
from dfad_tf.distiller import generation_step, imitation_step, latent_noise

PACKAGES = ("tf_keras", "tensorflow_model_optimization")


def missing_packages():
    """The modules of `PACKAGES` that are not installed, found without importing them."""
    return [name for name in PACKAGES if importlib.util.find_spec(name) is None]


def _tfmot():
    previous = os.environ.get("TF_USE_LEGACY_KERAS")
    try:
        import tensorflow_model_optimization as tfmot  # lazy: the qat extra, and it flips TF_USE_LEGACY_KERAS
    finally:
        if previous is None:
            os.environ.pop("TF_USE_LEGACY_KERAS", None)
        else:
            os.environ["TF_USE_LEGACY_KERAS"] = previous
    return tfmot


def tf_keras_twin(student, width=1.0):
    """The student's architecture built with tf_keras, holding a copy of its weights.

    Args:
        student: a Keras 3 student built by `models.build_classifier` (its
            name is the registry key).
        width: the width multiplier it was built with.

    Raises:
        ValueError: the student's architecture is not a registered one.
    """
    import tf_keras  # lazy: only the qat extra installs it

    if student.name not in models.CLASSIFIERS:
        raise ValueError(f"quantization-aware training needs a registered architecture "
                         f"({', '.join(sorted(models.CLASSIFIERS))}); the student is {student.name!r}")
    twin = models.build_classifier(student.name, tuple(student.input_shape[1:]), student.output_shape[-1],
                                   width=width, keras_module=tf_keras)
    for layer in student.layers:
        if layer.weights:
            twin.get_layer(layer.name).set_weights(layer.get_weights())
    return twin


def quantization_aware_finetune(teacher, student, generator, iterations=200, batch_size=128, imitation_steps=5,
                                student_lr=1e-3, generator_lr=1e-4, loss="mae", seed=0, width=1.0,
                                generator_loss_weights=None, student_training_in_generator_step=True):
    """Fine-tunes a fake-quantized twin of `student` data-free, by DFAD iterations.

    Each iteration is the distiller's: `imitation_steps` imitation steps on
    the noise of `distiller.latent_noise`, then one generation step with the
    run's generator objective.

    Args:
        teacher: the teacher (Keras 3).
        student: the distilled student (Keras 3, registered architecture).
        generator: the run's trained generator; it keeps training adversarially.
        iterations: DFAD iterations of fine-tuning.
        batch_size: generated images per step.
        imitation_steps: student updates per generator update (the run's k).
        student_lr: SGD (momentum 0.9) learning rate of the quantized student.
        generator_lr: Adam learning rate of the generator.
        loss: discrepancy name or `losses.Discrepancy` (the run's, e.g. with standardized logits).
        seed: seed of the latent noise.
        width: the student's width multiplier (see `tf_keras_twin`).
        generator_loss_weights: the run's generator objective (`objectives.TERMS`); default DFAD's.
        student_training_in_generator_step: the run's mode of the student in
            the generator's step (`objectives.GeneratorObjective`'s
            `student_training`); default DFAD's training mode.

    Returns:
        The quantization-aware tf_keras model (fake-quant nodes inserted).

    Example:
    >>> qat_student = quantization_aware_finetune(teacher, student, generator, iterations=200)
    >>> export_qat_tflite(qat_student, "student_qat_int8.tflite")
    """
    import tf_keras  # lazy: only the qat extra installs it

    quantized = _tfmot().quantization.keras.quantize_model(tf_keras_twin(student, width))
    student_optimizer = tf_keras.optimizers.SGD(student_lr, momentum=0.9)
    generator_optimizer = keras.optimizers.Adam(generator_lr)
    generator_optimizer.build(generator.trainable_variables)
    discrepancy = losses.get(loss)
    objective = objectives.GeneratorObjective(teacher, discrepancy, generator_loss_weights,
                                              student_training=student_training_in_generator_step)

    @tf.function
    def iteration(step):
        noise = latent_noise(seed, step, batch_size, imitation_steps, generator.input_shape[-1])
        for k in range(imitation_steps):
            student_loss = imitation_step(teacher, quantized, generator(noise[:, k], training=True), discrepancy,
                                          student_optimizer)
        generation_step(quantized, generator, noise[:, -1], objective, generator_optimizer)
        return student_loss

    for step in range(iterations):
        iteration(tf.constant(step, tf.int64))
    return quantized


def export_qat_tflite(quantized, path):
    """Converts a quantization-aware model to an int8 TFLite file, atomically."""
    with tempfile.TemporaryDirectory() as saved_model:
        tf.saved_model.save(quantized, saved_model)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        flatbuffer = converter.convert()
    with fileio.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(flatbuffer)


def fake_quant_layers(quantized):
    """Names of the layers of `quantized` that tfmot wrapped for quantization."""
    return [layer.name for layer in quantized.layers if type(layer).__name__ == "QuantizeWrapperV2"]

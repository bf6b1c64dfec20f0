"""dfad_tf: data-free adversarial distillation for Keras 3 on TensorFlow.

Train a small student to imitate a large teacher without any of the teacher's
training data: a generator invents images on which the two disagree, the
student learns to agree, and the two play this min-max game until the student
matches the teacher (Fang et al., "Data-Free Adversarial Distillation").

Example:
>>> import dfad_tf
>>> distiller = dfad_tf.DataFreeDistiller(teacher, student, generator)
>>> distiller.compile(*dfad_tf.optimizers.paper_optimizers(0.1), loss="mae", metrics=["accuracy"])
>>> distiller.fit(batch_size=256, epochs=40, validation_data=(test_images, test_labels))
"""

__version__ = "0.1.0"

from dfad_tf import (
    callbacks,
    conventions,
    data,
    distribute,
    evaluation,
    export,
    losses,
    model_files,
    models,
    optimizers,
    precision,
    savedmodel_check,
    teacher,
)
from dfad_tf.distiller import DataFreeDistiller

__all__ = ["DataFreeDistiller", "callbacks", "conventions", "data", "distribute", "evaluation", "export", "losses",
           "model_files", "models", "optimizers", "precision", "savedmodel_check", "teacher"]

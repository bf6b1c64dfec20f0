"""Data-driven baselines of the paper's Table 2: Hinton KD on a given set of images.

KD-ORI distils on the teacher's own (labelled) training images, KD-REL and
KD-UNR on unlabelled related or unrelated images, RANDOM on Gaussian noise
(see `data.alternatives`). All four are `keras.distillation.Distiller` runs
that differ only in the images (and whether labels come with them). The
generator-based baselines (DAFL, DFAD with a BatchNorm prior) are
`DataFreeDistiller` runs with other generator weights: see `objectives`.

Example:
>>> history = knowledge_distillation(teacher, student, train_images, train_labels,
...                                  validation_data=(test_images, test_labels), epochs=30)
>>> max(history.history["val_accuracy"])
"""

import keras
import numpy as np
import tensorflow as tf

from dfad_tf import evaluation


def knowledge_distillation(teacher, student, images, labels=None, validation_data=None, spec=None, epochs=30,
                           steps_per_epoch=250, batch_size=128, learning_rate=0.01, momentum=0.9,
                           temperature=4.0, seed=0, callbacks=(), verbose=0):
    """Vanilla KD (Hinton et al.): the student matches the teacher's softened outputs on `images`.

    With `labels`, half the loss is the student's cross-entropy on them (the
    usual KD recipe, for KD-ORI); without, the student learns from the teacher
    alone.

    Args:
        teacher: the frozen teacher.
        student: the student to train (changed in place).
        images: float32 array of (normalised) images.
        labels: optional integer labels of `images`.
        validation_data: optional `(images, labels)` measured after each epoch.
        spec: the dataset's `DatasetSpec`; for segmentation, per-pixel labels
            whose `spec.ignore_label` pixels are skipped, and mean IoU
            (`miou`) instead of accuracy.
        epochs: epochs of `steps_per_epoch` updates.
        steps_per_epoch: student updates per epoch (the images are repeated
            and reshuffled as needed).
        batch_size: images per update.
        learning_rate: SGD learning rate (momentum `momentum`).
        momentum: SGD momentum.
        temperature: softmax temperature of the distillation loss.
        seed: shuffling seed.
        callbacks: Keras callbacks.
        verbose: `fit` verbosity.

    Returns:
        The Keras `History`; `history.history["val_accuracy"]` (`"val_miou"`)
        per epoch when `validation_data` is given.
    """
    distiller = keras.distillation.Distiller(
        teacher=teacher, student=student,
        # A KLDivergence instance, not LogitsDistillation's default "kl_divergence": Keras 3.15 turns
        # that string into a function, misses its softmax branch and takes the KL of raw logits,
        # which trains nothing without labels (measured: 0.10 held-out accuracy).
        distillation_losses=keras.distillation.LogitsDistillation(temperature=temperature,
                                                                  loss=keras.losses.KLDivergence()),
        student_loss_weight=0.0 if labels is None else 0.5,
    )
    ignore = spec.ignore_label if spec is not None and spec.task == "segmentation" else None
    distiller.compile(optimizer=keras.optimizers.SGD(learning_rate, momentum=momentum),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=ignore),
                      metrics=[evaluation.keras_metric(spec) if spec is not None else "accuracy"])
    if labels is None:
        # Not used by the loss (its label weight is 0); Keras's metrics need labels, and against the
        # teacher's own predictions the training "accuracy" reads as agreement with the teacher.
        labels = teacher.predict(images, batch_size=512, verbose=0).argmax(-1)
    examples = (images, np.asarray(labels, np.int64))
    dataset = (tf.data.Dataset.from_tensor_slices(examples).repeat()
               .shuffle(min(len(images), 10_000), seed=seed).batch(batch_size, drop_remainder=True))
    return distiller.fit(dataset, epochs=epochs, steps_per_epoch=steps_per_epoch, validation_data=validation_data,
                         callbacks=list(callbacks), verbose=verbose, shuffle=False)

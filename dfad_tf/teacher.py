"""Training a teacher on labelled data, for users who do not already have one."""

import keras
import tensorflow as tf

from dfad_tf import models, optimizers
from dfad_tf.data import segmentation


def augmentation(spec):
    """The teacher-training augmentation named by `spec.augmentation`.

    "shift_rotate": small random shifts and rotations, filling with the
    normalised black level. "crop_flip": random crops with padding of 1/8 of
    the image size (a random translation filled with the mean colour, 0 after
    normalisation) and horizontal flips, the reference CIFAR recipe.

    Args:
        spec: the dataset's `DatasetSpec`.
    """
    if spec.augmentation == "crop_flip":
        return keras.Sequential([
            keras.layers.RandomTranslation(0.125, 0.125, fill_mode="constant", fill_value=0.0),
            keras.layers.RandomFlip("horizontal"),
        ], name="augmentation")
    fill = -spec.mean[0] / spec.std[0]
    return keras.Sequential([
        keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant", fill_value=fill),
        keras.layers.RandomRotation(0.05, fill_mode="constant", fill_value=fill),
    ], name="augmentation")


def _training_pairs(spec):
    """Maps `(image, label)` to what `fit` takes: one-hot targets (label smoothing needs them).

    Segmentation labels become per-pixel one-hot targets with per-pixel sample
    weights that are 0 on `spec.ignore_label`, so ignored pixels count in
    neither the loss nor the metric.
    """
    if spec.task != "segmentation":
        return lambda images, labels: (images, tf.one_hot(labels, spec.num_classes))

    def pairs(images, labels):
        ignored = tf.equal(labels, spec.ignore_label)
        targets = tf.one_hot(tf.where(ignored, 0, labels), spec.num_classes)
        return images, targets, tf.cast(tf.logical_not(ignored), tf.float32)

    return pairs


def _random_crops(dataset, spec, seed):
    """Random `spec.image_shape` crops of each image and its mask, flipped together at random; new each epoch."""
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip(dataset, seeds).map(
        lambda pair, crop_seed: segmentation.random_crop_flip(*pair, spec.image_shape[:2], crop_seed))


def train_teacher(model_name, spec, train, test=None, epochs=30, batch_size=64, learning_rate=0.05,
                  weight_decay=5e-4, label_smoothing=0.0, augment=True, decay_epochs=(), seed=0, callbacks=(),
                  verbose="auto", width=1.0, output_stride=16, backbone_weights=None):
    """Trains a classifier or segmentation model with SGD (momentum 0.9), cosine or step learning-rate decay.

    Classifiers learn from whole images, with `augmentation(spec)`;
    segmentation models from random crops of `spec.image_shape` (flipped at
    random), with per-pixel cross-entropy that skips `spec.ignore_label`, and
    are validated on whole images by mean IoU.

    Args:
        model_name: a key of `models.CLASSIFIERS` or `models.SEGMENTERS`.
        spec: the dataset's `DatasetSpec`.
        train: unbatched `(image, label)` dataset.
        test: optional unbatched `(image, label)` dataset for validation.
        epochs: passes over `train`.
        batch_size: images per step.
        learning_rate: initial SGD learning rate.
        weight_decay: SGD weight decay.
        label_smoothing: cross-entropy label smoothing. It bounds the teacher's
            logits, which keeps the L1 discrepancy on logits from exploding on
            the generator's off-manifold images (see flags/digits.cfg).
        augment: apply `augmentation(spec)` to training batches (random
            crops and flips for segmentation; without it, whole images).
        decay_epochs: epochs at which the learning rate is multiplied by 0.1
            (the reference CIFAR recipe); empty for a cosine decay to 0.
        seed: shuffling and augmentation seed.
        callbacks: Keras callbacks for `fit`.
        verbose: `fit` verbosity.
        width: width multiplier of the model (see `models.build_model`).
        output_stride: segmentation models: 8 or 16.
        backbone_weights: segmentation models: local weights file of the
            backbone (the paper's teacher starts from ImageNet weights).

    Returns:
        `(model, history)`.

    Example:
    >>> teacher, _ = train_teacher("lenet5", data.spec("digits"), data.load("digits", "train"))
    """
    segmenting = spec.task == "segmentation"
    model = models.build_model(model_name, spec.image_shape, spec.num_classes, width=width,
                               output_stride=output_stride, backbone_weights=backbone_weights)
    batches = train.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    if augment and segmenting:
        batches = _random_crops(batches, spec, seed)
    batches = batches.map(_training_pairs(spec)).batch(batch_size)
    if augment and not segmenting:
        augment_layer = augmentation(spec)
        batches = batches.map(lambda x, y: (augment_layer(x, training=True), y))
    steps_per_epoch = int(batches.cardinality())
    schedule = (optimizers.step_decay(learning_rate, decay_epochs, steps_per_epoch) if decay_epochs
                else keras.optimizers.schedules.CosineDecay(learning_rate, max(epochs * steps_per_epoch, 1)))
    model.compile(
        optimizer=keras.optimizers.SGD(schedule, momentum=0.9, weight_decay=weight_decay or None),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing),
        metrics=[keras.metrics.MeanIoU(spec.num_classes, name="miou", sparse_y_true=False, sparse_y_pred=False)
                 if segmenting else "accuracy"],
    )
    validation = None
    if test is not None:
        validation = test.map(_training_pairs(spec)).batch(16 if segmenting else 512)
    history = model.fit(
        batches, epochs=epochs, validation_data=validation,
        callbacks=list(callbacks), verbose=verbose,
        shuffle=False,  # `batches` is shuffled already; Keras cannot shuffle a dataset
    )
    return model, history

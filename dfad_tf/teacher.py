"""Training a teacher on labelled data, for users who do not already have one."""

import keras
import tensorflow as tf

from dfad_tf import models, optimizers


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


def train_teacher(model_name, spec, train, test=None, epochs=30, batch_size=64, learning_rate=0.05,
                  weight_decay=5e-4, label_smoothing=0.0, augment=True, decay_epochs=(), seed=0, callbacks=(),
                  verbose="auto"):
    """Trains a classifier with SGD (momentum 0.9), cosine or step learning-rate decay.

    Args:
        model_name: a key of `models.CLASSIFIERS`.
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
        augment: apply `augmentation(spec)` to training batches.
        decay_epochs: epochs at which the learning rate is multiplied by 0.1
            (the reference CIFAR recipe); empty for a cosine decay to 0.
        seed: shuffling and augmentation seed.
        callbacks: Keras callbacks for `fit`.
        verbose: `fit` verbosity.

    Returns:
        `(model, history)`.

    Example:
    >>> teacher, _ = train_teacher("lenet5", data.spec("digits"), data.load("digits", "train"))
    """
    model = models.build_classifier(model_name, spec.image_shape, spec.num_classes)

    def one_hot(images, labels):  # label smoothing needs one-hot targets
        return images, tf.one_hot(labels, spec.num_classes)

    batches = train.shuffle(10_000, seed=seed, reshuffle_each_iteration=True).batch(batch_size).map(one_hot)
    if augment:
        augment_layer = augmentation(spec)
        batches = batches.map(lambda x, y: (augment_layer(x, training=True), y))
    steps_per_epoch = int(batches.cardinality())
    schedule = (optimizers.step_decay(learning_rate, decay_epochs, steps_per_epoch) if decay_epochs
                else keras.optimizers.schedules.CosineDecay(learning_rate, max(epochs * steps_per_epoch, 1)))
    model.compile(
        optimizer=keras.optimizers.SGD(schedule, momentum=0.9, weight_decay=weight_decay or None),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing),
        metrics=["accuracy"],
    )
    history = model.fit(
        batches, epochs=epochs, validation_data=test.batch(512).map(one_hot) if test is not None else None,
        callbacks=list(callbacks), verbose=verbose,
        shuffle=False,  # `batches` is shuffled already; Keras cannot shuffle a dataset
    )
    return model, history

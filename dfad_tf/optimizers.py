"""The paper's optimisers: SGD for the student, Adam for the generator, step decay."""

import keras


def step_decay(learning_rate, decay_epochs, steps_per_epoch, factor=0.1):
    """Learning rate multiplied by `factor` at each epoch in `decay_epochs`.

    Args:
        learning_rate: initial learning rate.
        decay_epochs: epochs (counted from 0) at which the rate is multiplied.
        steps_per_epoch: optimizer updates per epoch.
        factor: multiplier applied at each decay epoch.

    Returns:
        A `PiecewiseConstantDecay` schedule, or the float itself when there is
        nothing to decay.

    Example:
    >>> schedule = step_decay(0.1, [100, 200], steps_per_epoch=250)
    >>> float(schedule(100 * 250))
    0.01
    """
    decay_epochs = sorted(decay_epochs)
    if not decay_epochs:
        return learning_rate
    # PiecewiseConstantDecay switches once step > boundary; the first update of
    # epoch e runs at step e * steps_per_epoch.
    boundaries = [epoch * steps_per_epoch - 1 for epoch in decay_epochs]
    values = [learning_rate * factor**i for i in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def paper_optimizers(student_lr, generator_lr=1e-3, weight_decay=5e-4, momentum=0.9,
                     decay_epochs=(), decay_factor=0.1, iterations_per_epoch=50, imitation_steps=5):
    """The student's SGD and the generator's Adam, with a shared step decay.

    The student takes `imitation_steps` updates per DFAD iteration and the
    generator one, so their schedules count epochs in different step units.

    Args:
        student_lr: initial SGD learning rate.
        generator_lr: initial Adam learning rate (betas 0.9, 0.999).
        weight_decay: SGD weight decay (0 for none).
        momentum: SGD momentum.
        decay_epochs: epochs at which both rates are multiplied by `decay_factor`.
        decay_factor: the multiplier.
        iterations_per_epoch: DFAD iterations per epoch.
        imitation_steps: student updates per DFAD iteration.

    Returns:
        `(student_optimizer, generator_optimizer)`.

    Example:
    >>> student_opt, generator_opt = paper_optimizers(0.1, decay_epochs=[100, 200])
    """
    student = keras.optimizers.SGD(
        step_decay(student_lr, decay_epochs, iterations_per_epoch * imitation_steps, decay_factor),
        momentum=momentum,
        weight_decay=weight_decay or None,
    )
    generator = keras.optimizers.Adam(
        step_decay(generator_lr, decay_epochs, iterations_per_epoch, decay_factor),
        beta_1=0.9,
        beta_2=0.999,
    )
    return student, generator

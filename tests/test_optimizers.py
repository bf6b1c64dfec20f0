import keras
import pytest

from dfad_tf import optimizers


def test_step_decay_multiplies_by_the_factor_at_each_epoch():
    schedule = optimizers.step_decay(0.1, [200, 100], steps_per_epoch=10)
    assert [float(schedule(step)) for step in (0, 999, 1000, 1999, 2000, 10**6)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    assert optimizers.step_decay(0.1, [], steps_per_epoch=10) == 0.1


def test_paper_optimizers_count_epochs_in_each_optimizers_own_steps():
    student, generator = optimizers.paper_optimizers(
        0.1, 1e-3, weight_decay=5e-4, decay_epochs=[100], iterations_per_epoch=50, imitation_steps=5)
    assert isinstance(student, keras.optimizers.SGD) and isinstance(generator, keras.optimizers.Adam)
    assert student.momentum == 0.9 and student.weight_decay == pytest.approx(5e-4)
    assert (generator.beta_1, generator.beta_2) == (0.9, 0.999)
    # Epoch 100 = 5,000 iterations = 25,000 student updates and 5,000 generator updates.
    for optimizer, boundary, initial in ((student, 25_000, 0.1), (generator, 5_000, 1e-3)):
        optimizer.build([keras.Variable(0.0)])
        optimizer.iterations.assign(boundary - 1)
        assert float(optimizer.learning_rate) == pytest.approx(initial)
        optimizer.iterations.assign(boundary)
        assert float(optimizer.learning_rate) == pytest.approx(initial * 0.1)


def test_no_weight_decay_means_none():
    student, _ = optimizers.paper_optimizers(0.01, weight_decay=0)
    assert student.weight_decay is None

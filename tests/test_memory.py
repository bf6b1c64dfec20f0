"""The replay memory of generated images: first in, first out; samples only what it holds; part of the state."""

import numpy as np
import pytest
import tensorflow as tf

from dfad_tf import memory, models, optimizers
from dfad_tf.distiller import DataFreeDistiller


def batch(first, n, shape=(2, 2, 1)):
    """n images, image i filled with the value first + i."""
    return np.broadcast_to(np.arange(first, first + n, dtype="float32")[:, None, None, None], (n, *shape)).copy()


def held(bank):
    return sorted(np.asarray(bank.images)[:int(bank.size), 0, 0, 0].tolist())


def test_fills_then_replaces_the_oldest_images():
    bank = memory.ReplayMemory(5, (2, 2, 1))
    bank.add(batch(0, 3))
    assert int(bank.size) == 3 and held(bank) == [0, 1, 2]
    bank.add(batch(3, 3))  # one too many: image 0, the oldest, goes
    assert int(bank.size) == 5 and held(bank) == [1, 2, 3, 4, 5]
    bank.add(batch(6, 4))
    assert held(bank) == [5, 6, 7, 8, 9]


def test_samples_only_held_images_and_repeats_for_the_same_seed():
    bank = memory.ReplayMemory(100, (2, 2, 1))
    bank.add(batch(10, 7))  # 93 empty (zero) slots must never be drawn
    seed = tf.constant([3, 4], tf.int64)
    drawn = np.asarray(bank.sample(256, seed))[:, 0, 0, 0]
    assert set(drawn.tolist()) == set(range(10, 17))  # all 7 held images, nothing else, in 256 draws
    np.testing.assert_array_equal(drawn, np.asarray(bank.sample(256, seed))[:, 0, 0, 0])
    assert not np.array_equal(drawn, np.asarray(bank.sample(256, tf.constant([3, 5], tf.int64)))[:, 0, 0, 0])


def test_rejects_a_capacity_that_is_not_a_positive_integer():
    with pytest.raises(ValueError, match="capacity must be a positive integer"):
        memory.ReplayMemory(0, (2, 2, 1))


def tiny_replaying_distiller(capacity):
    teacher = models.build_classifier("lenet5", (32, 32, 1), 10)
    student = models.build_classifier("lenet5_half", (32, 32, 1), 10)
    generator = models.build_generator("generator_a", 8, (32, 32, 1), width=4)
    distiller = DataFreeDistiller(teacher, student, generator, imitation_steps=2, replay_memory=capacity)
    distiller.compile(*optimizers.paper_optimizers(0.01, 1e-3, iterations_per_epoch=2, imitation_steps=2))
    return distiller


def test_the_distiller_adds_one_batch_per_iteration_and_saves_the_memory_with_its_weights(tmp_path):
    distiller = tiny_replaying_distiller(capacity=20)
    distiller.fit(batch_size=8, steps_per_epoch=3, epochs=1, verbose=0)
    assert int(distiller.memory.count) == 3 * 8 and int(distiller.memory.size) == 20
    distiller.save_weights(tmp_path / "state.weights.h5")
    restored = tiny_replaying_distiller(capacity=20)
    restored.load_weights(tmp_path / "state.weights.h5")
    assert int(restored.memory.count) == 24
    np.testing.assert_array_equal(np.asarray(restored.memory.images), np.asarray(distiller.memory.images))
    with pytest.raises(ValueError, match="replay_memory must be a non-negative integer"):
        tiny_replaying_distiller(capacity=-1)

"""The replay memory of generated images: a uniform sample of the run; samples only what it holds; part of the state."""

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


def test_fills_then_keeps_a_uniform_sample_of_everything_added():
    bank = memory.ReplayMemory(5, (2, 2, 1))
    bank.add(batch(0, 3))
    assert int(bank.size) == 3 and held(bank) == [0, 1, 2]
    bank.add(batch(3, 3))  # one too many: one of the six is dropped
    assert int(bank.size) == 5 and set(held(bank)) < set(range(6))
    # Over many runs of 1,000 images, each image is held with probability 100 / 1000, early as late.
    held_count = np.zeros(1000)
    for run in range(40):
        bank = memory.ReplayMemory(100, (1, 1, 1), seed=run)
        for start in range(0, 1000, 50):
            bank.add(batch(start + 1000 * run, 50, shape=(1, 1, 1)))
        np.add.at(held_count, np.asarray(held(bank), int) - 1000 * run, 1)
    assert int(held_count.sum()) == 40 * 100 and len(set(held(bank))) == 100  # no image held twice
    # Each tenth of the run (100 images, 4,000 chances, expected 400 held) within 5 standard deviations.
    tenths = held_count.reshape(10, 100).sum(axis=1)
    assert np.all(np.abs(tenths - 400) < 5 * np.sqrt(400 * 0.9)), tenths


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

"""A replay memory of generated images, so that the student does not forget what earlier generators taught it.

DFAD's generator keeps moving to wherever the student is wrong now; trained
only on the current generator's images, the student forgets the regions it
learnt earlier and its accuracy swings from epoch to epoch. Replaying a bank
of past generated images beside the fresh ones (as CMI, Binici et al. 2022 and
Fast-DFKD do) keeps those regions in the student's loss; the bank is a uniform
sample of the whole run so far, so it keeps the earliest regions too.
"""

import keras
import tensorflow as tf
from keras import ops


class ReplayMemory(keras.layers.Layer):
    """A bank of `capacity` generated images, a uniform sample of all the images added so far.

    Reservoir sampling: the first `capacity` images fill it; after that the
    n-th image added takes the place of a random held one with probability
    `capacity / n`. So the bank keeps images of the early generators (broad,
    barely trained ones) as well as of the latest, where a bank of the most
    recent images would hold only what the current generator already shows
    the student.

    Its contents are non-trainable variables of the layer, so they are saved
    with the distiller's weights and a run resumed from a backup replays what
    the interrupted run would have replayed. Under a `tf.distribute` strategy
    the distiller adds the global batch gathered from all replicas, so every
    replica holds the same bank (its variables are written as the first
    replica's, aggregation "only_first_replica").

    Args:
        capacity: images kept.
        image_shape: `(height, width, channels)` of the images.
        seed: seed of the choice of images kept.
        name: layer name.

    Example:
    >>> memory = ReplayMemory(4096, (32, 32, 1))
    >>> memory.add(images)
    >>> replayed = memory.sample(128, seed=tf.constant([0, 7], tf.int64))
    """

    def __init__(self, capacity, image_shape, seed=0, name="replay_memory", **kwargs):
        super().__init__(name=name, dtype="float32", **kwargs)
        if not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"the replay memory's capacity must be a positive integer, got {capacity!r}")
        self.capacity = capacity
        self.image_shape = tuple(image_shape)
        self.seed = int(seed)
        self.images = self.add_weight(shape=(capacity, *self.image_shape), initializer="zeros", trainable=False,
                                      name="images", aggregation="only_first_replica")
        self.count = self.add_weight(shape=(), initializer="zeros", dtype="int64", trainable=False, name="count",
                                     aggregation="only_first_replica")
        self.built = True

    @property
    def size(self):
        """Images held now: the number added so far, at most `capacity`."""
        return ops.minimum(self.count, self.capacity)

    def add(self, images):
        """Offers `images` to the bank: each is kept with probability `capacity / n`, n its number so far.

        The random slots come from a stateless generator seeded by `seed` and the
        count, so a run and its resumed copy keep the same images.
        """
        images = ops.cast(ops.stop_gradient(images), "float32")
        count = tf.convert_to_tensor(self.count.value)
        batch = tf.shape(images, out_type=tf.int64)[0]
        number = count + tf.range(batch, dtype=tf.int64)  # of each image among all added, from 0
        draw = tf.random.stateless_uniform((batch,), tf.stack([count, tf.constant(self.seed, tf.int64)]), minval=0,
                                           maxval=tf.int64.max, dtype=tf.int64) % (number + 1)
        slots = tf.where(number < self.capacity, number, draw)
        kept = slots < self.capacity
        self.images.assign(tf.tensor_scatter_nd_update(self.images.value, tf.boolean_mask(slots, kept)[:, None],
                                                       tf.boolean_mask(images, kept)))
        self.count.assign_add(batch)

    def sample(self, batch_size, seed):
        """`batch_size` images drawn uniformly, with replacement, from those held.

        Args:
            batch_size: images to draw.
            seed: a stateless seed, an int64 tensor of shape (2,).
        """
        slots = tf.random.stateless_uniform((batch_size,), seed, minval=0, maxval=ops.maximum(self.size, 1),
                                            dtype=tf.int64)
        return ops.take(self.images, slots, axis=0)

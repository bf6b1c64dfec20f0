import keras
import numpy as np
import pytest

from dfad_tf import losses

rng = np.random.default_rng(0)


def numpy_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def numpy_kl(teacher, student):
    p = numpy_log_softmax(teacher)
    q = numpy_log_softmax(student)
    return (np.exp(p) * (p - q)).sum(-1).mean()


NUMPY = {
    "mae": lambda t, s: np.abs(t - s).mean(),
    "mse": lambda t, s: ((t - s) ** 2).mean(),
    "kld": numpy_kl,
    "mse+mae": lambda t, s: ((t - s) ** 2).mean() + np.abs(t - s).mean(),
}


@pytest.mark.parametrize("name", sorted(losses.DISCREPANCIES))
@pytest.mark.parametrize("shape", [(8, 10), (4, 6, 5, 11)], ids=["logits", "per-pixel"])
def test_loss_matches_numpy(name, shape):
    teacher = rng.standard_normal(shape).astype("float32") * 3
    student = rng.standard_normal(shape).astype("float32") * 3
    value = float(losses.get(name)(teacher, student))
    assert value == pytest.approx(NUMPY[name](teacher, student), rel=1e-5)


def test_losses_are_zero_for_identical_outputs():
    outputs = rng.standard_normal((5, 10)).astype("float32")
    for name in losses.DISCREPANCIES:
        assert float(losses.get(name)(outputs, outputs)) == pytest.approx(0.0, abs=1e-6)


def test_mae_gradient_is_the_sign_of_the_difference_over_n():
    import tensorflow as tf

    teacher = tf.constant([[1.0, -2.0, 0.5, 3.0]])
    student = tf.Variable([[0.0, 0.0, 1.0, 3.5]])
    with tf.GradientTape() as tape:
        loss = losses.get("mae")(teacher, student)
    np.testing.assert_allclose(tape.gradient(loss, student), [[-0.25, 0.25, 0.25, 0.25]])


def test_discrepancy_serializes_and_rejects_unknown_names():
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(losses.get("kld")))
    assert isinstance(restored, losses.Discrepancy) and restored.name == "kld"
    with pytest.raises(ValueError, match="unknown loss 'l3'"):
        losses.get("l3")


@pytest.mark.parametrize("name", sorted(losses.DISCREPANCIES))
def test_standardized_discrepancy_matches_numpy_and_ignores_logit_scale(name):
    teacher = rng.standard_normal((6, 10)).astype("float32") * 3
    student = rng.standard_normal((6, 10)).astype("float32")

    def standardized(x):
        return (x - x.mean(-1, keepdims=True)) / x.std(-1, keepdims=True)

    loss = losses.Discrepancy(name, standardize=True)
    expected = NUMPY[name](standardized(teacher), standardized(student))
    assert float(loss(teacher, student)) == pytest.approx(expected, rel=1e-4)
    # A teacher with 10 times larger, shifted logits is the same teacher to it, not to the plain discrepancy.
    assert float(loss(10 * teacher + 5, student)) == pytest.approx(expected, rel=1e-4)
    shifted, original = (float(losses.get(name)(t, student)) for t in (10 * teacher + 5, teacher))
    assert shifted != pytest.approx(original, rel=0.1)
    assert keras.losses.deserialize(keras.losses.serialize(loss)).standardize


def test_standardizing_equal_logits_keeps_the_gradient_bounded():
    """An untrained student's logits on a blank image are all equal: their gradient must not explode."""
    import tensorflow as tf

    teacher = tf.constant(rng.standard_normal((4, 10)).astype("float32"))
    student = tf.Variable(tf.zeros((4, 10)))
    with tf.GradientTape() as tape:
        loss = losses.Discrepancy("mae", standardize=True)(teacher, student)
    gradient = np.abs(np.asarray(tape.gradient(loss, student))).max()
    # Centring moves each sign by at most 2, then 1/sqrt(epsilon) = 100 times the plain MAE's 1/(4*10).
    assert 0 < gradient <= 2 * 100 / (4 * 10) + 1e-5

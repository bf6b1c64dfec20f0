"""tf.distribute: strategy choice, TF_CONFIG checks, and DFAD on two replicas matching one replica."""

import json
import subprocess
import sys

import numpy as np
import pytest

from dfad_tf import distribute

from conftest import without_gpu

# Two logical CPU devices exist only if configured before TensorFlow starts: hence a fresh process.
MIRRORED = """
import json
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from dfad_tf import models, optimizers
from dfad_tf.distiller import DataFreeDistiller

def run(strategy, synchronized):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        teacher = models.build_classifier("lenet5", (32, 32, 1), 10)
        student = models.build_classifier("lenet5_half", (32, 32, 1), 10)
        generator = models.build_generator("generator_a", 8, (32, 32, 1), width=4,
                                           synchronized_batchnorm=synchronized)
        distiller = DataFreeDistiller(teacher, student, generator, imitation_steps=2, generator_average=0.5,
                                      student_average=0.5)
        distiller.compile(*optimizers.paper_optimizers(0.05, 1e-2, iterations_per_epoch=2, imitation_steps=2))
    weights = lambda: np.concatenate([np.ravel(v) for v in student.trainable_weights + generator.trainable_weights])
    initial, initial_student = weights(), np.concatenate([np.ravel(w) for w in student.get_weights()])
    history = distiller.fit(batch_size=16, steps_per_epoch=2, epochs=2, verbose=0)
    return {"replicas": strategy.num_replicas_in_sync, "history": history.history,
            "iteration": int(distiller.iteration.numpy()),
            "student_updates": int(distiller.student_optimizer.iterations.numpy()),
            "generator_updates": int(distiller.generator_optimizer.iterations.numpy()),
            "initial": initial.tolist(), "final": weights().tolist(), "average": {
                "initial": initial_student.tolist(),
                "final": np.concatenate([np.ravel(w) for w in distiller.kept_student().get_weights()]).tolist()}}

one, two = tf.distribute.MirroredStrategy(["CPU:0"]), tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])
# (A second two-device strategy in the process would reuse collective keys of the first, and fail.)
print(json.dumps({"one": run(one, True), "two": run(two, True), "two_unsynchronized": run(two, False)}))
"""


def relative_difference(run, reference):
    """How far `run` ended from `reference`, relative to how far training moved `reference`'s weights."""
    final, initial = np.asarray(reference["final"]), np.asarray(reference["initial"])
    np.testing.assert_array_equal(np.asarray(run["initial"]), initial)
    return float(np.linalg.norm(np.asarray(run["final"]) - final) / np.linalg.norm(final - initial))


def test_two_mirrored_replicas_match_one_replica_at_the_same_global_batch():
    result = subprocess.run([sys.executable, "-c", MIRRORED], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(result.stdout.strip().splitlines()[-1])
    one, two = runs["one"], runs["two"]
    assert (one["replicas"], two["replicas"]) == (1, 2)
    for run in runs.values():
        assert run["iteration"] == 4 and run["student_updates"] == 8 and run["generator_updates"] == 4
    # Each replica takes its own 8 rows of the global batch of 16: had both drawn the same rows or all 16,
    # the noise, the global-batch averages and so the weights would differ from the one-replica run. What
    # remains is float32 summed in another order, which the adversarial game and Adam amplify: measured
    # 2e-4 of the distance training moved the weights after 2 iterations, 1e-3 after 4, 1e-2 after 6.
    difference = relative_difference(two, one)
    assert difference < 1e-2, difference
    # The average of the student's weights is written alike on every replica, as on one device; the averaged
    # generator makes the global batch's odd rows on every replica, with BatchNorm statistics over all of them.
    assert relative_difference(two["average"], one["average"]) < 1e-2
    for name in ("loss_S", "loss_G"):
        assert two["history"][name] == pytest.approx(one["history"][name], rel=1e-3)
    # Without synchronized BatchNorm each replica normalises its half batch alone: measured 0.8.
    assert relative_difference(runs["two_unsynchronized"], one) > 0.3


@pytest.mark.parametrize("tf_config, message", [
    ("{not json", "TF_CONFIG is not JSON"),
    ('{"task": {"type": "worker", "index": 0}}', 'TF_CONFIG needs a "cluster"'),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}',
     "must be a non-empty list of \"host:port\" strings"),
    ('{"cluster": {"boss": ["a:1"]}, "task": {"type": "boss", "index": 0}}', "'boss' is not one of"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
     'TF_CONFIG "task" must name a job of the cluster and an index'),
])
def test_malformed_tf_config_is_one_clear_line(tf_config, message):
    with pytest.raises(distribute.StrategyError, match=message) as error:
        distribute.resolve_name("multi_worker", {"TF_CONFIG": tf_config})
    assert "\n" not in str(error.value)


def test_auto_picks_multi_worker_for_a_cluster():
    cluster = {"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}})}
    assert distribute.resolve_name("auto", cluster) == "multi_worker"
    with pytest.raises(distribute.StrategyError, match="multi_worker needs the TF_CONFIG"):
        distribute.resolve_name("multi_worker", {})


@without_gpu
def test_auto_is_one_device_without_a_cluster_or_gpus():
    assert distribute.resolve_name("auto", {}) == "default"

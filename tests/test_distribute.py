"""MirroredStrategy over two logical CPU devices, in a fresh process (devices are fixed at TF start-up)."""

import json
import subprocess
import sys

SCRIPT = """
import json
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from dfad_tf import models, optimizers
from dfad_tf.distiller import DataFreeDistiller
strategy = tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])
with strategy.scope():
    keras.utils.set_random_seed(0)
    teacher = models.build_classifier("lenet5", (32, 32, 1), 10)
    student = models.build_classifier("lenet5_half", (32, 32, 1), 10)
    generator = models.build_generator("generator_a", 8, (32, 32, 1), width=4)
    distiller = DataFreeDistiller(teacher, student, generator, imitation_steps=2)
    distiller.compile(*optimizers.paper_optimizers(0.01, iterations_per_epoch=2, imitation_steps=2))
    before = [v.numpy() for v in student.trainable_variables]
history = distiller.fit(batch_size=8, steps_per_epoch=2, epochs=2, verbose=0)
moved = [bool((b != v.numpy()).any()) for b, v in zip(before, student.trainable_variables)]
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "history": history.history, "moved": moved,
                  "student_updates": int(distiller.student_optimizer.iterations.numpy()),
                  "generator_updates": int(distiller.generator_optimizer.iterations.numpy())}))
"""


def test_mirrored_strategy_trains_on_two_replicas():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["student_updates"] == 8 and report["generator_updates"] == 4
    assert all(report["moved"])
    assert all(loss > 0 for loss in report["history"]["loss_S"])

"""MultiWorkerMirroredStrategy: two real worker processes on 127.0.0.1, configured by TF_CONFIG."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from dfad_tf.cli import distill
from dfad_tf.distiller import DataFreeDistiller

from conftest import TINY, run_binary

# Runs the real distill binary, keeping the weights the worker ended with (a non-chief worker writes nothing).
WORKER = """
import sys
import numpy as np
from dfad_tf.distiller import DataFreeDistiller

weights_path = sys.argv.pop(1)
fit = DataFreeDistiller.fit

def fit_and_keep_weights(self, *args, **kwargs):
    history = fit(self, *args, **kwargs)
    np.save(weights_path, np.concatenate([np.ravel(v) for v in self.student.weights + self.generator.weights]))
    return history

DataFreeDistiller.fit = fit_and_keep_weights
from dfad_tf.cli import distill
distill.run()
"""
FLAGS = [*TINY, "--epochs=2", "--iterations_per_epoch=2", "--export=float32"]  # 4 iterations, global batch 16


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_in_step_match_one_process_and_only_the_chief_writes(tmp_path, digits_teacher,
                                                                               monkeypatch):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        workers.append(subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path / f"weights{index}.npy"),
             f"--model_dir={tmp_path / f'run{index}'}", f"--teacher={digits_teacher}", "--strategy=multi_worker",
             *FLAGS],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [worker.communicate(timeout=300) for worker in workers]
    for worker, (_, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-3000:]
    chief, other = (np.load(tmp_path / f"weights{index}.npy") for index in range(2))
    np.testing.assert_array_equal(chief, other)  # the all-reduce keeps the two workers' copies identical

    # Only the chief (worker 0) wrote: its run directory is complete, the other worker's does not exist.
    assert not os.path.exists(tmp_path / "run1")
    assert "the chief writes the results" in outputs[1][0]
    chief_dir = tmp_path / "run0"
    for name in ("student.keras", "student.tflite", "generator.keras", "metrics.json", "history.csv", "logs"):
        assert os.path.exists(chief_dir / name), name
    assert not os.path.exists(chief_dir / "backup")  # removed once the run completed

    # One process, one device, the same global batch of 16 and the same noise.
    kept = {}
    fit = DataFreeDistiller.fit

    def fit_and_keep_weights(self, *args, **kwargs):
        kept["initial"] = np.concatenate([np.ravel(v) for v in self.student.weights + self.generator.weights])
        history = fit(self, *args, **kwargs)
        kept["final"] = np.concatenate([np.ravel(v) for v in self.student.weights + self.generator.weights])
        return history

    monkeypatch.setattr(DataFreeDistiller, "fit", fit_and_keep_weights)
    single_dir = tmp_path / "single"
    assert run_binary(distill, f"--model_dir={single_dir}",
                      f"--teacher={digits_teacher}", "--strategy=default", *FLAGS) == 0
    # Two workers sum float32 gradients in another order, which 4 adversarial iterations amplify (see
    # test_distribute): measured 2.5e-4 of the distance training moved the weights.
    moved = np.linalg.norm(kept["final"] - kept["initial"])
    assert np.linalg.norm(chief - kept["final"]) / moved < 1e-2
    history = [np.genfromtxt(d / "history.csv", delimiter=",", names=True) for d in (chief_dir, single_dir)]
    for column in ("loss_S", "loss_G", "val_accuracy", "val_loss_S"):
        assert history[0][column] == pytest.approx(history[1][column], rel=1e-3), column

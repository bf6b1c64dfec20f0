"""Choosing a `tf.distribute` strategy, and checking a multi-host `TF_CONFIG` before it is used.

Build and compile the teacher, student, generator and distiller inside the
strategy's `scope()`; `DataFreeDistiller.fit` then splits each global batch
across the replicas.

Example:
>>> strategy = make_strategy("auto")
>>> with strategy.scope():
...     distiller = DataFreeDistiller(teacher, student, generator)
...     distiller.compile(*paper_optimizers(0.1))
>>> distiller.fit(batch_size=256)  # 256 images per step over all replicas
"""

import json
import os
import re

import tensorflow as tf

STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")

_ADDRESS = re.compile(r"[^\s:]+:\d{1,5}")
_JOBS = ("chief", "worker", "evaluator")


class StrategyError(ValueError):
    """A strategy that cannot be made here: a malformed TF_CONFIG, no TPU, an unknown name."""


def cluster_config(environ=None):
    """The `TF_CONFIG` environment variable, parsed and checked; None when it is unset.

    Args:
        environ: mapping to read it from (default `os.environ`).

    Raises:
        StrategyError: with one line saying what is wrong and what a valid
            value looks like.
    """
    raw = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if not raw:
        return None
    example = ('e.g. {"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
               '"task": {"type": "worker", "index": 0}}')
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise StrategyError(f"TF_CONFIG is not JSON ({error.msg} at character {error.pos}); {example}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise StrategyError(f"TF_CONFIG needs a \"cluster\" mapping job names to host:port lists; {example}")
    for job, addresses in cluster.items():
        if job not in _JOBS:
            raise StrategyError(f"TF_CONFIG cluster job {job!r} is not one of {', '.join(_JOBS)}")
        if (not isinstance(addresses, list) or not addresses
                or not all(isinstance(a, str) and _ADDRESS.fullmatch(a) for a in addresses)):
            raise StrategyError(f"TF_CONFIG cluster job {job!r} must be a non-empty list of \"host:port\" "
                                f"strings, got {addresses!r}")
    task = config.get("task")
    if (not isinstance(task, dict) or task.get("type") not in cluster or type(task.get("index")) is not int
            or not 0 <= task["index"] < len(cluster[task["type"]])):
        raise StrategyError(f"TF_CONFIG \"task\" must name a job of the cluster and an index into its list, "
                            f"got {task!r}; {example}")
    return config


def resolve_name(name, environ=None):
    """The concrete strategy `make_strategy(name)` will make, checking TF_CONFIG on the way.

    "auto" is "multi_worker" when TF_CONFIG describes a cluster of several
    training tasks, else "mirrored" when several GPUs are visible, else
    "default" (one device).
    """
    if name not in STRATEGIES:
        raise StrategyError(f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}")
    config = cluster_config(environ)
    if name == "multi_worker" and config is None:
        raise StrategyError("multi_worker needs the TF_CONFIG environment variable to describe the cluster "
                            "(see README, Several hosts)")
    if name != "auto":
        return name
    if config is not None and training_tasks(config["cluster"]) > 1:
        return "multi_worker"
    return "mirrored" if len(tf.config.list_physical_devices("GPU")) > 1 else "default"


def training_tasks(cluster):
    """Number of training processes (chief and workers) in a cluster mapping job names to addresses."""
    return sum(len(cluster.get(job, ())) for job in ("chief", "worker"))


def make_strategy(name="auto"):
    """Makes the strategy `name` (see `STRATEGIES` and `resolve_name`).

    Call it first thing in a program: a multi-worker strategy must exist
    before any other TensorFlow work.

    Args:
        name: "auto", "default" (one device), "mirrored" (all local GPUs, or
            the CPU), "multi_worker" (`MultiWorkerMirroredStrategy`, hosts
            from TF_CONFIG) or "tpu".

    Raises:
        StrategyError: the strategy cannot be made here.
    """
    name = resolve_name(name)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        raise StrategyError(f"tpu: no TPU could be reached ({str(error).splitlines()[0]})") from error
    return tf.distribute.TPUStrategy(resolver)


def writes_files(strategy):
    """Whether this process writes the run's files: the chief of a multi-worker cluster, or the only process."""
    return strategy.extended.should_checkpoint

"""Where one DFAD iteration's time goes, per TensorFlow operation type.

Profiles `--iterations` iterations of LeNet-5 -> LeNet-5-Half with Generator-A
(`--generator_width`, batch `--batch_size`) with the TensorFlow profiler, reads
the trace (`*.xplane.pb`) and prints the time of each kernel type and its share
of all kernels' time (summed over threads; the executor's own spans are left out).

    python benchmarks/op_profile.py --policy=float32
    python benchmarks/op_profile.py --policy=mixed_bfloat16
"""

import argparse
import collections
import glob
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# Spans of the executor and of the whole compiled function, not kernels.
CONTAINERS = ("Process", "Run")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default="float32", choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--generator_width", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()

    import keras
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    from dfad_tf import optimizers
    from dfad_tf.distiller import DataFreeDistiller

    sys.path.insert(0, HERE)
    from iteration_speed import build_models

    keras.mixed_precision.set_global_policy(args.policy)
    keras.utils.set_random_seed(0)
    distiller = DataFreeDistiller(*build_models("lenet5", args.generator_width, 256), imitation_steps=5)
    distiller.compile(*optimizers.paper_optimizers(0.01, weight_decay=0))
    distiller.fit(batch_size=args.batch_size, steps_per_epoch=2, epochs=1, verbose=0)  # tracing, first allocations
    logdir = tempfile.mkdtemp(prefix="dfad_profile_")
    tf.profiler.experimental.start(logdir)
    started = time.perf_counter()
    distiller.fit(batch_size=args.batch_size, steps_per_epoch=args.iterations, epochs=1, verbose=0)
    wall = time.perf_counter() - started
    tf.profiler.experimental.stop()

    space = xplane_pb2.XSpace()
    with open(sorted(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True))[-1], "rb") as f:
        space.ParseFromString(f.read())
    seconds = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" in name:  # a kernel span is named "op_name:OpType"
                    op_type = name.rsplit(":", 1)[1]
                    if op_type not in CONTAINERS and not op_type.strip().startswith("__inference"):
                        seconds[op_type] += event.duration_ps / 1e12
    total = sum(seconds.values())
    print(f"{args.policy}: {args.iterations} iterations in {wall:.2f} s wall; kernels {total:.2f} s over all threads")
    for op_type, value in seconds.most_common(args.top):
        print(f"  {op_type:40s} {value:7.3f} s {value / total:6.1%}")


if __name__ == "__main__":
    main()

"""DFAD iterations per second: eager vs one compiled graph vs one XLA-compiled graph.

All variants run back to back in one process, and the script prints ratios to
the compiled graph, so the noise of a shared machine mostly cancels.

    python benchmarks/iteration_speed.py --batch_size=128 --repeats=5

Not a test: it asserts nothing and takes a minute or two.
"""

import argparse
import statistics
import time

import keras

from dfad_tf import models, optimizers
from dfad_tf.distiller import DataFreeDistiller


def build(args, jit_compile, run_eagerly):
    keras.utils.set_random_seed(0)
    image_shape = (32, 32, args.channels)
    teacher = models.build_classifier(args.teacher, image_shape, 10)
    student = models.build_classifier(args.student, image_shape, 10)
    generator = models.build_generator("generator_a", args.latent_dim, image_shape, width=args.generator_width)
    distiller = DataFreeDistiller(teacher, student, generator)
    distiller.compile(*optimizers.paper_optimizers(0.01), jit_compile=jit_compile, run_eagerly=run_eagerly)
    return distiller


def iterations_per_second(distiller, args, iterations):
    distiller.fit(batch_size=args.batch_size, steps_per_epoch=2, epochs=1, verbose=0)  # warm-up and tracing
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        distiller.fit(batch_size=args.batch_size, steps_per_epoch=iterations, epochs=1, verbose=0)
        rates.append(iterations / (time.perf_counter() - start))
    return statistics.median(rates)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="lenet5")
    parser.add_argument("--student", default="lenet5_half")
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--generator_width", type=int, default=64)
    parser.add_argument("--latent_dim", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    variants = {"graph": (False, False), "graph+XLA": (True, False), "eager": (False, True)}
    rates = {}
    for name, (jit_compile, run_eagerly) in variants.items():
        iterations = max(2, args.iterations // 5) if run_eagerly else args.iterations
        rates[name] = iterations_per_second(build(args, jit_compile, run_eagerly), args, iterations)
    print(f"{args.teacher} -> {args.student}, Generator-A width {args.generator_width}, "
          f"{args.channels} channel(s), batch {args.batch_size}")
    print(f"{'variant':<12}{'iterations/s':>14}{'ratio to graph':>16}")
    for name, rate in rates.items():
        print(f"{name:<12}{rate:>14.3f}{rate / rates['graph']:>16.2f}")


if __name__ == "__main__":
    main()

"""DFAD iterations per second of dfad_tf variants against a PyTorch reference and the roofline.

For each configuration (teacher -> student with Generator-A at one batch size)
the script starts one worker process per implementation: dfad_tf variants
(`--variants`), the paper's loop in PyTorch (`torch_reference.py`, in its own
virtual environment, created on first use) and two matmul probes that measure
this machine's float32 and bfloat16 rates. After each worker's warm-up it runs
`--repeats` rounds, each timing every worker once, in rotating order, so the
noise of a shared machine hits all of them alike; while one worker is timed
the others are stopped (SIGSTOP), so that no thread of an idle worker (a
spinning thread pool, a Python garbage collection) competes with it for the
cores. It prints medians over the
rounds of: iterations per second, the ratio to the PyTorch reference in the
same round (and to the first variant), the fraction of the float32 and
bfloat16 matmul rates reached (the roofline: these convolutions are compute
bound), peak memory, and the spread of each worker's rate over the rounds
((max - min) / median), with a warning for any over 10 %: such a run does
not reproduce, and its ratios should not be published.

    python benchmarks/iteration_speed.py --configs=lenet5:128 --repeats=5

Variants are `+`-joined tokens: a base `graph` (one tf.function per
iteration, no XLA), `xla` (jit_compile=True, what Keras's "auto" picks) or
`eager`; then optionally `bf16` (mixed_bfloat16 policy), `speN`
(steps_per_execution=N), `fused` (the k imitation batches from one
generator and one teacher pass; see benchmarks/README.md), `kerasbn` (the
generator's BatchNorm layers Keras's own instead of dfad_tf's fused ones) and
`upsample` (the generator's upsampling as `UpSampling2D` then a 3x3
convolution instead of `UpsampleConv2D`), the last two as before issue 17.
FLOPs are the multiply-adds each implementation executes, so the PyTorch loop
and `upsample` count the generator's convolutions over the upsampled maps.
Not a test: it asserts nothing and takes minutes.
"""

import argparse
import contextlib
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = {
    "lenet5": dict(teacher="lenet5", student="lenet5_half", channels=1, torch_model="lenet5"),
    "resnet": dict(teacher="resnet34_8x", student="resnet18_8x", channels=3, torch_model="resnet"),
}
MATMUL_SIZE = 2048
IMITATION_STEPS = 5
MAX_SPREAD = 0.10


def parse_variant(name):
    """`graph+bf16+spe4` -> dict(base="graph", bf16=True, steps_per_execution=4, fused=False, ...)."""
    base, *options = name.split("+")
    if base not in ("graph", "xla", "eager"):
        raise SystemExit(f"--variants: {name!r} must start with graph, xla or eager")
    variant = dict(base=base, bf16=False, steps_per_execution=1, fused=False, kerasbn=False, upsample=False)
    for option in options:
        if option in ("bf16", "fused", "kerasbn", "upsample"):
            variant[option] = True
        elif option.startswith("spe") and option[3:].isdigit() and int(option[3:]) > 0:
            variant["steps_per_execution"] = int(option[3:])
        else:
            raise SystemExit(f"--variants: unknown option {option!r} in {name!r} "
                             "(bf16, fused, kerasbn, upsample, speN)")
    return variant


# ---------------------------------------------------------------- workers


def fused_distiller_class():
    """`DataFreeDistiller` whose k imitation batches come from one generator and teacher pass."""
    import tensorflow as tf

    from dfad_tf.distiller import DataFreeDistiller

    class FusedImitationDistiller(DataFreeDistiller):
        def train_step(self, rows):  # one replica: the rows are the whole batch
            noise = self.latent_noise(tf.shape(rows)[0], self.iteration)
            k, batch = self.imitation_steps, tf.shape(noise)[0]
            latent = tf.reshape(tf.transpose(noise[:, :k], [1, 0, 2]), [-1, self.latent_dim])
            images = self.generator(latent, training=True)  # BatchNorm statistics over k * batch images
            teacher_outputs = self.teacher(images, training=False)
            images = tf.reshape(images, tf.concat([[k, batch], tf.shape(images)[1:]], 0))
            teacher_outputs = tf.reshape(teacher_outputs, tf.concat([[k, batch], tf.shape(teacher_outputs)[1:]], 0))
            variables = self.student.trainable_variables
            for step in range(k):
                with tf.GradientTape() as tape:
                    student_loss = self.discrepancy(teacher_outputs[step],
                                                    self.student(images[step], training=True))
                self.student_optimizer.apply_gradients(zip(tape.gradient(student_loss, variables), variables))
            generator_loss = self._generation_step(noise[:, -1])
            self.student_loss_tracker.update_state(student_loss)
            self.generator_loss_tracker.update_state(generator_loss)
            self.iteration.assign_add(1)
            return {"loss_S": self.student_loss_tracker.result(), "loss_G": self.generator_loss_tracker.result()}

    return FusedImitationDistiller


@contextlib.contextmanager
def earlier_layers(variant):
    """The generator's layers as they were before issue 17, where `variant` asks for them."""
    import keras

    from dfad_tf.models import generators

    def upsample_then_convolve(filters, name):
        convolve = keras.layers.Conv2D(filters, 3, padding="same", name=name)
        return lambda x: convolve(keras.layers.UpSampling2D(2, name=f"up_{name}")(x))

    saved = generators.FusedBatchNormalization, generators.UpsampleConv2D
    if variant["kerasbn"]:
        generators.FusedBatchNormalization = keras.layers.BatchNormalization
    if variant["upsample"]:
        generators.UpsampleConv2D = upsample_then_convolve
    try:
        yield
    finally:
        generators.FusedBatchNormalization, generators.UpsampleConv2D = saved


def build_models(config, generator_width, latent_dim):
    from dfad_tf import models

    spec = CONFIGS[config]
    image_shape = (32, 32, spec["channels"])
    return (models.build_classifier(spec["teacher"], image_shape, 10),
            models.build_classifier(spec["student"], image_shape, 10),
            models.build_generator("generator_a", latent_dim, image_shape, width=generator_width))


def tf_worker(args):
    import keras

    from dfad_tf import optimizers
    from dfad_tf.distiller import DataFreeDistiller

    from worker_protocol import serve

    variant = parse_variant(args.variant)
    if variant["bf16"]:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    distiller_class = fused_distiller_class() if variant["fused"] else DataFreeDistiller
    with earlier_layers(variant):
        distiller = distiller_class(*build_models(args.config, args.generator_width, args.latent_dim),
                                    imitation_steps=IMITATION_STEPS)
    distiller.compile(*optimizers.paper_optimizers(0.01, weight_decay=0),
                      jit_compile=variant["base"] == "xla", run_eagerly=variant["base"] == "eager",
                      steps_per_execution=variant["steps_per_execution"])

    class IterationTimer(keras.callbacks.Callback):
        """Seconds from the start of a fit's first iteration to the end of its last.

        Leaves out what starting and ending a `fit` call costs. Before
        `DataFreeDistiller.fit` turned tf.data's autotuning off, ending a call
        waited for the autotuning thread's sleep, which doubles from 10 ms: calls
        returned at 2.56, 5.12 or 10.24 s, and timing whole calls of 4 iterations
        gave the few distinct rates, a factor 2 apart, of issue 17.
        """

        def on_train_batch_begin(self, batch, logs=None):
            if batch == 0:
                self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.seconds = time.perf_counter() - self.start

    timer = IterationTimer()

    def run(iterations):
        distiller.fit(batch_size=args.batch_size, steps_per_epoch=iterations, epochs=1, verbose=0,
                      callbacks=[timer])
        return timer.seconds

    run(args.warmup * variant["steps_per_execution"])  # tracing, compiling, first allocations
    serve(run)


def matmul_worker(args):
    import tensorflow as tf

    from worker_protocol import serve

    a, b = (tf.cast(tf.random.normal([MATMUL_SIZE, MATMUL_SIZE], seed=i), args.variant) for i in (1, 2))
    matmul = tf.function(lambda a, b: tf.linalg.matmul(a, b)[0, 0])

    def run(count):
        for _ in range(count):
            matmul(a, b).numpy()

    run(3)
    serve(run)


# ---------------------------------------------------------------- orchestrator


def iteration_flops(config, batch_size, generator_width, latent_dim, variant):
    """Multiply-add FLOPs (2 per MAC) of one DFAD iteration as `variant`'s loop runs the networks.

    Per imitation step: generator and teacher forward, student forward and
    backward (weights and inputs: 2x forward). Generation step: generator
    forward and backward, teacher and student forward and backward to their
    inputs only (1x forward). Convolutions and dense layers only.
    """
    from dfad_tf.profile import macs_per_image

    with earlier_layers(variant):
        teacher, student, generator = (macs_per_image(model) for model in
                                       build_models(config, generator_width, latent_dim))
    imitation = generator + teacher + 3 * student
    generation = 3 * generator + 2 * teacher + 2 * student
    return 2 * batch_size * (IMITATION_STEPS * imitation + generation)


class Worker:
    """A worker process speaking `worker_protocol`."""

    def __init__(self, name, command, units):
        self.name, self.units, self.seconds = name, units, []
        self.log = tempfile.TemporaryFile(mode="w+")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")])),
                   TF_CPP_MIN_LOG_LEVEL="2")
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                        text=True, env=env)

    def _answer(self):
        line = self.process.stdout.readline()
        if not line:
            self.log.seek(0)
            raise SystemExit(f"worker {self.name} failed:\n{self.log.read()[-3000:]}")
        return line.strip()

    def ask(self, command):
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return float(self._answer())

    def wait_ready(self):
        while self._answer() != "ready":
            pass

    def time_round(self):
        self.seconds.append(self.ask(f"run {self.units}"))

    def pause(self, paused=True):
        os.kill(self.process.pid, signal.SIGSTOP if paused else signal.SIGCONT)

    def close(self):
        rss = self.ask("rss")
        self.process.stdin.close()
        self.process.wait()
        return rss


def ensure_torch(venv, version):
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        print(f"creating {venv} with torch=={version} (CPU build)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", f"torch=={version}"], check=True)
    return python


def benchmark(config, batch_size, args, torch_python):
    script = os.path.abspath(__file__)
    common = [f"--batch_size={batch_size}", f"--generator_width={args.generator_width}",
              f"--latent_dim={args.latent_dim}", f"--warmup={args.warmup}"]
    workers = [Worker(f"matmul {p}", [sys.executable, script, "--worker=matmul", f"--variant={p}"], args.matmuls)
               for p in ("float32", "bfloat16")]
    for variant in args.variants:
        per_call = parse_variant(variant)["steps_per_execution"]
        iterations = -(-args.iterations // per_call) * per_call  # whole executions
        workers.append(Worker(f"dfad_tf {variant}", [sys.executable, script, "--worker=tf", f"--variant={variant}",
                                                     f"--config={config}", *common], iterations))
    if torch_python:
        spec = CONFIGS[config]
        workers.append(Worker("PyTorch reference", [
            torch_python, os.path.join(HERE, "torch_reference.py"), f"--model={spec['torch_model']}",
            f"--channels={spec['channels']}", *common], args.iterations))
    for worker in workers:
        worker.wait_ready()
    for round_ in range(args.repeats):
        for worker in workers[round_ % len(workers):] + workers[:round_ % len(workers)]:
            others = [other for other in workers if other is not worker]
            for other in others:
                other.pause()
            try:
                worker.time_round()
            finally:
                for other in others:
                    other.pause(False)
        print(f"  {config}:{batch_size} round {round_ + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    rss = {worker.name: worker.close() for worker in workers}
    return workers, rss


def report(config, batch_size, args, workers, rss):
    paper_flops = iteration_flops(config, batch_size, args.generator_width, args.latent_dim,
                                  parse_variant("graph+upsample"))
    flops = {f"dfad_tf {v}": iteration_flops(config, batch_size, args.generator_width, args.latent_dim,
                                             parse_variant(v)) for v in args.variants}
    flops["PyTorch reference"] = paper_flops
    matmul_flops = 2 * MATMUL_SIZE**3 * args.matmuls
    rates = {w.name: [w.units / s for s in w.seconds] for w in workers}
    peak = {p: [matmul_flops / s for s in next(w for w in workers if w.name == f"matmul {p}").seconds]
            for p in ("float32", "bfloat16")}
    reference = rates.get("PyTorch reference")
    baseline = rates[f"dfad_tf {args.variants[0]}"]
    spec = CONFIGS[config]
    print(f"\n{spec['teacher']} -> {spec['student']}, Generator-A width {args.generator_width}, "
          f"32x32x{spec['channels']}, batch {batch_size}: {paper_flops / 1e9:.1f} GFLOP per iteration as the "
          f"paper's loop runs it, {flops[f'dfad_tf {args.variants[0]}'] / 1e9:.1f} as {args.variants[0]} does; "
          f"matmul {MATMUL_SIZE}^3: float32 {statistics.median(peak['float32']) / 1e9:.0f} GFLOP/s, "
          f"bfloat16 {statistics.median(peak['bfloat16']) / 1e9:.0f} GFLOP/s "
          f"(medians of {args.repeats} rounds)\n")
    print(f"| implementation | iterations/s | vs PyTorch | vs {args.variants[0]} | GFLOP/s | of float32 roofline "
          "| of bfloat16 roofline | peak RSS MiB | spread |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for worker in workers:
        if worker.name.startswith("matmul"):
            continue
        rate = rates[worker.name]
        ratio = f"{statistics.median(r / t for r, t in zip(rate, reference)):.2f}" if reference else "-"
        gain = statistics.median(r / b for r, b in zip(rate, baseline))
        fractions = [f"{statistics.median(r * flops[worker.name] / p for r, p in zip(rate, peak[precision])):.0%}"
                     for precision in ("float32", "bfloat16")]
        print(f"| {worker.name} | {statistics.median(rate):.3f} | {ratio} | {gain:.2f} | "
              f"{statistics.median(rate) * flops[worker.name] / 1e9:.0f} | {fractions[0]} | {fractions[1]} | "
              f"{rss[worker.name]:.0f} | {spread(rate):.0%} |", flush=True)
    unsteady = [f"{name} {spread(rate):.0%}" for name, rate in rates.items() if spread(rate) > MAX_SPREAD]
    if unsteady:
        print(f"\nWARNING: rates spread by more than {MAX_SPREAD:.0%} over the rounds ({', '.join(unsteady)}): "
              "this run does not reproduce; rerun on an idle machine", flush=True)


def spread(rates):
    """(max - min) / median of a worker's rates over the rounds."""
    return (max(rates) - min(rates)) / statistics.median(rates)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="lenet5:128,lenet5:512,resnet:64,resnet:256",
                        help="comma-separated CONFIG:BATCH, CONFIG one of " + ", ".join(CONFIGS))
    parser.add_argument("--variants", default="graph,xla,graph+bf16",
                        help="comma-separated dfad_tf variants (see the module docstring); the first is the "
                             "baseline of the 'vs' column")
    parser.add_argument("--iterations", type=int, default=4, help="DFAD iterations per timed run")
    parser.add_argument("--matmuls", type=int, default=10, help="matmuls per timed run of the roofline probes")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds; medians are reported")
    parser.add_argument("--warmup", type=int, default=2, help="untimed DFAD iterations (executions) per worker")
    parser.add_argument("--generator_width", type=int, default=64)
    parser.add_argument("--latent_dim", type=int, default=256)
    parser.add_argument("--torch_venv", default=os.path.join(HERE, ".torchvenv"),
                        help="virtual environment of the PyTorch reference, created if missing; 'none' skips it")
    parser.add_argument("--torch_version", default="2.13.0")
    parser.add_argument("--worker", choices=["tf", "matmul"], help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--batch_size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return (tf_worker if args.worker == "tf" else matmul_worker)(args)
    args.variants = args.variants.split(",")
    configs = []
    for item in args.configs.split(","):
        config, _, batch = item.partition(":")
        if config not in CONFIGS or not batch.isdigit() or int(batch) < 1:
            raise SystemExit(f"--configs: {item!r} is not CONFIG:BATCH with CONFIG in {', '.join(CONFIGS)}")
        configs.append((config, int(batch)))
    torch_python = None if args.torch_venv == "none" else ensure_torch(args.torch_venv, args.torch_version)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; TensorFlow {tf.__version__}, "
          f"Keras {keras.__version__}; " + " ".join(sys.argv))
    for config, batch_size in configs:
        report(config, batch_size, args, *benchmark(config, batch_size, args, torch_python))


if __name__ == "__main__":
    main()

"""`DataFreeDistiller`: data-free adversarial distillation as a `keras.Model`."""

import keras
import tensorflow as tf

from dfad_tf import losses


class DataFreeDistiller(keras.Model):
    """Trains a student to imitate a teacher on generated "hard samples".

    Each training step is one DFAD iteration (paper Sec. 3.2):

    1. Imitation stage, `imitation_steps` times with the generator fixed: draw
       fresh noise, generate images, and update the student to minimise the
       discrepancy between teacher and student outputs on them.
    2. Generation stage, once with the student fixed: update the generator to
       maximise that discrepancy, with gradients flowing back through both the
       teacher and the student.

    The teacher is frozen and always runs in inference mode. Student and
    generator run in training mode in both stages, as in the paper's reference
    code (so BatchNorm uses batch statistics and updates its moving averages).

    The training data is latent noise, not images: `fit()` without `x` draws it
    from `latent_noise()`, reproducibly from `seed`. `evaluate()` and
    `validation_data` take real labelled images and measure the student.
    Calling the distiller calls the student.

    Args:
        teacher: trained `keras.Model`; frozen by the constructor.
        student: `keras.Model` with the teacher's input and output shapes.
        generator: `keras.Model` mapping `(batch, latent_dim)` noise to images
            of the teacher's input shape.
        imitation_steps: student updates per generator update (k, 5 in the paper).
        seed: integer seed of the latent noise.
        name: model name.
        **kwargs: passed to `keras.Model`.

    Example:
    ```python
    distiller = DataFreeDistiller(teacher, student, generator)
    distiller.compile(
        student_optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        generator_optimizer=keras.optimizers.Adam(1e-3),
        loss="mae",
        metrics=["accuracy"],
    )
    distiller.fit(batch_size=256, steps_per_epoch=50, epochs=40,
                  validation_data=test_images_and_labels)
    distiller.student.save("student.keras")
    ```
    """

    def __init__(self, teacher, student, generator, imitation_steps=5, seed=0,
                 name="data_free_distiller", **kwargs):
        super().__init__(name=name, **kwargs)
        for role, model in (("teacher", teacher), ("student", student), ("generator", generator)):
            if not isinstance(model, keras.Model):
                raise ValueError(f"{role} must be a keras.Model, got {type(model).__name__}")
        _check_shapes("input", teacher.input_shape, student.input_shape)
        _check_shapes("output", teacher.output_shape, student.output_shape)
        if tuple(generator.output_shape[1:]) != tuple(teacher.input_shape[1:]):
            raise ValueError(
                f"generator makes images of shape {generator.output_shape[1:]} but the "
                f"teacher takes {teacher.input_shape[1:]}"
            )
        if not isinstance(imitation_steps, int) or imitation_steps < 1:
            raise ValueError(f"imitation_steps must be a positive integer, got {imitation_steps!r}")
        self.teacher = teacher
        self.student = student
        self.generator = generator
        self.teacher.trainable = False
        self.imitation_steps = imitation_steps
        self.seed = int(seed)
        self.latent_dim = generator.input_shape[-1]
        self.student_loss_tracker = keras.metrics.Mean(name="loss_S")
        self.generator_loss_tracker = keras.metrics.Mean(name="loss_G")
        self.built = True  # all its state lives in the three (built) models

    def compile(self, student_optimizer, generator_optimizer, loss="mae", metrics=None, jit_compile=False,
                **kwargs):
        """Configures the two optimizers, the discrepancy and the student's metrics.

        Args:
            student_optimizer: `keras.optimizers.Optimizer` for the student
                (SGD with momentum in the paper).
            generator_optimizer: `keras.optimizers.Optimizer` for the generator
                (Adam in the paper).
            loss: discrepancy name ("mae", "mse", "kld", "mse+mae") or a
                `keras.losses.Loss` taking `(teacher_outputs, student_outputs)`.
            metrics: metrics of the student on labelled data, for `evaluate()`
                and validation, e.g. `["accuracy"]`.
            jit_compile: compile each DFAD iteration with XLA. Off by default,
                unlike Keras's "auto": on CPU, XLA ran the paper's networks at
                0.69x to 1.00x the plain graph, with a third more memory
                (benchmarks/README.md).
            **kwargs: passed to `keras.Model.compile` (e.g. `steps_per_execution`).
        """
        super().compile(optimizer=student_optimizer, metrics=metrics, jit_compile=jit_compile, **kwargs)
        self.generator_optimizer = generator_optimizer
        self.discrepancy = losses.get(loss)
        # Built here, on their own variables: left unbuilt, Keras would build the
        # student optimizer over every trainable variable, generator included.
        student_optimizer.build(self.student.trainable_variables)
        generator_optimizer.build(self.generator.trainable_variables)
        if self._compile_metrics is not None:
            # Keras builds compiled metrics from the first training batch, but
            # ours is noise without labels: build them from the student's
            # output and integer labels of the matching shape instead.
            outputs = keras.KerasTensor(self.student.output_shape)
            labels = keras.KerasTensor(self.student.output_shape[:-1], dtype="int32")
            self._compile_metrics.build(labels, outputs)

    @property
    def student_optimizer(self):
        return self.optimizer

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def latent_noise(self, batch_size):
        """An endless dataset of latent noise, one element per DFAD iteration.

        Each element has shape `(batch_size, imitation_steps + 1, latent_dim)`:
        one standard normal batch per imitation step and one for the generation
        step. Element `i` depends only on `(seed, i)`, so runs are reproducible,
        and a `tf.distribute` strategy gives each replica its own slice.

        Args:
            batch_size: global batch size of generated images per step.
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        shape = (batch_size, self.imitation_steps + 1, self.latent_dim)
        seed = self.seed
        return tf.data.Dataset.counter().map(
            lambda i: tf.random.stateless_normal(shape, seed=tf.stack([tf.cast(seed, tf.int64), i]))
        ).prefetch(tf.data.AUTOTUNE)

    def fit(self, x=None, batch_size=None, steps_per_epoch=50, **kwargs):
        """Runs DFAD; `x` defaults to `latent_noise(batch_size)`.

        Args:
            x: a dataset of latent noise as made by `latent_noise()`; when
                `None`, `batch_size` sets the generated batch size.
            batch_size: generated images per step (required when `x` is None).
            steps_per_epoch: DFAD iterations per epoch (50 in the paper).
            **kwargs: passed to `keras.Model.fit` (`epochs`, `callbacks`,
                `validation_data`, ...).
        """
        if x is None:
            if batch_size is None:
                raise ValueError("fit() needs batch_size when x is not given")
            x, batch_size = self.latent_noise(batch_size), None
        kwargs.setdefault("shuffle", False)  # noise needs none, and Keras warns for datasets
        return super().fit(x, batch_size=batch_size, steps_per_epoch=steps_per_epoch, **kwargs)

    def train_step(self, noise):
        # One generator pass per imitation step, as in the paper: a single pass over all k batches
        # would normalise them with BatchNorm statistics of k * batch images and update the moving
        # averages once instead of k times, for no measured speed-up (benchmarks/README.md).
        for step in range(self.imitation_steps):
            student_loss = self._imitation_step(noise[:, step])
        generator_loss = self._generation_step(noise[:, -1])
        self.student_loss_tracker.update_state(student_loss)
        self.generator_loss_tracker.update_state(generator_loss)
        return {"loss_S": self.student_loss_tracker.result(),
                "loss_G": self.generator_loss_tracker.result()}

    def _imitation_step(self, noise):
        return imitation_step(self.teacher, self.student, self.generator, noise, self.discrepancy,
                              self.student_optimizer)

    def _generation_step(self, noise):
        return generation_step(self.teacher, self.student, self.generator, noise, self.discrepancy,
                               self.generator_optimizer)

    def test_step(self, data):
        """Measures the student on real labelled images.

        Reports the compiled metrics and `loss_S`, the discrepancy between
        teacher and student on these real images.
        """
        images, labels = data[:2]
        student_outputs = self.student(images, training=False)
        teacher_outputs = self.teacher(images, training=False)
        self.student_loss_tracker.update_state(self.discrepancy(teacher_outputs, student_outputs))
        logs = self.compute_metrics(images, labels, student_outputs)
        # Neither Keras's own (unused) "loss" nor loss_G means anything on real data.
        return {name: value for name, value in logs.items() if name not in ("loss", "loss_G")}


def imitation_step(teacher, student, generator, noise, discrepancy, optimizer):
    """One student update that lowers the discrepancy on fresh generated images.

    The generator is fixed: its images are computed outside the gradient tape.
    Shared by `DataFreeDistiller` and quantization-aware fine-tuning, whose
    student is a tf_keras model (any callable with `trainable_variables`, and an
    optimizer with `apply_gradients`, will do).

    Returns:
        The discrepancy before the update.
    """
    images = generator(noise, training=True)
    teacher_outputs = teacher(images, training=False)
    with tf.GradientTape() as tape:
        student_outputs = student(images, training=True)
        loss = discrepancy(teacher_outputs, student_outputs)
    variables = student.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss


def generation_step(teacher, student, generator, noise, discrepancy, optimizer):
    """One generator update that raises the discrepancy, through teacher and student.

    Returns:
        The negated discrepancy (the generator's loss) before the update.
    """
    with tf.GradientTape() as tape:
        images = generator(noise, training=True)
        teacher_outputs = teacher(images, training=False)
        student_outputs = student(images, training=True)
        loss = -discrepancy(teacher_outputs, student_outputs)
    variables = generator.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss


def _check_shapes(what, teacher_shape, student_shape):
    if tuple(teacher_shape[1:]) != tuple(student_shape[1:]):
        raise ValueError(
            f"teacher and student {what} shapes differ: teacher {teacher_shape[1:]}, "
            f"student {student_shape[1:]}"
        )

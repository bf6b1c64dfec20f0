"""`DataFreeDistiller`: data-free adversarial distillation as a `keras.Model`."""

import keras
import tensorflow as tf

from dfad_tf import averaging, distribute, losses, memory, models, objectives


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
    code (so BatchNorm uses batch statistics and updates its moving averages),
    unless `compile`'s `student_training_in_generator_step` is False.
    What the generator maximises is configurable (`compile`'s
    `generator_loss_weights`, see `objectives`): DFAD's adversarial
    discrepancy by default, or DAFL's or a BatchNorm-prior variant's terms. A
    generator with `trainable=False` is never updated (a "fixed generator"
    run: the student learns from an already trained generator's images).

    The training data is latent noise, not images: iteration `i` draws its
    global batch from `latent_noise(batch_size, i)`, keyed on `(seed, i)`
    alone, with `i` counted by the `iteration` variable, which is saved with
    the weights: a run restored from a backup continues the noise stream where
    it stopped. Under a `tf.distribute` strategy each replica takes its own
    rows of that global batch and the losses are averages over the global
    batch, so R replicas take the steps one device would take at the same
    global batch (with the generator's BatchNorm synchronized, see
    `models.build_generator`). Under the `mixed_float16` policy both
    optimizers scale their loss.
    `evaluate()` and `validation_data` take real labelled images and measure
    the student. Calling the distiller calls the student.

    With `replay_memory`, every imitation step also replays as many images
    drawn from a bank that is a uniform sample of the images generated so far
    (`memory.ReplayMemory`;
    each iteration adds the global batch of its first imitation step, and the
    draws are keyed on `(seed, iteration, step)` and split by rows like the
    noise), so the student keeps agreeing with the teacher where earlier
    generators led it, on any number of replicas alike.

    With `generator_average`, the distiller keeps a momentum average of the
    generator's weights (`averaging.WeightAverage`, updated after every
    generation step), and every imitation step makes half of its images
    with the averaged generator: the student learns from where the
    generator is and from where it has been over its last iterations (MAD,
    Do et al. 2022), at the same cost.

    With `student_average`, the distiller also keeps a momentum average of the
    student's weights (`averaging.WeightAverage`, updated after every
    iteration): the student the run keeps (`kept_student()`), which
    `evaluate()` and validation measure.

    Teacher and student may be classifiers or segmentation models alike: the
    discrepancy compares their logits, per image or per pixel. Models that
    take any image size are fed generated images of the generator's size.

    Args:
        teacher: trained `keras.Model`; frozen by the constructor.
        student: `keras.Model` with the teacher's input and output shapes.
        generator: `keras.Model` mapping `(batch, latent_dim)` noise to images
            of the teacher's input shape.
        imitation_steps: student updates per generator update (k, 5 in the paper).
        seed: integer seed of the latent noise.
        replay_memory: images kept in the replay memory; 0 for none (the paper's DFAD).
        generator_average: momentum of the average of the generator's weights
            that makes half of the student's images, in [0, 1): about
            `1 / (1 - generator_average)` iterations are averaged; 0 for none
            (the paper's DFAD). Ignored for a generator that is not trainable.
        student_average: momentum of the average of the student's weights, in
            [0, 1): about `1 / (1 - student_average)` iterations are averaged;
            0 for none (the paper's DFAD: the student kept is the one trained).
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
    For segmentation, measure the student by mean IoU instead:
    `metrics=[keras.metrics.MeanIoU(11, ignore_class=255, sparse_y_pred=False)]`.
    """

    def __init__(self, teacher, student, generator, imitation_steps=5, seed=0, replay_memory=0,
                 generator_average=0.0, student_average=0.0, name="data_free_distiller", **kwargs):
        super().__init__(name=name, **kwargs)
        for role, model in (("teacher", teacher), ("student", student), ("generator", generator)):
            if not isinstance(model, keras.Model):
                raise ValueError(f"{role} must be a keras.Model, got {type(model).__name__}")
        _check_shapes("input", teacher.input_shape, student.input_shape)
        _check_shapes("output", teacher.output_shape, student.output_shape)
        if not models.takes(teacher, generator.output_shape[1:]):
            raise ValueError(
                f"generator makes images of shape {generator.output_shape[1:]} but the "
                f"teacher takes {teacher.input_shape[1:]}"
            )
        if not isinstance(imitation_steps, int) or imitation_steps < 1:
            raise ValueError(f"imitation_steps must be a positive integer, got {imitation_steps!r}")
        if not isinstance(replay_memory, int) or replay_memory < 0:
            raise ValueError(f"replay_memory must be a non-negative integer, got {replay_memory!r}")
        self.teacher = teacher
        self.student = student
        self.generator = generator
        self.teacher.trainable = False
        self.imitation_steps = imitation_steps
        self.seed = int(seed)
        self.latent_dim = generator.input_shape[-1]
        self.iteration = keras.Variable(0, dtype="int64", trainable=False, name="iteration",
                                        aggregation="only_first_replica")
        self.memory = (memory.ReplayMemory(replay_memory, generator.output_shape[1:], seed=seed) if replay_memory
                       else None)
        self.generator_average = (averaging.WeightAverage(generator, generator_average, name="generator_average")
                                  if generator_average and generator.trainable else None)
        self.average = averaging.WeightAverage(student, student_average) if student_average else None
        self._kept_copy = None
        self.student_loss_tracker = keras.metrics.Mean(name="loss_S")
        self.generator_loss_tracker = keras.metrics.Mean(name="loss_G")
        self.built = True  # all its state lives in the three (built) models

    def compile(self, student_optimizer, generator_optimizer, loss="mae", metrics=None,
                generator_loss_weights=None, student_training_in_generator_step=True, jit_compile=False,
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
            generator_loss_weights: weights of the generator's loss terms
                (`objectives.TERMS`), e.g. `objectives.METHOD_WEIGHTS["dafl"]`;
                default `{"adversarial": 1.0}`, the paper's DFAD.
            student_training_in_generator_step: the generator's step runs
                the student in training mode, as in the paper; False runs it
                in inference mode (`objectives.GeneratorObjective`'s
                `student_training`).
            jit_compile: compile each DFAD iteration with XLA. Off by default,
                unlike Keras's "auto": on CPU, XLA ran the paper's networks at
                0.69x to 1.00x the plain graph, with a third more memory
                (benchmarks/README.md).
            **kwargs: passed to `keras.Model.compile` (e.g. `steps_per_execution`).
        """
        if self.dtype_policy.name == "mixed_float16":  # float16 gradients underflow unless the loss is scaled
            student_optimizer, generator_optimizer = (
                optimizer if isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
                else keras.optimizers.LossScaleOptimizer(optimizer)
                for optimizer in (student_optimizer, generator_optimizer))
        super().compile(optimizer=student_optimizer, metrics=metrics, jit_compile=jit_compile, **kwargs)
        self.generator_optimizer = generator_optimizer
        self.discrepancy = losses.get(loss)
        self.generator_objective = objectives.GeneratorObjective(
            self.teacher, self.discrepancy, generator_loss_weights,
            student_training=student_training_in_generator_step)
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

    def kept_student(self):
        """The student this run keeps: with `student_average`, a copy holding the averaged weights.

        Without it, the student itself. The copy is made once and refreshed at
        each call (eagerly: call it between steps, e.g. from a callback).
        """
        if self.average is None:
            return self.student
        if self._kept_copy is None:  # not tracked: its weights are no state of the distiller
            object.__setattr__(self, "_kept_copy", keras.models.clone_model(self.student))
        self._kept_copy.set_weights([keras.ops.convert_to_numpy(value)
                                     for value in self.average.values(self.student.weights)])
        return self._kept_copy

    def save(self, filepath, *args, **kwargs):
        """Refused: the result of distillation is the student (`distiller.student.save(path)`).

        Raised before anything is written, so `keras.callbacks.ModelCheckpoint`
        on a distiller leaves no empty file either.
        """
        raise NotImplementedError(f"a DataFreeDistiller cannot be saved to {filepath}; save its student instead: "
                                  "distiller.student.save(path)")

    def latent_noise(self, batch_size, iteration):
        """The latent noise of one DFAD iteration's global batch.

        Shaped `(batch_size, imitation_steps + 1, latent_dim)`: one standard
        normal batch per imitation step and one for the generation step. It
        depends only on `(seed, iteration, batch_size)`, so runs are
        reproducible on any number of replicas.

        Args:
            batch_size: global batch size of generated images per step.
            iteration: index of the DFAD iteration (an integer or int64 tensor).
        """
        return latent_noise(self.seed, iteration, batch_size, self.imitation_steps, self.latent_dim)

    def fit(self, batch_size=None, steps_per_epoch=50, **kwargs):
        """Runs DFAD iterations on latent noise drawn by the distiller itself.

        Args:
            batch_size: global batch: generated images per step, split evenly
                across the replicas of the distiller's strategy.
            steps_per_epoch: DFAD iterations per epoch (50 in the paper).
            **kwargs: passed to `keras.Model.fit` (`epochs`, `callbacks`,
                `validation_data`, ...), except `x` and `y`: there is no
                training data.
        """
        if "x" in kwargs or "y" in kwargs:
            raise ValueError("fit() draws its own latent noise: pass batch_size, not x or y")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"fit() needs a positive integer batch_size, got {batch_size!r}")
        replicas = self.distribute_strategy.num_replicas_in_sync
        if batch_size % replicas:
            raise ValueError(f"batch_size {batch_size} does not split evenly across {replicas} replicas")
        # The data is the row numbers of the global batch: the strategy hands
        # each replica its own rows, and train_step draws the noise for them.
        rows = tf.data.Dataset.from_tensors(tf.range(batch_size)).repeat()
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        # Nothing here to tune, and tf.data's autotuning thread sleeps in doubling periods (up to a minute)
        # that the iterator's destructor waits out: fit() returned up to 38 s after its last epoch.
        options.autotune.enabled = False
        kwargs.setdefault("shuffle", False)  # Keras warns for datasets
        return super().fit(rows.with_options(options), steps_per_epoch=steps_per_epoch, **kwargs)

    def train_step(self, rows):
        """One DFAD iteration on this replica's `rows` of the global batch.

        Logs `loss_S`, and `loss_G` only when the generator is trainable: a
        fixed generator has no generation stage, hence no loss to report.
        """
        batch_size = tf.shape(rows)[0] * self.distribute_strategy.num_replicas_in_sync
        noise = tf.gather(self.latent_noise(batch_size, self.iteration), rows)
        # One generator pass per imitation step, as in the paper: a single pass over all k batches
        # would normalise them with BatchNorm statistics of k * batch images and update the moving
        # averages once instead of k times, for no measured speed-up (benchmarks/README.md).
        for step in range(self.imitation_steps):
            student_loss = self._imitation_step(noise[:, step], step, rows)
        if self.average is not None:
            self.average.update(self.student)
        self.student_loss_tracker.update_state(_global_mean(student_loss))
        logs = {"loss_S": self.student_loss_tracker.result()}
        if self.generator.trainable:
            self.generator_loss_tracker.update_state(_global_mean(self._generation_step(noise[:, -1])))
            logs["loss_G"] = self.generator_loss_tracker.result()
            if self.generator_average is not None:
                self.generator_average.update(self.generator)
        self.iteration.assign_add(1)
        return self._across_workers(logs)

    def _imitation_step(self, noise, step=0, rows=None):
        images = self._imitation_images(noise, rows)
        if self.memory is not None:
            images = tf.concat([images, tf.cast(self._replay(images, step, rows), images.dtype)], axis=0)
        return imitation_step(self.teacher, self.student, images, self.discrepancy, self.student_optimizer)

    def _imitation_images(self, noise, rows):
        """The student's images from this replica's `noise`, the noise of its `rows` of the global batch.

        With `generator_average`, the even rows of the global batch come from
        the generator and the odd ones from the averaged generator, each
        normalising its BatchNorm over its own rows: every replica makes half
        of its images each way, and together they make the images of one device.
        """
        if self.generator_average is None:
            return self.generator(noise, training=True)
        if rows is None:  # the noise of the whole global batch
            rows = tf.range(tf.shape(noise)[0])
        fresh = tf.equal(rows % 2, 0)
        return tf.concat([self.generator(tf.boolean_mask(noise, fresh), training=True),
                          self.generator_average.call_model(self.generator, tf.boolean_mask(noise, ~fresh),
                                                            training=True)], axis=0)

    def _replay(self, images, step, rows):
        """This replica's `rows` of a global batch drawn from the replay memory (all of it without `rows`).

        At the first imitation step the memory first takes the global batch of
        fresh images, gathered from every replica, so that it never is empty when
        sampled and holds the same images on every replica as on one device.
        """
        replicas = self.distribute_strategy.num_replicas_in_sync
        if step == 0:
            self.memory.add(tf.distribute.get_replica_context().all_gather(images, axis=0) if replicas > 1
                            else images)
        seed = tf.stack([tf.constant(self.seed, tf.int64), -1 - self.iteration * self.imitation_steps - step])
        replayed = self.memory.sample(tf.shape(images)[0] * replicas, seed)
        return replayed if rows is None else tf.gather(replayed, rows)

    def _generation_step(self, noise):
        return generation_step(self.student, self.generator, noise, self.generator_objective,
                               self.generator_optimizer)

    def test_step(self, data):
        """Measures the kept student (see `kept_student`) on real labelled images.

        Reports the compiled metrics and `loss_S`, the discrepancy between
        teacher and student on these real images.
        """
        images, labels = data[:2]
        if self.average is None:
            student_outputs = self.student(images, training=False)
        else:
            student_outputs = self.average.call_model(self.student, images)
        teacher_outputs = self.teacher(images, training=False)
        self.student_loss_tracker.update_state(_global_mean(self.discrepancy(teacher_outputs, student_outputs)))
        logs = self.compute_metrics(images, labels, student_outputs)
        # Neither Keras's own (unused) "loss" nor loss_G means anything on real data.
        return self._across_workers({name: value for name, value in logs.items()
                                     if name not in ("loss", "loss_G")})

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Nothing to build: the three models are built.

        Keras's version averages a batch of the data over the replicas, which
        fails across the workers of a multi-worker strategy (the same
        incompatibility as tensorflow/tensorflow#72388).
        """

    def _across_workers(self, logs):
        """`logs` in the shape Keras can average over the workers of a multi-worker strategy.

        Keras 3 averages each value over the workers along axis 0, which fails
        on scalars (tensorflow/tensorflow#72388): there, each gets an axis of
        length 1, which the average removes.
        """
        strategy = self.distribute_strategy
        if (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
                and distribute.training_tasks(strategy.cluster_resolver.cluster_spec().as_dict()) > 1):
            return {name: tf.reshape(value, [1]) for name, value in logs.items()}
        return logs


def latent_noise(seed, iteration, batch_size, imitation_steps, latent_dim):
    """The latent noise of DFAD iteration `iteration`: `(batch_size, imitation_steps + 1, latent_dim)`.

    Shared by `DataFreeDistiller` and quantization-aware fine-tuning; see
    `DataFreeDistiller.latent_noise`.
    """
    shape = (batch_size, imitation_steps + 1, latent_dim)
    return tf.random.stateless_normal(shape, seed=tf.stack([tf.constant(seed, tf.int64), tf.cast(iteration, tf.int64)]))


def imitation_step(teacher, student, images, discrepancy, optimizer):
    """One student update that lowers the discrepancy on generated images.

    The generator is fixed: the images come from outside the gradient tape.
    Shared by `DataFreeDistiller` and quantization-aware fine-tuning, whose
    student is a tf_keras model (any callable with `trainable_variables`, and an
    optimizer with `apply_gradients`, will do).

    Returns:
        The discrepancy before the update.
    """
    teacher_outputs = teacher(images, training=False)
    with tf.GradientTape() as tape:
        student_outputs = student(images, training=True)
        loss = discrepancy(teacher_outputs, student_outputs)
    variables = student.trainable_variables
    _apply_gradients(optimizer, tape, loss, variables)
    return loss


def generation_step(student, generator, noise, objective, optimizer):
    """One generator update that lowers `objective`, with gradients through teacher and student.

    Args:
        objective: an `objectives.GeneratorObjective`; DFAD's raises the
            teacher-student discrepancy.

    Returns:
        The generator's loss before the update (the negated discrepancy for DFAD).
    """
    with tf.GradientTape() as tape:
        images = generator(noise, training=True)
        loss = objective(images, student)
    variables = generator.trainable_variables
    _apply_gradients(optimizer, tape, loss, variables)
    return loss


def _apply_gradients(optimizer, tape, loss, variables):
    """Updates `variables` to lower `loss`, scaled first if the optimizer scales losses (mixed_float16).

    Under a `tf.distribute` strategy a Keras loss is already this replica's
    share of the global-batch mean (Keras divides it by the number of
    replicas), and the optimizer sums the replicas' gradients.
    """
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        with tape:  # resumes recording: the scaled loss is what is differentiated
            loss = optimizer.scale_loss(loss)
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))


def _global_mean(replica_share):
    """Undoes Keras's division of a loss by the number of replicas, for reporting it."""
    return replica_share * tf.distribute.get_strategy().num_replicas_in_sync


def _check_shapes(what, teacher_shape, student_shape):
    if tuple(teacher_shape[1:]) != tuple(student_shape[1:]):
        raise ValueError(
            f"teacher and student {what} shapes differ: teacher {teacher_shape[1:]}, "
            f"student {student_shape[1:]}"
        )

"""Train a teacher classifier on a labelled dataset.

Leaves MODEL_DIR/teacher.keras and MODEL_DIR/metrics.json (teacher_accuracy on
the held-out split). A teacher already in MODEL_DIR is only replaced by a more
accurate one.

Example:
  dfad-train-teacher --dataset=digits --model_dir=runs/digits_teacher
"""

import os

from absl import flags, logging

from dfad_tf.cli import common

FLAGS = flags.FLAGS


def train_and_save(model_dir):
    """Trains a teacher from the teacher flags; keeps the better of it and any on disk.

    Returns:
        `(teacher_path, teacher_accuracy)` of the teacher now in `model_dir`.
    """
    import keras

    from dfad_tf import data, evaluation, fileio, teacher

    keras.utils.set_random_seed(FLAGS.seed)
    train = common.labelled_dataset("train")
    test_images, test_labels = evaluation.arrays(common.labelled_dataset("test"))
    spec = data.spec(FLAGS.dataset)
    print(f"Training a {FLAGS.teacher_model} teacher on {FLAGS.dataset} for {FLAGS.teacher_epochs} epochs")
    model, _ = teacher.train_teacher(FLAGS.teacher_model, spec, train, **common.teacher_recipe(),
                                     verbose=common.verbosity())
    accuracy = evaluation.model_accuracy(model, test_images, test_labels)
    path = os.path.join(model_dir, "teacher.keras")
    metrics_path = os.path.join(model_dir, "metrics.json")
    earlier = fileio.read_json(metrics_path, {})
    if os.path.exists(path) and earlier.get("teacher_accuracy", -1) >= accuracy:
        logging.warning("kept the teacher already in %s (accuracy %.4f >= %.4f of this run)",
                        model_dir, earlier["teacher_accuracy"], accuracy)
        return path, earlier["teacher_accuracy"]
    with fileio.atomic_path(path) as tmp:
        model.save(tmp)
    fileio.write_json(metrics_path, {
        **earlier, "teacher_accuracy": accuracy, "teacher_config": {
            "dataset": FLAGS.dataset, "model": FLAGS.teacher_model, "seed": FLAGS.seed, **common.teacher_recipe()},
    })
    print(f"Teacher accuracy on the {FLAGS.dataset} test split: {accuracy:.4f} (saved {path})")
    return path, accuracy


def main(argv):
    del argv
    os.makedirs(FLAGS.model_dir, exist_ok=True)
    train_and_save(FLAGS.model_dir)


def run():
    common.run(main, required=["model_dir"])


if __name__ == "__main__":
    run()

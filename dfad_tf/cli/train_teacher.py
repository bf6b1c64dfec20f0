"""Train a teacher classifier or segmentation model on a labelled dataset.

Leaves MODEL_DIR/teacher.keras and MODEL_DIR/metrics.json (teacher_accuracy,
or teacher_miou for segmentation, on the held-out split). A teacher already in
MODEL_DIR is only replaced by a better one.

Example:
  dfad-train-teacher --dataset=digits --model_dir=runs/digits_teacher
"""

import os

from absl import flags, logging

from dfad_tf.cli import common

FLAGS = flags.FLAGS
for name in ("dataset", "data_dir", "model_dir", "seed", "teacher_model", "teacher_width", "teacher_backbone_weights",
             "output_stride", "teacher_epochs", "teacher_batch_size", "teacher_lr", "teacher_weight_decay",
             "teacher_label_smoothing", "teacher_augment", "teacher_lr_decay_epochs"):
    flags.declare_key_flag(name)  # --help lists these shared flags too


def train_and_save(model_dir):
    """Trains a teacher from the teacher flags; keeps the better of it and any on disk.

    Returns:
        `(teacher_path, score)` of the teacher now in `model_dir`, its score
        being held-out accuracy, or mean IoU for segmentation.
    """
    import keras

    from dfad_tf import data, evaluation, fileio, models, teacher

    keras.utils.set_random_seed(FLAGS.seed)
    spec = data.spec(FLAGS.dataset)
    if models.task(FLAGS.teacher_model) != spec.task:
        raise common.FlagError("teacher_model", f"{FLAGS.teacher_model} is a {models.task(FLAGS.teacher_model)} "
                                                f"model but --dataset={FLAGS.dataset} is {spec.task}")
    recipe = common.teacher_recipe()
    train = common.labelled_dataset("train")
    test_images, test_labels = evaluation.arrays(common.labelled_dataset("test"))
    print(f"Training a {FLAGS.teacher_model} teacher on {FLAGS.dataset} for {FLAGS.teacher_epochs} epochs")
    model, _ = teacher.train_teacher(FLAGS.teacher_model, spec, train, **recipe, verbose=common.verbosity())
    metric = evaluation.metric_name(spec)
    score = evaluation.model_score(model, test_images, test_labels, spec)
    path = os.path.join(model_dir, "teacher.keras")
    metrics_path = os.path.join(model_dir, "metrics.json")
    earlier = fileio.read_json(metrics_path, {})
    key = f"teacher_{metric}"
    if fileio.exists(path) and earlier.get(key, -1) >= score:
        logging.warning("kept the teacher already in %s (%s %.4f >= %.4f of this run)",
                        model_dir, metric, earlier[key], score)
        return path, earlier[key]
    with fileio.atomic_path(path) as tmp:
        model.save(tmp)
    fileio.write_json(metrics_path, {
        **earlier, key: score, "teacher_config": {
            "dataset": FLAGS.dataset, "model": FLAGS.teacher_model, "seed": FLAGS.seed, **recipe},
    })
    print(f"Teacher {metric} on the {FLAGS.dataset} test split: {score:.4f} (saved {path})")
    return path, score


def main(argv):
    del argv
    train_and_save(FLAGS.model_dir)


def run():
    common.run(main, required=["model_dir"])


if __name__ == "__main__":
    run()

"""The teacher panel: one distillation recipe, several teachers dfad_tf did not design, several seeds.

A user brings a teacher trained elsewhere. This panel checks that one set of flags gives a good
student for each kind of teacher a user is likely to bring, on scikit-learn's digits (offline):

| name | teacher | inputs | what makes it hard |
| --- | --- | --- | --- |
| lenet5_smooth | dfad_tf's LeNet-5, label smoothing 0.1 (flags/teacher_digits.cfg) | normalized | nothing (easy) |
| lenet5_plain | the same LeNet-5 trained with plain cross-entropy | normalized | large, unbounded logits |
| convbn | examples/byo_teacher.py's Conv-BN-ReLU net, as .keras | unit [0, 1] | BatchNorm, own range, plain CE |
| convbn_savedmodel | the same teacher as a SavedModel | unit [0, 1] | no inner layer can be read |
| widecnn | a wide CNN with dropout and no BatchNorm, plain CE | symmetric [-1, 1] | another design and range |

    # make the teachers (about 3 minutes), then distil each with the same flags, 3 seeds, 2 students
    python benchmarks/teacher_panel.py --out=runs/panel --make_teachers
    python benchmarks/teacher_panel.py --out=runs/panel --seeds=0,1,2 \
        --students=lenet5_half,mobilenet_v3_small -- --flagfile=flags/digits.cfg

Everything after `--` is passed to every `dfad-distill` run unchanged. Each run is a folder
`OUT/runs/TEACHER-STUDENT-seedN` (finished runs are skipped on a rerun); the table
`OUT/panel.md` and `OUT/panel.csv` give, per teacher and student, the teacher's held-out accuracy and
the mean +- std over seeds of the held-out accuracy of the student each way of choosing it would
give (metrics.json "selections"): without labels the run's choice (agreement with the teacher on the
images generated over the run: what a run without labels keeps), the last epoch or the epoch of best
agreement on the current generator's images, with labels the best epoch (the paper's protocol); the wall time, and the
minutes until the student first came within 2 points of the teacher (metrics.json
"within_2_points_of_teacher"; the mean over the seeds that did).
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import time

import numpy as np

TEACHERS = {  # name -> (file inside OUT/teachers, --teacher_input)
    "lenet5_smooth": ("lenet5_smooth/teacher.keras", "normalized"),
    "lenet5_plain": ("lenet5_plain/teacher.keras", "normalized"),
    "convbn": ("convbn/teacher.keras", "unit"),
    "convbn_savedmodel": ("convbn/teacher_savedmodel", "unit"),
    "widecnn": ("widecnn/teacher.keras", "symmetric"),
}
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def _binary(name, *args):
    command = [sys.executable, "-m", f"dfad_tf.cli.{name}", *args]
    subprocess.run(command, check=True, cwd=REPO)


def _wide_cnn(out_dir):
    """A no-BatchNorm CNN of another design: 5x5 and 3x3 convolutions, dropout, inputs in [-1, 1]."""
    import keras

    from dfad_tf import conventions, evaluation
    from dfad_tf.data import digits

    keras.utils.set_random_seed(0)
    scale, offset = conventions.to_teacher_input("symmetric", digits.SPEC.mean, digits.SPEC.std)
    train_images, train_labels = digits.arrays("train")
    test_images, test_labels = digits.arrays("test")
    train_images = conventions.adapt_images(train_images, scale, offset)
    test_images = conventions.adapt_images(test_images, scale, offset)
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Conv2D(64, 5, activation="relu", padding="same")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(128, 3, activation="relu", padding="same")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Dropout(0.25)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(256, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(x), name="wide_cnn")
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(train_images, train_labels, batch_size=64, epochs=15, verbose=0)
    os.makedirs(out_dir, exist_ok=True)
    model.save(os.path.join(out_dir, "teacher.keras"))
    accuracy = evaluation.model_accuracy(model, test_images, test_labels)
    print(f"wide_cnn teacher, inputs in [-1, 1]: held-out accuracy {accuracy:.4f}")


def make_teachers(out):
    teachers = os.path.join(out, "teachers")
    for name, smoothing in (("lenet5_smooth", "0.1"), ("lenet5_plain", "0")):
        if not os.path.exists(os.path.join(teachers, name, "teacher.keras")):
            _binary("train_teacher", "--flagfile=flags/teacher_digits.cfg",
                    f"--teacher_label_smoothing={smoothing}", f"--model_dir={os.path.join(teachers, name)}")
    if not os.path.exists(os.path.join(teachers, "convbn", "teacher.keras")):
        subprocess.run([sys.executable, os.path.join(REPO, "examples", "byo_teacher.py"),
                        f"--out={os.path.join(teachers, 'convbn')}"], check=True, cwd=REPO)
    if not os.path.exists(os.path.join(teachers, "widecnn", "teacher.keras")):
        _wide_cnn(os.path.join(teachers, "widecnn"))


def _summary(values):
    values = [v for v in values if v is not None]
    if not values:
        return ""
    return f"{np.mean(values):.3f} +- {np.std(values):.3f}"


def run_panel(out, teachers, students, seeds, extra):
    rows = []
    for teacher in teachers:
        path, convention = TEACHERS[teacher]
        for student in students:
            for seed in seeds:
                run_dir = os.path.join(out, "runs", f"{teacher}-{student}-seed{seed}")
                metrics_path = os.path.join(run_dir, "metrics.json")
                if not (os.path.exists(metrics_path) and "student_accuracy" in json.load(open(metrics_path))):
                    started = time.time()
                    _binary("distill", *extra, f"--teacher={os.path.join(out, 'teachers', path)}",
                            f"--teacher_input={convention}", f"--student={student}", f"--seed={seed}",
                            f"--model_dir={run_dir}", "--export=float32")
                    print(f"{teacher} {student} seed {seed}: {time.time() - started:.0f} s", flush=True)
                metrics = json.load(open(metrics_path))
                choices = metrics["selections"]
                rows.append({"teacher": teacher, "student": student, "seed": seed,
                             "teacher_accuracy": metrics["teacher_accuracy"],
                             "run_choice": choices["run_choice"]["accuracy"],
                             "last_epoch": choices["last_epoch"]["accuracy"],
                             "best_gen_agreement": choices["best_gen_agreement"]["accuracy"],
                             "best_epoch_with_labels": choices["best_epoch_with_labels"]["accuracy"],
                             "seconds": metrics["this_run"]["seconds"],
                             "seconds_to_within_2_points": (metrics.get("within_2_points_of_teacher") or {}).get(
                                 "seconds")})
                _write(out, rows)
    return rows


def _reached(group):
    """Mean minutes to within 2 points of the teacher over the seeds that got there, and how many did."""
    minutes = [r["seconds_to_within_2_points"] / 60 for r in group if r["seconds_to_within_2_points"] is not None]
    return f"{np.mean(minutes):.1f} ({len(minutes)} of {len(group)})" if minutes else f"never (0 of {len(group)})"


def _write(out, rows):
    with open(os.path.join(out, "panel.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| teacher | student | teacher | label-free: the run's choice | label-free: last epoch "
             "| label-free: best gen_agreement | best epoch by labels | teacher - the run's choice | minutes "
             "| minutes to within 2 points | the run's choice per seed |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    cells = {}
    for row in rows:
        cells.setdefault((row["teacher"], row["student"]), []).append(row)
    for (teacher, student), group in cells.items():
        gap = np.mean([r["teacher_accuracy"] - r["run_choice"] for r in group])
        lines.append(f"| {teacher} | {student} | {np.mean([r['teacher_accuracy'] for r in group]):.3f} "
                     f"| {_summary([r['run_choice'] for r in group])} "
                     f"| {_summary([r['last_epoch'] for r in group])} "
                     f"| {_summary([r['best_gen_agreement'] for r in group])} "
                     f"| {_summary([r['best_epoch_with_labels'] for r in group])} | {gap:.3f} "
                     f"| {np.mean([r['seconds'] for r in group]) / 60:.1f} | {_reached(group)} "
                     f"| {', '.join('%.3f' % r['run_choice'] for r in group)} |")
    with open(os.path.join(out, "panel.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/panel")
    parser.add_argument("--make_teachers", action="store_true", help="train the panel's teachers and stop")
    parser.add_argument("--teachers", default=",".join(TEACHERS))
    parser.add_argument("--students", default="lenet5_half,mobilenet_v3_small")
    parser.add_argument("--seeds", default="0,1,2")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    out = os.path.abspath(args.out)
    if args.make_teachers:
        make_teachers(out)
        return
    unknown = sorted(set(args.teachers.split(",")) - set(TEACHERS))
    if unknown:
        parser.error(f"--teachers: unknown {', '.join(unknown)}; choose from {', '.join(TEACHERS)}")
    run_panel(out, args.teachers.split(","), args.students.split(","),
              [int(s) for s in args.seeds.split(",")], extra)
    print(open(os.path.join(out, "panel.md")).read())


if __name__ == "__main__":
    main()

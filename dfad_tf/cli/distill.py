"""Distill a teacher into a small student without any real data (DFAD).

A generator invents images on which teacher and student disagree; the student
learns to agree on them; the two alternate until the student matches the
teacher. Real labelled data (--dataset) is only used to train a teacher when
--teacher is not given and to measure the student on held-out images after
each epoch; with --dataset=none nothing but the teacher is needed.

Leaves in MODEL_DIR: run_config.json (this run's configuration, which a rerun,
dfad-export and dfad-evaluate read back), student.keras (the best student so far, chosen by held-out
accuracy or, without data, the one that agreed best with the teacher on the images generated over the run),
student.json (how it was chosen), generator.keras, student_savedmodel/,
student.tflite, metrics.json, history.csv, curves.png (its curves), logs/
(TensorBoard: losses, metrics, generated samples, at DFAD iterations) and
samples/epoch_NNN.png. A killed run restarted with the same command resumes
from its last finished epoch; flags left out of a rerun keep the values of
run_config.json.

--strategy spreads each global batch over several GPUs (mirrored) or hosts
(multi_worker, configured by the TF_CONFIG environment variable; only the
chief writes files).

Example:
  dfad-distill --flagfile=flags/digits.cfg --model_dir=runs/digits
"""

import os

from absl import flags

from dfad_tf import run as library
from dfad_tf.cli import common, distill_flags

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(common)  # --help lists the shared flags too (a teacher may be trained here)
flags.adopt_module_key_flags(distill_flags)


def main(argv):
    del argv
    with distill_flags.flag_errors():
        result = library.distill(distill_flags.distill_config(), verbose=common.verbosity())
    metrics = result.metrics
    if not metrics:  # a worker of a multi-worker run: the chief reports
        return
    summary = ", ".join(f"{key} {metrics[key]:.4f}" for key in metrics
                        if key.startswith(("teacher_", "student_")) and isinstance(metrics[key], float))
    selection = metrics["selection"]
    chosen = (f"by {selection['monitor']} = {selection['value']:.4f}" if selection["monitor"] != "run_choice" else
              "without labels, by its agreement with the teacher on the images generated over the run")
    print(f"Best student chosen {chosen} (epoch {selection['epoch']})"
          f"{'; ' + summary if summary else ''}. Results in {os.path.join(result.model_dir, library.METRICS_FILE)}")


def run():
    common.run(main, required=["model_dir"])


if __name__ == "__main__":
    run()

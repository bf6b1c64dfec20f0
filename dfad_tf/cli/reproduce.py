"""Reproduce the paper's experiments: methods x seeds with the paper's protocol.

Every run (a "cell": one method or variant, one seed) distils the same teacher
into a fresh student and records its best held-out accuracy (mean IoU for a
segmentation dataset) over the epochs;
each row of the table is the mean +- standard deviation over seeds, as in the
paper's Table 2. All distillation flags (--flagfile=flags/digits.cfg, ...)
configure the runs; methods only change what they must:

  teacher   the teacher itself (one model, trained once in MODEL_DIR if
            --teacher is not given)
  kd_ori    Hinton KD on the labelled training split
  kd_rel    KD on unlabelled related images (--related_data)
  kd_unr    KD on unlabelled unrelated images (--unrelated_data)
  random    KD on Gaussian-noise images
  dafl      a generator with DAFL's one-hot, activation and balance terms
  dfad      data-free adversarial distillation as published (--recipe=paper)
  dfad_bn   DFAD with a BatchNorm-statistics prior (needs a teacher with BN)
  robust    dfad_tf's default recipe (--recipe=robust, README "Recipes")

KD runs take as many student updates as a DFAD run (epochs x
iterations_per_epoch x imitation_steps) at the same batch size and learning rate.

Studies: --study=table (the methods), loss (DFAD with each discrepancy, paper
Fig. 4), batch_size (DFAD at each of --batch_sizes, Fig. 7), fixed_generator
(a fresh student on the frozen generator of each seed's DFAD run, against
that run). Each writes MODEL_DIR/STUDY.md (table), STUDY.csv (one row per
cell) and, for loss and batch_size, STUDY.png (mean held-out accuracy per
epoch). A finished cell leaves cell.json and is skipped when the same command
runs again; an unfinished one resumes from its last epoch.

Example:
  dfad-reproduce --flagfile=flags/digits.cfg --model_dir=runs/table --seeds=3 \\
      --methods=teacher,kd_ori,kd_rel,kd_unr,random,dafl,dfad
"""

import os

from absl import flags

from dfad_tf import studies
from dfad_tf.cli import common, distill_flags

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(common)  # --help lists the shared and the distillation flags too
flags.adopt_module_key_flags(distill_flags)

METHODS = studies.METHODS

flags.DEFINE_list("methods", list(METHODS), f"Methods of --study=table, from: {', '.join(METHODS)}.")
flags.DEFINE_integer("seeds", 5, "Runs per method (seeds 0..N-1; the paper uses 5).", lower_bound=1)
flags.DEFINE_enum("study", "table", studies.STUDIES,
                  "table: the methods; loss: DFAD with each discrepancy (paper Fig. 4); batch_size: DFAD at each "
                  "of --batch_sizes (Fig. 7); fixed_generator: a fresh student on each DFAD run's frozen generator.")
flags.DEFINE_list("batch_sizes", ["32", "64", "128", "256"], "Batch sizes of --study=batch_size.")
flags.DEFINE_string("related_data", "printed_digits",
                    "Images for kd_rel: a stand-in of data.alternatives (printed_digits, photo_patches) or a "
                    "dataset of --dataset's choices with the same image shape (labels unused).")
flags.DEFINE_string("unrelated_data", "photo_patches", "Images for kd_unr, as for --related_data.")
flags.DEFINE_float("kd_temperature", 4.0, "Softmax temperature of the KD baselines.")

flags.register_validator("methods", lambda names: bool(names) and set(names) <= set(METHODS),
                         message=f"--methods must be a comma-separated list of: {', '.join(METHODS)}")
flags.register_validator("batch_sizes", lambda values: bool(values) and all(v.isdigit() and int(v) > 0 for v in values),
                         message="--batch_sizes must be a comma-separated list of positive integers, e.g. 64,128,256")
common.require_positive("kd_temperature")

FIELDS = {**distill_flags.FIELDS, "related_data": "related_data", "unrelated_data": "unrelated_data"}


def main(argv):
    del argv
    base = distill_flags.distill_config()
    kd = studies.KDConfig(FLAGS.related_data, FLAGS.unrelated_data, FLAGS.kd_temperature)
    with common.flag_errors(FIELDS):
        table = studies.reproduce(base, FLAGS.study, FLAGS.methods, FLAGS.seeds,
                                  common.integers(FLAGS.batch_sizes), kd, verbose=common.verbosity())
    print(table)
    path = os.path.join(FLAGS.model_dir, FLAGS.study)
    print(f"Results in {path}.md and {path}.csv")


def run():
    common.run(main, required=["model_dir"])


if __name__ == "__main__":
    run()

"""absl command-line binaries: train_teacher, distill, evaluate."""

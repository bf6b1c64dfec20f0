"""dfad_tf: data-free adversarial distillation for Keras 3 / TensorFlow."""

import re

from setuptools import find_packages, setup

with open("dfad_tf/__init__.py") as f:
    version = re.search(r'__version__ = "([^"]+)"', f.read()).group(1)

# dfad-export --qat_iterations: tensorflow-model-optimization wraps only tf_keras models.
QAT = ["tf-keras==2.21.*", "tensorflow-model-optimization"]

setup(
    name="dfad_tf",
    version=version,
    description="Data-free adversarial distillation (DFAD) of Keras classifiers and segmentation models, with absl binaries and TFLite export",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # flags/ ships as dfad_tf/configs/, so that --config=NAME works after a plain pip install
    packages=[*find_packages(include=["dfad_tf", "dfad_tf.*"]), "dfad_tf.configs"],
    package_dir={"dfad_tf.configs": "flags"},
    package_data={"dfad_tf.configs": ["*.cfg"]},
    install_requires=[
        # tensorflow, not tensorflow-cpu: only the full wheel runs on GPUs (--strategy=mirrored,
        # mixed_float16), and tf-keras in the [qat] extra requires it by that name.
        "tensorflow==2.21.*",
        # The distiller uses private Keras members (_compile_metrics, _maybe_symbolic_build,
        # _initial_epoch): only the minor version the tests run on.
        "keras>=3.15,<3.16",
        "tensorboard",
        "h5py",  # the training backup's callback states, beside Keras's weights in the same file
        "tensorflow-datasets",
        "importlib_resources",  # tensorflow-datasets imports it to prepare a dataset; etils 1.15 no longer installs it
        "absl-py",
        "scikit-learn",
        "matplotlib",  # the reproduce binary's plots, and the fonts of its printed-digits stand-in data
        "pillow",  # reading CamVid and NYUv2 image and mask files
        "ai-edge-litert",
        "numpy",
    ],
    extras_require={"qat": QAT, "test": ["pytest", "pytest-xdist", "ruff", *QAT]},
    entry_points={
        "console_scripts": [
            "dfad-train-teacher=dfad_tf.cli.train_teacher:run",
            "dfad-distill=dfad_tf.cli.distill:run",
            "dfad-evaluate=dfad_tf.cli.evaluate:run",
            "dfad-export=dfad_tf.cli.export:run",
            "dfad-inspect=dfad_tf.cli.inspect:run",
            "dfad-reproduce=dfad_tf.cli.reproduce:run",
        ]
    },
)

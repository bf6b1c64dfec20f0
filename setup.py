"""dfad_tf: data-free adversarial distillation for Keras 3 / TensorFlow."""

import re

from setuptools import find_packages, setup

with open("dfad_tf/__init__.py") as f:
    version = re.search(r'__version__ = "([^"]+)"', f.read()).group(1)

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
        # tensorflow, not tensorflow-cpu: tf-keras (needed by tensorflow-model-optimization)
        # depends on the full package, and both would be installed otherwise.
        "tensorflow==2.21.*",
        "keras>=3.15",
        "tf-keras==2.21.*",
        "keras-cv",
        "tensorboard",
        "tensorflow-datasets",
        "tensorflow-model-optimization",
        "absl-py",
        "scikit-learn",
        "matplotlib",  # the reproduce binary's plots, and the fonts of its printed-digits stand-in data
        "pillow",  # reading CamVid and NYUv2 image and mask files
        "ai-edge-litert",
        "numpy",
    ],
    extras_require={"test": ["pytest"]},
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

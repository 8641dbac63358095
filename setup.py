from setuptools import find_packages, setup

# Optional parts, installed as extras: `pip install "keras_sparse[data,plots]"`.
DATA = ["tensorflow-datasets>=4.9.10,<4.10",
        # tensorflow-datasets 4.9.10 needs it to build or load some data sets
        # but does not declare it.
        "importlib_resources>=6"]
PLOTS = ["matplotlib>=3.8"]
TENSORBOARD = ["tensorboard>=2.21,<2.22"]
TFMOT = ["tensorflow-model-optimization==0.8.1", "tf-keras>=2.21,<2.22"]
RECIPES = DATA + PLOTS + ["scipy>=1.11"]

setup(
    name="keras_sparse",
    version="0.1.0",
    description="Sparse neural-network training (SET, RigL, SNFS, DST-EE, "
    "pruning at init, gradual pruning) for Keras 3.",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    # Only the library: `recipes` and `benchmarks` run from a checkout
    # (`python -m recipes ...`) and are not installed as top-level packages.
    packages=find_packages(include=["keras_sparse", "keras_sparse.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        # Keras internals are used in one module (keras_sparse/utils/
        # keras_compat.py), which checks the version; Keras 4 may change the
        # public API too.
        "keras>=3.15,<4",
        "numpy>=1.26",
    ],
    extras_require={
        "data": DATA,
        "plots": PLOTS,
        "recipes": RECIPES,
        "tensorboard": TENSORBOARD,
        "tfmot": TFMOT,
        "test": RECIPES + TENSORBOARD + TFMOT + [
            "pytest>=8",
            "pytest-xdist>=3",
            "tensorflow-serving-api>=2.21,<2.22",
        ],
    },
)

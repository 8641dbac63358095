from setuptools import find_packages, setup

setup(
    name="keras_sparse",
    version="0.1.0",
    description="Sparse neural-network training (SET, RigL, SNFS, DST-EE, "
    "pruning at init, gradual pruning) for Keras 3.",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["keras_sparse", "keras_sparse.*", "recipes", "recipes.*", "benchmarks", "benchmarks.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.15,<3.16",  # model.py uses keras.src internals checked on 3.15
        "tensorflow-datasets>=4.9.10,<4.10",
        "importlib_resources>=6",
        "numpy>=1.26",
        "matplotlib>=3.8",
    ],
    extras_require={
        "tensorboard": ["tensorboard>=2.21,<2.22"],
        "tfmot": ["tensorflow-model-optimization==0.8.1", "tf-keras>=2.21,<2.22"],
        "test": [
            "pytest>=8",
            "pytest-xdist>=3",
            "scipy>=1.11",
            "tensorboard>=2.21,<2.22",
            "tensorflow-serving-api>=2.21,<2.22",
            "tensorflow-model-optimization==0.8.1",
            "tf-keras>=2.21,<2.22",
        ],
    },
)

"""Packaging for mrdib-tf: MRdIB as a plug-and-play training regularizer for multimodal recommenders."""

from setuptools import find_packages, setup

setup(
    name="mrdib-tf",
    version="0.1.0",
    description=(
        "TensorFlow/Keras MRdIB (Multimodal Representation-disentangled Information Bottleneck) "
        "for multimodal recommenders: MMRec data -> TFRecords -> Keras backbones -> TF Serving."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["mrdib_tf*", "data_pipeline*", "trainers*"]),
    # The set measured to install and work together (see README, "Stack").
    install_requires=[
        "tensorflow==2.21.0",
        "keras==3.15.1",
        "tf-keras==2.21.0",
        "tensorflow-probability==0.25.0",
        "tensorflow-recommenders==0.7.7",
        "keras-tuner==1.4.8",
        "tensorboard==2.21.0",
        "numpy==2.4.6",
        "h5py>=3.10",  # checkpoints are read directly (Keras writes them)
        "scipy>=1.13",
        "scikit-learn>=1.5",
        "matplotlib>=3.9",
    ],
    extras_require={
        "test": ["pytest>=8", "tensorflow-serving-api==2.21.0"],
    },
)

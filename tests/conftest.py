"""Test setup: real data through the data-root setting, no network, small CPU budget."""
import os
from pathlib import Path

import pytest
import torch
from plugin_env import toy_dist

REPO = Path(__file__).resolve().parents[1]
MNIST_ROOT = Path(os.environ.get("ZOO_TEST_MNIST", REPO.parent / "shared" / "data" / "mnist"))
FASHION_ROOT = Path(os.environ.get("ZOO_TEST_FASHION", "/usr/share/datasets/fashion-mnist"))

os.environ["ZOO_DATA"] = str(MNIST_ROOT)
os.environ["ZOO_OFFLINE"] = "1"  # no network here: never try a download in tests
os.environ["ZOO_CONFIG"] = ""  # no user file: the developer's own ~/.config/zoo/config.yaml must not leak in
os.environ.setdefault("ZOO_CACHE", str(Path(os.environ.get("TMPDIR", "/tmp")) / "zoo-test-cache"))
torch.set_num_threads(1)  # 2 cores: pytest + helper processes (DDP, CLI subprocesses) share them

# The settings every CPU test run uses: MNIST's test split, a seeded 9k/1k holdout.
MNIST_SETS = ["data.split=test", "data.holdout=1000"]


@pytest.fixture
def mnist_sets():
    return list(MNIST_SETS)


@pytest.fixture(scope="session")
def mnist_root():
    if not (MNIST_ROOT / "t10k-images-idx3-ubyte.gz").exists():
        pytest.fail(f"real MNIST test files not found in {MNIST_ROOT} (set ZOO_TEST_MNIST)")
    return MNIST_ROOT


@pytest.fixture(scope="session")
def toy_site(tmp_path_factory):
    """A site folder holding the `toy` plugin distribution (tests/plugin_env.py), for subprocesses' PYTHONPATH."""
    return toy_dist(tmp_path_factory.mktemp("site"))


@pytest.fixture
def toy(toy_site, monkeypatch):
    """The registry with the `toy` plugins loaded (fresh before and after the test)."""
    import sys

    from zoo.registry import registry
    monkeypatch.syspath_prepend(str(toy_site))
    registry(reload=True)
    yield
    sys.modules.pop("toyzoo", None)
    registry(reload=True)

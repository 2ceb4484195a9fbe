"""zoo's pytest plugin (entry point ``pytest11``): the ``zoo_registry`` fixture for plugin tests.

Installed with zoo, so any test suite in the environment can use it without a conftest::

    def test_my_plugin_loads_alone(zoo_registry):
        reg = zoo_registry("datasets", "my-vae")     # entry-point names and/or plugin objects
        assert not reg.failures and "my-vae" in reg.models

Kept light at import time (pytest imports it at start-up): zoo.testing is imported on first use.
"""
from __future__ import annotations

import contextlib

import pytest


@pytest.fixture
def zoo_registry():
    """A factory: ``zoo_registry(*plugins, **named)`` returns a fresh registry holding only those plugins
    (see :func:`zoo.testing.registry_with`) and makes it zoo's registry until the test ends."""
    from zoo.testing import registry_with
    with contextlib.ExitStack() as stack:
        yield lambda *plugins, **named: stack.enter_context(registry_with(*plugins, **named))

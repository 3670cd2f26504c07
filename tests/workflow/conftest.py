"""Every test in tests/workflow/ runs real Snakemake (or `make`) in a temporary directory: slow."""

import pytest


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/workflow/" in item.nodeid:
            item.add_marker(pytest.mark.slow)

"""Shared fixtures: ../shared (beside the repo root; tests skip when absent), one torch thread."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tests run on a small shared CPU: one intra-op thread is faster and deterministic."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the repository root, or skip the test when it is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared is not available (tests that need it are skipped)")
    return SHARED

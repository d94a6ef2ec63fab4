from __future__ import annotations

import pytest

from tests.support.memory_steps import World


@pytest.fixture
def world() -> World:
    return World()

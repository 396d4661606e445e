"""Shared pytest options.

--slow          also run the long runs (1,000 simulator seeds and the like)
--fuzz-count N  number of random and mutated inputs for the wire decoder fuzz test
"""

from __future__ import annotations

import pytest
from hypothesis import settings

# No example database: a run must not depend on what an earlier run saved
# (a brand-new machine has none); a failure prints its reproduction blob.
settings.register_profile("rais", database=None, print_blob=True)
settings.load_profile("rais")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", default=False, help="run slow tests")
    parser.addoption(
        "--fuzz-count",
        action="store",
        type=int,
        default=20_000,
        help="inputs for the wire fuzz test (the full run uses 1000000)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def fuzz_count(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("--fuzz-count"))

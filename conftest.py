"""Test-wide settings: notebooks under nbval run with the small `ci` preset unless told otherwise."""

import os

import pytest

# Set before nbval starts any kernel, so that every notebook kernel inherits it.
os.environ.setdefault("MINILM_PRESET", "ci")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and far faster than on two when other processes share the cores.
    A test module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch  # here, so that test modules without torch do not load it

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

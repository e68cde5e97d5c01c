"""Test-wide settings: notebooks under nbval run with the small `ci` preset unless told otherwise, and
tests marked `cuda` run only where PyTorch sees a CUDA GPU."""

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


def pytest_collection_modifyitems(config, items):
    """Skip the tests marked `cuda` when there is no CUDA GPU, saying which of the two reasons it is."""
    marked = [item for item in items if item.get_closest_marker("cuda")]
    if not marked:
        return
    import torch  # only when a CUDA test was collected

    if torch.cuda.is_available():
        return
    if torch.version.cuda is None:
        reason = f"needs a CUDA GPU: this PyTorch ({torch.__version__}) is built without CUDA"
    else:
        reason = f"needs a CUDA GPU: this PyTorch (CUDA {torch.version.cuda}) sees no CUDA device"
    for item in marked:
        item.add_marker(pytest.mark.skip(reason=reason))

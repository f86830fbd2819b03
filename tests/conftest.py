import pytest
import torch


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device; skipped without one")
    config.addinivalue_line("markers", "slow: takes more than a few seconds on a 2-core CPU")


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    """An empty folder per test module: the toy dataset is generated there on first use."""
    return tmp_path_factory.mktemp("toy")


@pytest.fixture
def one_thread():
    """Tiny models, many small tensor ops: on 2 shared cores, thread hand-offs cost more than the work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)

import pytest
import torch

from convnet.models import create_model, get_entry


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _threads():
    """Every test starts with the process' thread count: a test (or a benchmark's main run
    in-process) that changes it would otherwise change the reduction order, and so the last bits,
    of every in-process training after it (the exact-resume tests compare such a run bit for bit
    with a CLI run in a fresh process)."""
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def tiny_model(name: str, spatial_dims: int = 2, in_channels: int = 2, num_classes: int = 5, **kw):
    """A registered model at the small size its family declares for tests."""
    entry = get_entry(name)
    return create_model(name, spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes,
                        **{**entry.extra.get("tiny", {}), **kw})


def input_size(name: str, default: int = 32) -> int:
    """The per-axis input the contract tests feed: the fixed size, the family's declared
    ``extra["test_input"]`` (for stems of unpadded convolutions), or ``default``."""
    entry = get_entry(name)
    return entry.input_size if entry.fixed_input_size else entry.extra.get("test_input", default)

"""Test settings: smoke mode, a temporary data folder, CPU unless TORCH_DEVICE says otherwise."""
import os
import tempfile

import pytest
import torch

# Set before helpers is imported anywhere: every test (and every notebook kernel the tests start,
# which inherits the environment) runs in smoke mode with its caches in a temporary folder.
os.environ["COURSE_MODE"] = "smoke"
os.environ.setdefault("COURSE_DATA", tempfile.mkdtemp(prefix="course-test-data-"))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["HF_HUB_OFFLINE"] = "1"      # peft and timm never reach for the Hugging Face hub in a test
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip)


@pytest.fixture
def device():
    """The device the tests run on: $TORCH_DEVICE, else the CPU."""
    return torch.device(os.environ.get("TORCH_DEVICE", "cpu"))


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A private, empty data folder for one test."""
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "data"))
    return tmp_path / "data"

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# The devices the equality tests run on: the CPU always, CUDA when this torch sees a GPU. The
# ids are the device names, so `pytest -k cuda` selects the CUDA cases (the GPU check runs them).
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# How much wider a float32 tolerance is on CUDA than on the CPU: TF32 is off (see `device`),
# but the GPU's kernels (fused attention, cuBLAS) sum in another order, so float32 results
# differ from the CPU's and from each other by a few ulps more.
CUDA_FP32_WIDENING = 10.0


@pytest.fixture(params=DEVICES)
def device(request):
    """A torch.device per entry of DEVICES; on CUDA, float32 matmuls and convolutions stay
    float32 (no TF32) for the test, and the previous settings come back after it."""
    if request.param != "cuda":
        yield torch.device(request.param)
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield torch.device("cuda")
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def fp32_atol(device: torch.device, cpu_atol: float) -> float:
    """The float32 tolerance of a comparison on ``device``: ``cpu_atol`` on the CPU."""
    return cpu_atol if device.type == "cpu" else cpu_atol * CUDA_FP32_WIDENING

"""Whether a CUDA GPU is there, asked without importing torch where the answer is no."""

from __future__ import annotations

import ctypes
import sys


def _driver_sees_a_gpu() -> bool:
    """Whether the CUDA driver library loads and counts at least one device (no driver: no GPU)."""
    try:
        driver = ctypes.CDLL("nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    return driver.cuInit(0) == 0 and driver.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0


def cuda_available() -> bool:
    """``torch.cuda.is_available()``, importing torch only where the CUDA driver sees a GPU (importing torch takes
    seconds; on a machine without a GPU the answer needs none of it). torch is still asked there: a CPU build of
    torch cannot use the GPU that the driver sees."""
    if "torch" not in sys.modules and not _driver_sees_a_gpu():
        return False
    import torch

    return bool(torch.cuda.is_available())

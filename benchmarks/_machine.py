"""Machine description shared by the benchmark scripts (printed into their JSON)."""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import platform
import subprocess
from typing import Any


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        out = ""
    for line in out.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(module: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return None
    return str(getattr(__import__(module), "__version__", None))


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """Date, platform, CPU, memory, load, library versions and the GPU (if ``device`` is cuda).

    Parameters
    ----------
    device : str
        The torch device the benchmark runs on.

    Returns
    -------
    dict
        JSON-serialisable description of the machine.
    """
    import torch

    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if importlib.util.find_spec("psutil") is not None:
        import psutil

        info["memory_total_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    for module in ("numpy", "xarray", "dask", "zarr", "scipy", "xsr"):
        info[module] = _version(module)
    if device.startswith("cuda") and torch.cuda.is_available():
        info["device_name"] = torch.cuda.get_device_name(0)
    return info

"""What a saved result records about the run that made it: package, torch, timm and Python versions, the
UTC time and the torch.distributed world size.

`Result.save_json` writes it under "provenance"; the CLI adds the device, the checkpoint and the data spec.

Example:
    >>> from fastvit_analysis.common.provenance import environment
    >>> sorted(environment())
    ['created_utc', 'package', 'python', 'timm', 'torch', 'world_size']
"""
from __future__ import annotations

import datetime
import platform
from typing import Any

__all__ = ["environment"]


def environment() -> dict[str, Any]:
    """Versions, UTC time (seconds) and world size of this process, as JSON-safe values."""
    import torch

    from .. import __version__
    from .distributed import world_size

    try:
        import timm

        timm_version = timm.__version__
    except Exception:  # pragma: no cover - timm is a dependency
        timm_version = None
    return {"package": __version__, "torch": torch.__version__, "timm": timm_version,
            "python": platform.python_version(),
            "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "world_size": world_size()}

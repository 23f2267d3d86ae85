"""Running a command on 2 gloo ranks (CPU) from a test: `torch.distributed.run --standalone`, the repository
on PYTHONPATH, one intra-op thread per rank, no progress bars."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "FASTVIT_PROGRESS": "0", "OMP_NUM_THREADS": "1",
       "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def torchrun(args: list[str], *, cwd: Path = ROOT, nproc: int = 2, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run --standalone --nproc-per-node NPROC *args`, output captured."""
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                           str(nproc), *args], capture_output=True, text=True, cwd=cwd, env=ENV, timeout=timeout)

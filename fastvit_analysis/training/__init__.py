"""`train`: the paper's CIFAR recipe with timm's components, checkpointed, resumable, data-parallel
under torchrun.

Modules: `recipe` (hyper-parameters, optimizer, schedule, Mixup, loss), `batches` (sharded training and
evaluation batches), `loop` (`train`, `evaluate`), `checkpoint` (what a checkpoint holds, resume
decisions), `output` (the locked output folder, atomic writes), `distributed` (DDP and rank-0 decisions).

Example:
    >>> import torch, fastvit_analysis as fa
    >>> from fastvit_analysis.models import create
    >>> x, y = torch.randn(16, 3, 32, 32), torch.arange(16) % 10
    >>> result = fa.train(create("demo_resnet", widths=(4, 4, 8, 8), stem_width=4), (x, y), epochs=1,
    ...                   batch_size=8, mixup=0, cutmix=0, randaugment=None, progress=False)
    >>> result.epochs_completed, result.history[0]["samples"]
    (1, 16)
"""
from .checkpoint import CHECKPOINT_FORMAT, ResumeMismatchError
from .loop import evaluate, train
from .output import FolderBusyError
from .recipe import Recipe
from .result import TrainResult

__all__ = ["train", "evaluate", "TrainResult", "CHECKPOINT_FORMAT", "ResumeMismatchError", "FolderBusyError",
           "Recipe"]

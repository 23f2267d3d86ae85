"""AlterNet and CIFAR model configurations, registered with timm's model registry.

Importing this package (done by `import fastvit_analysis`) registers: alternet50_cifar, alternet50_cifar_ref,
alternet50, preact_resnet50_cifar, vit_ti_cifar, vit_ti_gap_cifar, vit_ti_local_cifar, pit_ti_cifar,
swin_ti_cifar, demo_resnet, demo_vit, demo_alternet.

Example:
    >>> import fastvit_analysis.models as fm
    >>> fm.model_kind(fm.create("demo_alternet"))
    'hybrid'
"""
from . import alternet, vit_cifar  # noqa: F401  (registration side effect)
from .alternet import AlterNet, MSABlock, PreActBottleneck, WindowAttention
from .config import CIFAR_MEAN_STD, IMAGENET_MEAN_STD, MODEL_KINDS
from .factory import create, describe_mismatch, load_checkpoint, model_kind, model_spec, state_dict_mismatch
from .vit_cifar import LocalTokenAttention, local_attention_mask

REGISTERED_MODELS = tuple(sorted(MODEL_KINDS))

__all__ = ["AlterNet", "MSABlock", "PreActBottleneck", "WindowAttention", "LocalTokenAttention",
           "local_attention_mask", "create", "load_checkpoint", "model_kind", "model_spec",
           "state_dict_mismatch", "describe_mismatch",
           "CIFAR_MEAN_STD", "IMAGENET_MEAN_STD", "MODEL_KINDS", "REGISTERED_MODELS"]

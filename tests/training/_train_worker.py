"""Run by tests/training/test_distributed.py, alone or under torchrun: fa.train on a tiny demo_vit
(LayerNorm only, no augmentation or DropPath: the 1- and 2-rank runs see the same global batches)."""
import json
import sys

import torch
import torch.distributed as dist

import fastvit_analysis as fa
from fastvit_analysis.data import build_loader
from fastvit_analysis.models import create

out, epochs, report = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if "WORLD_SIZE" in __import__("os").environ:
    dist.init_process_group("gloo")
torch.manual_seed(0)
model = create("demo_vit", img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2)
result = fa.train(model, "synthetic", test_data=build_loader("synthetic", "test", 16, num_samples=48), num_samples=32,
                  epochs=epochs, batch_size=16,
                  lr=3e-3, warmup_epochs=0, mixup=0, cutmix=0, randaugment=None, crop_flip=False,
                  label_smoothing=0, grad_clip=None, out=out, progress=False)
rank = dist.get_rank() if dist.is_initialized() else 0
with open(f"{report}.rank{rank}.json", "w") as f:
    json.dump({"history": result.history, "world_size": result.world_size,
               "resumed_from": result.resumed_from_epoch}, f)
if dist.is_initialized():
    dist.destroy_process_group()

"""Clean test accuracy of the three demo models on 24×24 synthetic images with the demo's training recipe
(8 epochs incl. 1 warm-up, 5000 images, batch 64, lr 2e-3, no Mixup/CutMix/RandAugment, 1000 test images).

Run: PYTHONPATH=. python bench/bench_demo_image_size.py demo_resnet demo_vit demo_alternet
Measured 2026-12-02 on the shared 2-core box (load ~5-8), seed 0: demo_resnet 91.4%, demo_vit 99.2%,
demo_alternet (window 3) 99.8% test accuracy (n = 1000 each).
"""
import sys
import time

import torch

import fastvit_analysis as fa
from fastvit_analysis.data import build_loader

kw = {"demo_resnet": {}, "demo_vit": {"img_size": 24}, "demo_alternet": {"img_size": 24}}  # window 24 // 8 = 3
if __name__ == "__main__":
    torch.set_num_threads(2)
    for name in sys.argv[1:]:
        t = time.perf_counter()
        test = build_loader("synthetic:24", "test", 256, num_samples=1000)
        r = fa.train(name, "synthetic:24", test_data=test, epochs=8, warmup_epochs=1, batch_size=64, lr=2e-3,
                     mixup=0, cutmix=0, randaugment=None, num_samples=5000, progress=False, seed=0,
                     channels_last=True, model_kwargs=kw[name])
        print(name, "test acc", r.history[-1].get("test_accuracy", r.history[-1]), f"{time.perf_counter()-t:.0f}s",
              flush=True)

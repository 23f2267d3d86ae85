"""HVP-capable fused attention (Triton on GPU, composite torch on CPU) and model patching."""

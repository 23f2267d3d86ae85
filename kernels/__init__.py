"""Triton kernels of fastvit_analysis (installed as ``fastvit_analysis.kernels``).

Importing this package does not import triton; the kernel modules do. On a machine
without CUDA, set ``TRITON_INTERPRET=1`` *before* importing a kernel module to run
the kernels in Triton's interpreter (tests do this in tests/conftest.py).
"""

// Schemas of the feature-statistics ops. Kernels: cpu/feature_stats_cpu.cpp (CPU),
// cuda/feature_stats_cuda.cu (CUDA); shape functions for torch.compile are registered from
// Python (fastvit_analysis/ops/_fake.py).
//
//   diag_log_amplitude(maps, reduce): maps (B, C, n, n), any strides. For each map the 2-D DFT on
//     the diagonal, F(k, k) = sum_m s[m] e^{-2 pi i k m / n} with the anti-diagonal sums
//     s[m] = sum_{h + w = m mod n} maps[h, w], k < ceil(n/2); returns log(|F(k, k)| + 1e-6),
//     [B, C, K], or its mean over (b, c), [K], when reduce.
//   feature_moments(maps): per-map mean and unbiased variance over the H*W positions, [B, C] each.
// Inputs float32/float16/bfloat16 accumulate in float32 and return float32; float64 stays float64.
#include <Python.h>
#include <torch/library.h>

extern "C" {
// Lets the ahead-of-time build be imported as the Python module fastvit_analysis._C; importing
// it runs the static TORCH_LIBRARY registrations below.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(fastvit_analysis, m) {
  m.def("diag_log_amplitude(Tensor maps, bool reduce) -> Tensor");
  m.def("feature_moments(Tensor maps) -> (Tensor, Tensor)");
}

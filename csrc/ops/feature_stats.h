// Shared declarations of the feature-statistics ops (see feature_stats.cpp for the schemas).
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

namespace fastvit_analysis {

// log(|F| + kLogEps), the paper's regulariser.
constexpr double kLogEps = 1e-6;

// A (B, C, n, n) strided view, with H and W swapped when that makes W the faster axis:
// anti-diagonal sums (h + w mod n) and moments are symmetric in h and w.
struct MapGeometry {
  int64_t batch, channels, n, height, width;
  int64_t stride_b, stride_c, stride_h, stride_w;
};

inline MapGeometry map_geometry(const at::Tensor& maps) {
  MapGeometry g{maps.size(0), maps.size(1), maps.size(3), maps.size(2), maps.size(3),
                maps.stride(0), maps.stride(1), maps.stride(2), maps.stride(3)};
  if (g.stride_h < g.stride_w) {
    std::swap(g.stride_h, g.stride_w);
    std::swap(g.height, g.width);
  }
  return g;
}

inline void check_maps(const at::Tensor& maps, const char* op, bool square) {
  TORCH_CHECK(maps.dim() == 4, op, ": maps must be 4-D (B, C, H, W), got ", maps.dim(), "-D");
  TORCH_CHECK(maps.numel() > 0, op, ": maps is empty, shape ", maps.sizes());
  TORCH_CHECK(!square || maps.size(2) == maps.size(3), op, ": maps must be square, got ", maps.sizes());
  const auto dtype = maps.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16 || dtype == at::kDouble,
              op, ": maps must be float32, float16, bfloat16 or float64, got ", dtype);
}

inline at::ScalarType result_type(at::ScalarType input) {
  return input == at::kDouble ? at::kDouble : at::kFloat;
}

// Twiddles of the length-n DFT for the K = ceil(n/2) diagonal frequencies, laid out [m][k]:
// cos(2*pi*((m*k) mod n)/n) and -sin(...), computed in double from the exact residue.
template <typename acc_t>
void dft_twiddles(int64_t n, std::vector<acc_t>& cos_t, std::vector<acc_t>& sin_t) {
  const int64_t num_freq = (n + 1) / 2;
  cos_t.resize(n * num_freq);
  sin_t.resize(n * num_freq);
  const double step = 2.0 * M_PI / static_cast<double>(n);
  for (int64_t m = 0; m < n; ++m) {
    for (int64_t k = 0; k < num_freq; ++k) {
      const double angle = step * static_cast<double>((m * k) % n);
      cos_t[m * num_freq + k] = static_cast<acc_t>(std::cos(angle));
      sin_t[m * num_freq + k] = static_cast<acc_t>(-std::sin(angle));
    }
  }
}

}  // namespace fastvit_analysis

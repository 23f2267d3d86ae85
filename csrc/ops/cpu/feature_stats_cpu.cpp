// CPU kernels of the feature-statistics ops (OpenMP via at::parallel_for, float32 accumulation).
//
// Two traversals, both reading every element once, in memory order:
//  * planar    (unit stride along W, e.g. contiguous NCHW): maps split over threads; each row is
//              added into a 2n-long anti-diagonal buffer (or per-column moment accumulators)
//              with one contiguous, vectorised loop.
//  * interleaved (unit stride along C, e.g. channels_last or (B, N, C) tokens): one
//              (batch, channel block) per task with per-channel accumulators, so the inner loop
//              runs over contiguous channels.
// Any other strides use the planar traversal with strided loads. The DFT of the anti-diagonal
// sums at the K diagonal frequencies is one small GEMM over all maps.
// The inner loops (feature_stats_kernels.h) are compiled for the baseline ISA and, on x86-64
// with GCC, again for AVX2+FMA, picked at run time ($FASTVIT_CPU_ISA=baseline forces the former).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "../feature_stats.h"

#define FASTVIT_CPU_NS baseline
#include "feature_stats_kernels.h"
#undef FASTVIT_CPU_NS

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define FASTVIT_HAVE_AVX2 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define FASTVIT_CPU_NS avx2
#include "feature_stats_kernels.h"
#undef FASTVIT_CPU_NS
#pragma GCC pop_options
#endif

namespace fastvit_analysis {
namespace {

template <typename scalar_t>
using acc_type = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

constexpr int64_t kMapsPerLogBlock = 512;

bool use_avx2() {
#ifdef FASTVIT_HAVE_AVX2
  static const bool supported = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const char* forced = std::getenv("FASTVIT_CPU_ISA");
  return supported && !(forced != nullptr && std::string(forced) == "baseline");
#else
  return false;
#endif
}

// Runs fn(kernels) with the kernel set of the best ISA available.
template <typename F>
void with_kernels(F&& fn) {
#ifdef FASTVIT_HAVE_AVX2
  if (use_avx2()) {
    fn(cpu::avx2::Kernels{});
    return;
  }
#endif
  fn(cpu::baseline::Kernels{});
}

// Number of channel blocks for the interleaved traversal: enough tasks for every thread,
// blocks of >= 32 channels so that each position is a long contiguous read.
int64_t channel_blocks(int64_t batch, int64_t channels) {
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  int64_t blocks = 1;
  while (batch * blocks < 4 * threads && channels / (2 * blocks) >= 32) blocks *= 2;
  return blocks;
}

// [n, 2K] matrix: sums @ matrix = (Re F(k), Im F(k)) for k < K, exact twiddles.
template <typename acc_t>
at::Tensor dft_matrix(int64_t n, at::ScalarType dtype) {
  const int64_t num_freq = (n + 1) / 2;
  std::vector<acc_t> cos_t, sin_t;
  dft_twiddles(n, cos_t, sin_t);
  at::Tensor matrix = at::empty({n, 2 * num_freq}, at::TensorOptions().dtype(dtype));
  acc_t* dst = matrix.mutable_data_ptr<acc_t>();
  for (int64_t m = 0; m < n; ++m) {
    for (int64_t k = 0; k < num_freq; ++k) {
      dst[m * 2 * num_freq + k] = cos_t[m * num_freq + k];
      dst[m * 2 * num_freq + num_freq + k] = sin_t[m * num_freq + k];
    }
  }
  return matrix;
}

// Three passes: (1) anti-diagonal sums of every map, reading the input once, in parallel;
// (2) one GEMM [maps, n] x [n, 2K] for the DFT at the K diagonal frequencies;
// (3) log amplitudes, per map or summed in fixed blocks of maps (deterministic for any number
//     of threads).
template <typename scalar_t, typename K>
void diag_log_amplitude_impl(const at::Tensor& maps, const MapGeometry& g, bool reduce, at::Tensor& out, K) {
  using acc_t = acc_type<scalar_t>;
  const int64_t n = g.n, num_freq = (n + 1) / 2, num_maps = g.batch * g.channels;
  const at::ScalarType acc_dtype = result_type(maps.scalar_type());
  const scalar_t* data = maps.const_data_ptr<scalar_t>();
  at::Tensor sums = at::empty({num_maps, n}, maps.options().dtype(acc_dtype));
  acc_t* sums_data = sums.mutable_data_ptr<acc_t>();

  if (g.stride_w != 1 && g.stride_c == 1) {
    const int64_t blocks = channel_blocks(g.batch, g.channels);
    const int64_t block_size = (g.channels + blocks - 1) / blocks;
    at::parallel_for(0, g.batch * blocks, 1, [&](int64_t task_begin, int64_t task_end) {
      std::vector<acc_t> acc(n * block_size);
      for (int64_t task = task_begin; task < task_end; ++task) {
        const int64_t b = task / blocks, c0 = (task % blocks) * block_size;
        const int64_t width = std::min(block_size, g.channels - c0);
        if (width > 0) K::template antidiagonal_interleaved<scalar_t, acc_t>(data, g, b, c0, width, acc.data(), sums_data);
      }
    });
  } else {
    const int64_t grain = std::max<int64_t>(1, 8192 / (n * n));
    at::parallel_for(0, num_maps, grain, [&](int64_t begin, int64_t end) {
      std::vector<acc_t> scratch(cpu::baseline::planar_scratch_size(n));
      if (g.stride_w == 1) {
        K::template antidiagonal_planar<scalar_t, acc_t, true>(data, g, begin, end, scratch.data(), sums_data);
      } else {
        K::template antidiagonal_planar<scalar_t, acc_t, false>(data, g, begin, end, scratch.data(), sums_data);
      }
    });
  }

  // [2K, maps]: each frequency's real / imaginary parts contiguous over maps for the log pass.
  const at::Tensor spectrum_t = at::mm(dft_matrix<acc_t>(n, acc_dtype).t(), sums.t()).contiguous();
  const acc_t* spec = spectrum_t.const_data_ptr<acc_t>();
  acc_t* out_data = out.mutable_data_ptr<acc_t>();
  const int64_t num_blocks = (num_maps + kMapsPerLogBlock - 1) / kMapsPerLogBlock;
  std::vector<double> partial(reduce ? num_blocks * num_freq : 0, 0.0);
  at::parallel_for(0, num_blocks, 1, [&](int64_t block_begin, int64_t block_end) {
    std::vector<acc_t> lg(kMapsPerLogBlock);
    for (int64_t block = block_begin; block < block_end; ++block) {
      const int64_t begin = block * kMapsPerLogBlock;
      const int64_t end = std::min(num_maps, begin + kMapsPerLogBlock);
      K::template log_columns<acc_t>(spec, num_maps, num_freq, begin, end, lg.data(), reduce ? nullptr : out_data,
                                     reduce ? partial.data() + block * num_freq : nullptr);
    }
  });
  if (reduce) {
    for (int64_t k = 0; k < num_freq; ++k) {
      double total = 0.0;
      for (int64_t block = 0; block < num_blocks; ++block) total += partial[block * num_freq + k];
      out_data[k] = static_cast<acc_t>(total / static_cast<double>(num_maps));
    }
  }
}

at::Tensor diag_log_amplitude_cpu(const at::Tensor& maps, bool reduce) {
  check_maps(maps, "diag_log_amplitude", /*square=*/true);
  TORCH_CHECK(maps.device().is_cpu(), "diag_log_amplitude_cpu: maps must be on the CPU");
  const MapGeometry g = map_geometry(maps);
  const int64_t num_freq = (g.n + 1) / 2;
  auto options = maps.options().dtype(result_type(maps.scalar_type()));
  at::Tensor out = reduce ? at::empty({num_freq}, options) : at::empty({g.batch, g.channels, num_freq}, options);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, maps.scalar_type(), "diag_log_amplitude_cpu", [&] {
    with_kernels([&](auto kernels) { diag_log_amplitude_impl<scalar_t>(maps, g, reduce, out, kernels); });
  });
  return out;
}

template <typename scalar_t, typename K>
void feature_moments_impl(const at::Tensor& maps, const MapGeometry& g, at::Tensor& mean, at::Tensor& var, K) {
  using acc_t = acc_type<scalar_t>;
  const scalar_t* data = maps.const_data_ptr<scalar_t>();
  acc_t* mean_data = mean.mutable_data_ptr<acc_t>();
  acc_t* var_data = var.mutable_data_ptr<acc_t>();
  if (g.stride_w != 1 && g.stride_c == 1) {
    const int64_t blocks = channel_blocks(g.batch, g.channels);
    const int64_t block_size = (g.channels + blocks - 1) / blocks;
    at::parallel_for(0, g.batch * blocks, 1, [&](int64_t task_begin, int64_t task_end) {
      std::vector<acc_t> shift(block_size), r1(block_size), r2(block_size);
      std::vector<double> s1(block_size), s2(block_size);
      for (int64_t task = task_begin; task < task_end; ++task) {
        const int64_t b = task / blocks, c0 = (task % blocks) * block_size;
        const int64_t width = std::min(block_size, g.channels - c0);
        if (width <= 0) continue;
        K::template moments_interleaved<scalar_t, acc_t>(data, g, b, c0, width, shift.data(), r1.data(), r2.data(),
                                                         s1.data(), s2.data(), mean_data, var_data);
      }
    });
    return;
  }
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(1, g.height * g.width));
  at::parallel_for(0, g.batch * g.channels, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> col1(g.width), col2(g.width);
    if (g.stride_w == 1) {
      K::template moments_planar<scalar_t, acc_t, true>(data, g, begin, end, col1.data(), col2.data(), mean_data,
                                                        var_data);
    } else {
      K::template moments_planar<scalar_t, acc_t, false>(data, g, begin, end, col1.data(), col2.data(), mean_data,
                                                         var_data);
    }
  });
}

std::tuple<at::Tensor, at::Tensor> feature_moments_cpu(const at::Tensor& maps) {
  check_maps(maps, "feature_moments", /*square=*/false);
  TORCH_CHECK(maps.device().is_cpu(), "feature_moments_cpu: maps must be on the CPU");
  const MapGeometry g = map_geometry(maps);
  auto options = maps.options().dtype(result_type(maps.scalar_type()));
  at::Tensor mean = at::empty({g.batch, g.channels}, options);
  at::Tensor var = at::empty({g.batch, g.channels}, options);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, maps.scalar_type(), "feature_moments_cpu", [&] {
    with_kernels([&](auto kernels) { feature_moments_impl<scalar_t>(maps, g, mean, var, kernels); });
  });
  return {mean, var};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastvit_analysis, CPU, m) {
  m.impl("diag_log_amplitude", &diag_log_amplitude_cpu);
  m.impl("feature_moments", &feature_moments_cpu);
}

}  // namespace fastvit_analysis

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
// sums at the K diagonal frequencies and the logs follow in the same task, vectorised over maps,
// so the whole op is one parallel region (cheap on oversubscribed machines too).
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

constexpr int64_t kMapsPerBlock = 256;  // planar maps per task

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

// One parallel pass over blocks of maps (planar) or (batch, channel block)s (interleaved): the
// anti-diagonal sums of the block (reading the input once), then their DFT at the K diagonal
// frequencies and the log amplitudes, vectorised over the block's maps. Reduction: one partial
// sum per task, added in task order (deterministic for any number of threads).
template <typename scalar_t, typename K>
void diag_log_amplitude_impl(const at::Tensor& maps, const MapGeometry& g, bool reduce, at::Tensor& out, K) {
  using acc_t = acc_type<scalar_t>;
  const int64_t n = g.n, num_freq = (n + 1) / 2, num_maps = g.batch * g.channels;
  std::vector<acc_t> cos_t, sin_t;
  dft_twiddles(n, cos_t, sin_t);
  const scalar_t* data = maps.const_data_ptr<scalar_t>();
  acc_t* out_data = out.mutable_data_ptr<acc_t>();
  acc_t* maps_out = reduce ? nullptr : out_data;
  const bool interleaved = g.stride_w != 1 && g.stride_c == 1;
  int64_t num_tasks, blocks = 1, block_size;
  if (interleaved) {
    blocks = channel_blocks(g.batch, g.channels);
    block_size = (g.channels + blocks - 1) / blocks;
    num_tasks = g.batch * blocks;
  } else {
    block_size = kMapsPerBlock;
    num_tasks = (num_maps + block_size - 1) / block_size;
  }
  std::vector<double> partial(reduce ? num_tasks * num_freq : 0, 0.0);

  at::parallel_for(0, num_tasks, 1, [&](int64_t task_begin, int64_t task_end) {
    std::vector<acc_t> sums_t(n * block_size), re(block_size), im(block_size), lg(block_size);
    std::vector<acc_t> scratch(interleaved ? 0 : cpu::baseline::planar_scratch_size(n));
    for (int64_t task = task_begin; task < task_end; ++task) {
      double* part = reduce ? partial.data() + task * num_freq : nullptr;
      if (interleaved) {
        const int64_t b = task / blocks, c0 = (task % blocks) * block_size;
        const int64_t width = std::min(block_size, g.channels - c0);
        if (width <= 0) continue;
        K::template antidiagonal_interleaved<scalar_t, acc_t>(data, g, b, c0, width, sums_t.data());
        K::template dft_log<acc_t>(sums_t.data(), width, n, cos_t.data(), sin_t.data(), re.data(), im.data(),
                                   lg.data(), b * g.channels + c0, maps_out, part);
      } else {
        const int64_t begin = task * block_size, end = std::min(num_maps, begin + block_size);
        if (g.stride_w == 1) {
          K::template antidiagonal_planar<scalar_t, acc_t, true>(data, g, begin, end, scratch.data(), sums_t.data());
        } else {
          K::template antidiagonal_planar<scalar_t, acc_t, false>(data, g, begin, end, scratch.data(), sums_t.data());
        }
        K::template dft_log<acc_t>(sums_t.data(), end - begin, n, cos_t.data(), sin_t.data(), re.data(), im.data(),
                                   lg.data(), begin, maps_out, part);
      }
    }
  });
  if (reduce) {
    for (int64_t k = 0; k < num_freq; ++k) {
      double total = 0.0;
      for (int64_t task = 0; task < num_tasks; ++task) total += partial[task * num_freq + k];
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

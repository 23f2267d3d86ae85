// CPU kernels of the feature-statistics ops (OpenMP via at::parallel_for, float32 accumulation).
//
// Two traversals, both reading every element once, in memory order:
//  * planar    (unit stride along W, e.g. contiguous NCHW): one map per task; rows are added into
//              n anti-diagonal (or per-column moment) accumulators with two contiguous,
//              vectorisable loops per row.
//  * interleaved (unit stride along C, e.g. channels_last or (B, N, C) tokens): one
//              (batch, channel block) per task with per-channel accumulators, so the inner loop
//              runs over contiguous channels.
// Any other strides use the planar traversal with strided loads.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "../feature_stats.h"

namespace fastvit_analysis {
namespace {

template <typename scalar_t>
using acc_type = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

constexpr int64_t kMapsPerReduceBlock = 64;

// Number of channel blocks for the interleaved traversal: enough tasks for every thread,
// blocks of >= 32 channels so that each position is a long contiguous read.
int64_t channel_blocks(int64_t batch, int64_t channels) {
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  int64_t blocks = 1;
  while (batch * blocks < 4 * threads && channels / (2 * blocks) >= 32) blocks *= 2;
  return blocks;
}

// log(|F| + eps) of one frequency from its real and imaginary parts, in the accumulation type;
// |F|^2 overflowing float (|F| > ~1.8e19) is redone in double so that only a true Inf gives Inf.
template <typename acc_t>
inline acc_t log_amplitude(acc_t re, acc_t im) {
  acc_t amplitude = std::sqrt(re * re + im * im);
  if (!std::isfinite(amplitude) && std::isfinite(re) && std::isfinite(im)) {
    amplitude = static_cast<acc_t>(std::hypot(static_cast<double>(re), static_cast<double>(im)));
  }
  return std::log(amplitude + static_cast<acc_t>(kLogEps));
}

// ---------------------------------------------------------------- diagonal log amplitude

// Anti-diagonal sums of one map: s[m] = sum_{h + w = m mod n} x[h, w].
template <typename scalar_t, typename acc_t, bool kUnitW>
inline void anti_diagonal_sums(const scalar_t* __restrict__ map, int64_t n, int64_t stride_h,
                               int64_t stride_w, acc_t* __restrict__ sums) {
  std::fill(sums, sums + n, acc_t(0));
  for (int64_t h = 0; h < n; ++h) {
    const scalar_t* __restrict__ row = map + h * stride_h;
    const int64_t split = n - h;  // w < split lands on m = h + w, the rest wraps to m = h + w - n
    acc_t* __restrict__ head = sums + h;
    acc_t* __restrict__ tail = sums - split;
    if constexpr (kUnitW) {
      for (int64_t w = 0; w < split; ++w) head[w] += static_cast<acc_t>(row[w]);
      for (int64_t w = split; w < n; ++w) tail[w] += static_cast<acc_t>(row[w]);
    } else {
      for (int64_t w = 0; w < split; ++w) head[w] += static_cast<acc_t>(row[w * stride_w]);
      for (int64_t w = split; w < n; ++w) tail[w] += static_cast<acc_t>(row[w * stride_w]);
    }
  }
}

template <typename scalar_t, bool kUnitW>
void diag_log_amplitude_planar(const at::Tensor& maps, const MapGeometry& g, bool reduce,
                               at::Tensor& out) {
  using acc_t = acc_type<scalar_t>;
  const int64_t n = g.n, num_freq = (n + 1) / 2, num_maps = g.batch * g.channels;
  std::vector<acc_t> cos_t, sin_t;
  dft_twiddles(n, cos_t, sin_t);
  const scalar_t* data = maps.const_data_ptr<scalar_t>();
  const int64_t num_blocks = (num_maps + kMapsPerReduceBlock - 1) / kMapsPerReduceBlock;
  std::vector<double> partial(reduce ? num_blocks * num_freq : 0, 0.0);
  using out_t = acc_t;
  out_t* out_data = out.mutable_data_ptr<out_t>();

  at::parallel_for(0, num_blocks, 1, [&](int64_t block_begin, int64_t block_end) {
    std::vector<acc_t> sums(n), re(num_freq), im(num_freq);
    for (int64_t block = block_begin; block < block_end; ++block) {
      const int64_t map_end = std::min(num_maps, (block + 1) * kMapsPerReduceBlock);
      for (int64_t idx = block * kMapsPerReduceBlock; idx < map_end; ++idx) {
        const int64_t b = idx / g.channels, c = idx % g.channels;
        anti_diagonal_sums<scalar_t, acc_t, kUnitW>(data + b * g.stride_b + c * g.stride_c, n,
                                                    g.stride_h, g.stride_w, sums.data());
        std::fill(re.begin(), re.end(), acc_t(0));
        std::fill(im.begin(), im.end(), acc_t(0));
        for (int64_t m = 0; m < n; ++m) {
          const acc_t s = sums[m];
          const acc_t* __restrict__ cr = cos_t.data() + m * num_freq;
          const acc_t* __restrict__ sr = sin_t.data() + m * num_freq;
          acc_t* __restrict__ rp = re.data();
          acc_t* __restrict__ ip = im.data();
          for (int64_t k = 0; k < num_freq; ++k) {
            rp[k] += s * cr[k];
            ip[k] += s * sr[k];
          }
        }
        if (reduce) {
          double* acc = partial.data() + block * num_freq;
          for (int64_t k = 0; k < num_freq; ++k) acc[k] += static_cast<double>(log_amplitude(re[k], im[k]));
        } else {
          out_t* dst = out_data + idx * num_freq;
          for (int64_t k = 0; k < num_freq; ++k) dst[k] = static_cast<out_t>(log_amplitude(re[k], im[k]));
        }
      }
    }
  });
  if (reduce) {
    for (int64_t k = 0; k < num_freq; ++k) {
      double total = 0.0;
      for (int64_t block = 0; block < num_blocks; ++block) total += partial[block * num_freq + k];
      out_data[k] = static_cast<out_t>(total / static_cast<double>(num_maps));
    }
  }
}

template <typename scalar_t>
void diag_log_amplitude_interleaved(const at::Tensor& maps, const MapGeometry& g, bool reduce,
                                    at::Tensor& out) {
  using acc_t = acc_type<scalar_t>;
  using out_t = acc_t;
  const int64_t n = g.n, num_freq = (n + 1) / 2, channels = g.channels;
  const int64_t blocks = channel_blocks(g.batch, channels);
  const int64_t block_size = (channels + blocks - 1) / blocks;
  const int64_t num_tasks = g.batch * blocks;
  std::vector<acc_t> cos_t, sin_t;
  dft_twiddles(n, cos_t, sin_t);
  const scalar_t* data = maps.const_data_ptr<scalar_t>();
  // One partial sum per (batch, frequency) keeps the reduction deterministic.
  std::vector<double> partial(reduce ? num_tasks * num_freq : 0, 0.0);
  out_t* out_data = out.mutable_data_ptr<out_t>();

  at::parallel_for(0, num_tasks, 1, [&](int64_t task_begin, int64_t task_end) {
    std::vector<acc_t> sums(n * block_size), re(block_size), im(block_size);
    for (int64_t task = task_begin; task < task_end; ++task) {
      const int64_t b = task / blocks;
      const int64_t c0 = (task % blocks) * block_size;
      const int64_t width = std::min(block_size, channels - c0);
      if (width <= 0) continue;
      std::fill(sums.begin(), sums.end(), acc_t(0));
      const scalar_t* base = data + b * g.stride_b + c0;  // stride_c == 1
      for (int64_t h = 0; h < n; ++h) {
        for (int64_t w = 0; w < n; ++w) {
          int64_t m = h + w;
          if (m >= n) m -= n;
          const scalar_t* __restrict__ src = base + h * g.stride_h + w * g.stride_w;
          acc_t* __restrict__ dst = sums.data() + m * block_size;
          for (int64_t c = 0; c < width; ++c) dst[c] += static_cast<acc_t>(src[c]);
        }
      }
      for (int64_t k = 0; k < num_freq; ++k) {
        acc_t* __restrict__ rp = re.data();
        acc_t* __restrict__ ip = im.data();
        std::fill(rp, rp + width, acc_t(0));
        std::fill(ip, ip + width, acc_t(0));
        for (int64_t m = 0; m < n; ++m) {
          const acc_t cr = cos_t[m * num_freq + k], sr = sin_t[m * num_freq + k];
          const acc_t* __restrict__ s = sums.data() + m * block_size;
          for (int64_t c = 0; c < width; ++c) {
            rp[c] += s[c] * cr;
            ip[c] += s[c] * sr;
          }
        }
        if (reduce) {
          double total = 0.0;
          for (int64_t c = 0; c < width; ++c) total += static_cast<double>(log_amplitude(rp[c], ip[c]));
          partial[task * num_freq + k] = total;
        } else {
          for (int64_t c = 0; c < width; ++c) {
            out_data[((b * channels) + c0 + c) * num_freq + k] =
                static_cast<out_t>(log_amplitude(rp[c], ip[c]));
          }
        }
      }
    }
  });
  if (reduce) {
    const double count = static_cast<double>(g.batch * channels);
    for (int64_t k = 0; k < num_freq; ++k) {
      double total = 0.0;
      for (int64_t task = 0; task < num_tasks; ++task) total += partial[task * num_freq + k];
      out_data[k] = static_cast<out_t>(total / count);
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
    if (g.stride_w == 1) {
      diag_log_amplitude_planar<scalar_t, true>(maps, g, reduce, out);
    } else if (g.stride_c == 1) {
      diag_log_amplitude_interleaved<scalar_t>(maps, g, reduce, out);
    } else {
      diag_log_amplitude_planar<scalar_t, false>(maps, g, reduce, out);
    }
  });
  return out;
}

// ---------------------------------------------------------------- moments

// Sums are taken of x - shift, with shift = the map's first element, so that the one-pass
// variance (S2 - S1^2 / N) / (N - 1) does not cancel catastrophically when |mean| >> std.
template <typename scalar_t>
inline void finish_moments(double shift, double s1, double s2, int64_t count, acc_type<scalar_t>* mean,
                           acc_type<scalar_t>* var) {
  using out_t = acc_type<scalar_t>;
  const double n = static_cast<double>(count);
  *mean = static_cast<out_t>(shift + s1 / n);
  *var = static_cast<out_t>((s2 - s1 * s1 / n) / (n - 1.0));
}

template <typename scalar_t, bool kUnitW>
void feature_moments_planar(const at::Tensor& maps, const MapGeometry& g, at::Tensor& mean,
                            at::Tensor& var) {
  using acc_t = acc_type<scalar_t>;
  const int64_t height = g.height, width = g.width, num_maps = g.batch * g.channels;
  const scalar_t* data = maps.const_data_ptr<scalar_t>();
  acc_t* mean_data = mean.mutable_data_ptr<acc_t>();
  acc_t* var_data = var.mutable_data_ptr<acc_t>();
  at::parallel_for(0, num_maps, 16, [&](int64_t begin, int64_t end) {
    // Per-column accumulators: the row loop vectorises and each column sums only `height` terms.
    std::vector<acc_t> col1(width), col2(width);
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t b = idx / g.channels, c = idx % g.channels;
      const scalar_t* map = data + b * g.stride_b + c * g.stride_c;
      const acc_t shift = static_cast<acc_t>(map[0]);
      std::fill(col1.begin(), col1.end(), acc_t(0));
      std::fill(col2.begin(), col2.end(), acc_t(0));
      acc_t* __restrict__ p1 = col1.data();
      acc_t* __restrict__ p2 = col2.data();
      for (int64_t h = 0; h < height; ++h) {
        const scalar_t* __restrict__ row = map + h * g.stride_h;
        for (int64_t w = 0; w < width; ++w) {
          const acc_t d = static_cast<acc_t>(kUnitW ? row[w] : row[w * g.stride_w]) - shift;
          p1[w] += d;
          p2[w] += d * d;
        }
      }
      double s1 = 0.0, s2 = 0.0;
      for (int64_t w = 0; w < width; ++w) {
        s1 += static_cast<double>(p1[w]);
        s2 += static_cast<double>(p2[w]);
      }
      finish_moments<scalar_t>(static_cast<double>(shift), s1, s2, height * width, mean_data + idx,
                               var_data + idx);
    }
  });
}

template <typename scalar_t>
void feature_moments_interleaved(const at::Tensor& maps, const MapGeometry& g, at::Tensor& mean,
                                 at::Tensor& var) {
  using acc_t = acc_type<scalar_t>;
  const int64_t channels = g.channels;
  const int64_t blocks = channel_blocks(g.batch, channels);
  const int64_t block_size = (channels + blocks - 1) / blocks;
  const scalar_t* data = maps.const_data_ptr<scalar_t>();
  acc_t* mean_data = mean.mutable_data_ptr<acc_t>();
  acc_t* var_data = var.mutable_data_ptr<acc_t>();
  at::parallel_for(0, g.batch * blocks, 1, [&](int64_t task_begin, int64_t task_end) {
    // Per-row float accumulators (short sums), folded into double once per row.
    std::vector<acc_t> shift(block_size), row1(block_size), row2(block_size);
    std::vector<double> s1(block_size), s2(block_size);
    for (int64_t task = task_begin; task < task_end; ++task) {
      const int64_t b = task / blocks;
      const int64_t c0 = (task % blocks) * block_size;
      const int64_t width = std::min(block_size, channels - c0);
      if (width <= 0) continue;
      const scalar_t* base = data + b * g.stride_b + c0;  // stride_c == 1
      for (int64_t c = 0; c < width; ++c) shift[c] = static_cast<acc_t>(base[c]);
      std::fill(s1.begin(), s1.end(), 0.0);
      std::fill(s2.begin(), s2.end(), 0.0);
      for (int64_t h = 0; h < g.height; ++h) {
        acc_t* __restrict__ r1 = row1.data();
        acc_t* __restrict__ r2 = row2.data();
        const acc_t* __restrict__ sh = shift.data();
        std::fill(r1, r1 + width, acc_t(0));
        std::fill(r2, r2 + width, acc_t(0));
        for (int64_t w = 0; w < g.width; ++w) {
          const scalar_t* __restrict__ src = base + h * g.stride_h + w * g.stride_w;
          for (int64_t c = 0; c < width; ++c) {
            const acc_t d = static_cast<acc_t>(src[c]) - sh[c];
            r1[c] += d;
            r2[c] += d * d;
          }
        }
        for (int64_t c = 0; c < width; ++c) {
          s1[c] += static_cast<double>(r1[c]);
          s2[c] += static_cast<double>(r2[c]);
        }
      }
      for (int64_t c = 0; c < width; ++c) {
        const int64_t idx = b * channels + c0 + c;
        finish_moments<scalar_t>(static_cast<double>(shift[c]), s1[c], s2[c], g.height * g.width,
                                 mean_data + idx, var_data + idx);
      }
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
    if (g.stride_w == 1) {
      feature_moments_planar<scalar_t, true>(maps, g, mean, var);
    } else if (g.stride_c == 1) {
      feature_moments_interleaved<scalar_t>(maps, g, mean, var);
    } else {
      feature_moments_planar<scalar_t, false>(maps, g, mean, var);
    }
  });
  return {mean, var};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastvit_analysis, CPU, m) {
  m.impl("diag_log_amplitude", &diag_log_amplitude_cpu);
  m.impl("feature_moments", &feature_moments_cpu);
}

}  // namespace fastvit_analysis

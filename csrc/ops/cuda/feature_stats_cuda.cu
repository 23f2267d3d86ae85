// CUDA kernels of the feature-statistics ops.
//  * planar (any strides; used when W or anything but C is the fast axis): one block per map,
//    anti-diagonal sums in shared memory, then one thread per diagonal frequency.
//  * interleaved (unit stride along C: channels_last, (B, N, C) tokens): one block per
//    (batch, 32-channel tile), the 32 lanes of a warp read 32 consecutive channels (coalesced)
//    into per-channel shared accumulators.
// Accumulation in float (double for float64 input), like the CPU kernels.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <type_traits>
#include <vector>

#include "../feature_stats.h"

namespace fastvit_analysis {
namespace {

template <typename scalar_t>
using acc_type = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

constexpr int kTile = 32;        // channels per block in the interleaved kernels
constexpr int kTileRows = 8;     // warps per block in the interleaved kernels
constexpr int kMaxShared = 48 * 1024;

template <typename acc_t>
__device__ __forceinline__ acc_t log_amplitude(acc_t re, acc_t im) {
  // hypot: no overflow of re^2 + im^2 for huge but finite values.
  return log(hypot(re, im) + static_cast<acc_t>(kLogEps));
}

template <typename scalar_t, typename acc_t>
__global__ void diag_log_amplitude_planar_kernel(const scalar_t* __restrict__ data, int64_t channels, int n,
                                                 int64_t stride_b, int64_t stride_c, int64_t stride_h,
                                                 int64_t stride_w, const acc_t* __restrict__ cos_t,
                                                 const acc_t* __restrict__ sin_t, acc_t* __restrict__ out) {
  extern __shared__ unsigned char shared_bytes[];
  acc_t* sums = reinterpret_cast<acc_t*>(shared_bytes);
  const int64_t map = blockIdx.x;
  const scalar_t* base = data + (map / channels) * stride_b + (map % channels) * stride_c;
  for (int i = threadIdx.x; i < n; i += blockDim.x) sums[i] = acc_t(0);
  __syncthreads();
  const int total = n * n;
  for (int idx = threadIdx.x; idx < total; idx += blockDim.x) {
    const int h = idx / n, w = idx - h * n;
    int m = h + w;
    if (m >= n) m -= n;
    atomicAdd(sums + m, static_cast<acc_t>(base[h * stride_h + w * stride_w]));
  }
  __syncthreads();
  const int num_freq = (n + 1) / 2;
  for (int k = threadIdx.x; k < num_freq; k += blockDim.x) {
    acc_t re = 0, im = 0;
    for (int m = 0; m < n; ++m) {
      re += sums[m] * cos_t[m * num_freq + k];
      im += sums[m] * sin_t[m * num_freq + k];
    }
    out[map * num_freq + k] = log_amplitude(re, im);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void diag_log_amplitude_interleaved_kernel(const scalar_t* __restrict__ data, int64_t channels, int n,
                                                      int64_t stride_b, int64_t stride_h, int64_t stride_w,
                                                      const acc_t* __restrict__ cos_t,
                                                      const acc_t* __restrict__ sin_t, acc_t* __restrict__ out) {
  extern __shared__ unsigned char shared_bytes[];
  acc_t* sums = reinterpret_cast<acc_t*>(shared_bytes);  // [n][kTile]
  const int lane = threadIdx.x, row = threadIdx.y;
  const int64_t b = blockIdx.y, c = static_cast<int64_t>(blockIdx.x) * kTile + lane;
  for (int i = row * kTile + lane; i < n * kTile; i += kTile * kTileRows) sums[i] = acc_t(0);
  __syncthreads();
  if (c < channels) {
    const scalar_t* base = data + b * stride_b + c;
    const int total = n * n;
    for (int p = row; p < total; p += kTileRows) {
      const int h = p / n, w = p - h * n;
      int m = h + w;
      if (m >= n) m -= n;
      atomicAdd(sums + m * kTile + lane, static_cast<acc_t>(base[h * stride_h + w * stride_w]));
    }
  }
  __syncthreads();
  if (c < channels) {
    const int num_freq = (n + 1) / 2;
    for (int k = row; k < num_freq; k += kTileRows) {
      acc_t re = 0, im = 0;
      for (int m = 0; m < n; ++m) {
        const acc_t s = sums[m * kTile + lane];
        re += s * cos_t[m * num_freq + k];
        im += s * sin_t[m * num_freq + k];
      }
      out[(b * channels + c) * num_freq + k] = log_amplitude(re, im);
    }
  }
}

template <typename acc_t>
__device__ __forceinline__ acc_t warp_sum(acc_t value) {
  for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_down_sync(0xffffffffu, value, offset);
  return value;
}

template <typename acc_t>
__device__ __forceinline__ void write_moments(double shift, double s1, double s2, int count, acc_t* mean,
                                              acc_t* var) {
  const double n = static_cast<double>(count);
  *mean = static_cast<acc_t>(shift + s1 / n);
  *var = static_cast<acc_t>((s2 - s1 * s1 / n) / (n - 1.0));
}

// Shifted sums (x - first element) keep the one-pass variance free of cancellation.
template <typename scalar_t, typename acc_t>
__global__ void feature_moments_planar_kernel(const scalar_t* __restrict__ data, int64_t channels, int height,
                                              int width, int64_t stride_b, int64_t stride_c, int64_t stride_h,
                                              int64_t stride_w, acc_t* __restrict__ mean, acc_t* __restrict__ var) {
  __shared__ acc_t partial1[32], partial2[32];
  const int64_t map = blockIdx.x;
  const scalar_t* base = data + (map / channels) * stride_b + (map % channels) * stride_c;
  const acc_t shift = static_cast<acc_t>(base[0]);
  acc_t s1 = 0, s2 = 0;
  const int total = height * width;
  for (int idx = threadIdx.x; idx < total; idx += blockDim.x) {
    const int h = idx / width, w = idx - h * width;
    const acc_t d = static_cast<acc_t>(base[h * stride_h + w * stride_w]) - shift;
    s1 += d;
    s2 += d * d;
  }
  s1 = warp_sum(s1);
  s2 = warp_sum(s2);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, num_warps = (blockDim.x + 31) / 32;
  if (lane == 0) {
    partial1[warp] = s1;
    partial2[warp] = s2;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double t1 = 0, t2 = 0;
    for (int i = 0; i < num_warps; ++i) {
      t1 += static_cast<double>(partial1[i]);
      t2 += static_cast<double>(partial2[i]);
    }
    write_moments(static_cast<double>(shift), t1, t2, total, mean + map, var + map);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void feature_moments_interleaved_kernel(const scalar_t* __restrict__ data, int64_t channels, int height,
                                                   int width, int64_t stride_b, int64_t stride_h, int64_t stride_w,
                                                   acc_t* __restrict__ mean, acc_t* __restrict__ var) {
  __shared__ acc_t partial1[kTileRows][kTile], partial2[kTileRows][kTile];
  const int lane = threadIdx.x, row = threadIdx.y;
  const int64_t b = blockIdx.y, c = static_cast<int64_t>(blockIdx.x) * kTile + lane;
  acc_t s1 = 0, s2 = 0, shift = 0;
  const int total = height * width;
  if (c < channels) {
    const scalar_t* base = data + b * stride_b + c;
    shift = static_cast<acc_t>(base[0]);
    for (int p = row; p < total; p += kTileRows) {
      const int h = p / width, w = p - h * width;
      const acc_t d = static_cast<acc_t>(base[h * stride_h + w * stride_w]) - shift;
      s1 += d;
      s2 += d * d;
    }
  }
  partial1[row][lane] = s1;
  partial2[row][lane] = s2;
  __syncthreads();
  if (row == 0 && c < channels) {
    double t1 = 0, t2 = 0;
    for (int r = 0; r < kTileRows; ++r) {
      t1 += static_cast<double>(partial1[r][lane]);
      t2 += static_cast<double>(partial2[r][lane]);
    }
    write_moments(static_cast<double>(shift), t1, t2, total, mean + b * channels + c, var + b * channels + c);
  }
}

int threads_for(int64_t elements) {
  const int64_t rounded = ((elements + 31) / 32) * 32;
  return static_cast<int>(std::min<int64_t>(256, std::max<int64_t>(32, rounded)));
}

template <typename acc_t>
std::pair<at::Tensor, at::Tensor> device_twiddles(int64_t n, const at::TensorOptions& options) {
  std::vector<acc_t> cos_t, sin_t;
  dft_twiddles(n, cos_t, sin_t);
  const auto cpu = at::TensorOptions().dtype(options.dtype());
  const int64_t size = static_cast<int64_t>(cos_t.size());
  return {at::from_blob(cos_t.data(), {size}, cpu).to(options.device()),
          at::from_blob(sin_t.data(), {size}, cpu).to(options.device())};
}

at::Tensor diag_log_amplitude_cuda(const at::Tensor& maps, bool reduce) {
  check_maps(maps, "diag_log_amplitude", /*square=*/true);
  TORCH_CHECK(maps.is_cuda(), "diag_log_amplitude_cuda: maps must be a CUDA tensor");
  TORCH_CHECK(maps.size(2) * maps.size(3) < (int64_t{1} << 31), "diag_log_amplitude: maps too large");
  const c10::cuda::CUDAGuard guard(maps.device());
  const MapGeometry g = map_geometry(maps);
  const int64_t num_freq = (g.n + 1) / 2;
  auto options = maps.options().dtype(result_type(maps.scalar_type()));
  at::Tensor per_map = at::empty({g.batch, g.channels, num_freq}, options);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, maps.scalar_type(), "diag_log_amplitude_cuda", [&] {
    using acc_t = acc_type<scalar_t>;
    auto [cos_t, sin_t] = device_twiddles<acc_t>(g.n, options);
    const int n = static_cast<int>(g.n);
    const size_t tile_shared = static_cast<size_t>(n) * kTile * sizeof(acc_t);
    if (g.stride_w != 1 && g.stride_c == 1 && tile_shared <= kMaxShared) {
      dim3 grid((g.channels + kTile - 1) / kTile, g.batch), block(kTile, kTileRows);
      diag_log_amplitude_interleaved_kernel<scalar_t, acc_t><<<grid, block, tile_shared, stream>>>(
          maps.const_data_ptr<scalar_t>(), g.channels, n, g.stride_b, g.stride_h, g.stride_w,
          cos_t.const_data_ptr<acc_t>(), sin_t.const_data_ptr<acc_t>(), per_map.mutable_data_ptr<acc_t>());
    } else {
      TORCH_CHECK(static_cast<size_t>(n) * sizeof(acc_t) <= kMaxShared, "diag_log_amplitude: n too large");
      diag_log_amplitude_planar_kernel<scalar_t, acc_t>
          <<<g.batch * g.channels, threads_for(g.n * g.n), n * sizeof(acc_t), stream>>>(
              maps.const_data_ptr<scalar_t>(), g.channels, n, g.stride_b, g.stride_c, g.stride_h, g.stride_w,
              cos_t.const_data_ptr<acc_t>(), sin_t.const_data_ptr<acc_t>(), per_map.mutable_data_ptr<acc_t>());
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return reduce ? per_map.mean({0, 1}) : per_map;
}

std::tuple<at::Tensor, at::Tensor> feature_moments_cuda(const at::Tensor& maps) {
  check_maps(maps, "feature_moments", /*square=*/false);
  TORCH_CHECK(maps.is_cuda(), "feature_moments_cuda: maps must be a CUDA tensor");
  TORCH_CHECK(maps.size(2) * maps.size(3) < (int64_t{1} << 31), "feature_moments: maps too large");
  const c10::cuda::CUDAGuard guard(maps.device());
  const MapGeometry g = map_geometry(maps);
  auto options = maps.options().dtype(result_type(maps.scalar_type()));
  at::Tensor mean = at::empty({g.batch, g.channels}, options);
  at::Tensor var = at::empty({g.batch, g.channels}, options);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, maps.scalar_type(), "feature_moments_cuda", [&] {
    using acc_t = acc_type<scalar_t>;
    const int height = static_cast<int>(g.height), width = static_cast<int>(g.width);
    if (g.stride_w != 1 && g.stride_c == 1) {
      dim3 grid((g.channels + kTile - 1) / kTile, g.batch), block(kTile, kTileRows);
      feature_moments_interleaved_kernel<scalar_t, acc_t><<<grid, block, 0, stream>>>(
          maps.const_data_ptr<scalar_t>(), g.channels, height, width, g.stride_b, g.stride_h, g.stride_w,
          mean.mutable_data_ptr<acc_t>(), var.mutable_data_ptr<acc_t>());
    } else {
      feature_moments_planar_kernel<scalar_t, acc_t><<<g.batch * g.channels, threads_for(g.height * g.width), 0, stream>>>(
          maps.const_data_ptr<scalar_t>(), g.channels, height, width, g.stride_b, g.stride_c, g.stride_h, g.stride_w,
          mean.mutable_data_ptr<acc_t>(), var.mutable_data_ptr<acc_t>());
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {mean, var};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastvit_analysis, CUDA, m) {
  m.impl("diag_log_amplitude", &diag_log_amplitude_cuda);
  m.impl("feature_moments", &feature_moments_cuda);
}

}  // namespace fastvit_analysis

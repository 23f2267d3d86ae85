// Inner loops of the CPU feature-statistics kernels, compiled twice by feature_stats_cpu.cpp:
// once for the baseline ISA and once (x86-64) under `#pragma GCC target("avx2,fma")`, chosen at
// run time. No include guard on purpose; everything lives in namespace FASTVIT_CPU_NS.
// Each function works on a range of tasks and touches only raw pointers, so no library template
// gets instantiated under the AVX2 target.
//
// Requires, before inclusion: <cmath>, <cstdint>, <cstring>, <type_traits>, "../feature_stats.h".

namespace fastvit_analysis {
namespace cpu {
namespace FASTVIT_CPU_NS {

// Vectorisable natural log for x > 0 (Cephes logf polynomial, ~1 ulp); NaN and +Inf pass through.
// Branch-free, with integer-domain selects, so GCC vectorises loops over it.
inline float log_positive(float x) {
  int32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  const int32_t biased_exponent = (bits >> 23) & 0xff;
  int32_t mantissa_bits = (bits & 0x007fffff) | 0x3f000000;  // m in [0.5, 1)
  const int32_t small = static_cast<int32_t>(mantissa_bits < 0x3f3504f3);  // m < sqrt(0.5)
  mantissa_bits += small << 23;                                // m -> 2m
  float m;
  std::memcpy(&m, &mantissa_bits, sizeof(m));
  const float f = m - 1.0f;  // log(1 + f), f in [sqrt(.5) - 1, sqrt(2) - 1]
  const float e = static_cast<float>(biased_exponent - 126 - small);
  const float f2 = f * f;
  float p = 7.0376836292e-2f;
  p = p * f - 1.1514610310e-1f;
  p = p * f + 1.1676998740e-1f;
  p = p * f - 1.2420140846e-1f;
  p = p * f + 1.4249322787e-1f;
  p = p * f - 1.6668057665e-1f;
  p = p * f + 2.0000714765e-1f;
  p = p * f - 2.4999993993e-1f;
  p = p * f + 3.3333331174e-1f;
  float y = f * f2 * p - 0.5f * f2 - 2.12194440e-4f * e;
  y = f + y + 0.693359375f * e;
  int32_t y_bits;
  std::memcpy(&y_bits, &y, sizeof(y_bits));
  const int32_t keep = -static_cast<int32_t>(biased_exponent == 0xff);  // all ones for NaN / +Inf
  y_bits = (bits & keep) | (y_bits & ~keep);
  std::memcpy(&y, &y_bits, sizeof(y));
  return y;
}

inline double log_positive(double x) { return std::log(x); }

// log(|F| + eps) from the real and imaginary parts (vectorisable).
template <typename acc_t>
inline acc_t log_amplitude(acc_t re, acc_t im) {
  return log_positive(std::sqrt(re * re + im * im) + static_cast<acc_t>(kLogEps));
}

// True when log_amplitude gave +Inf only because |F|^2 overflowed float (|F| > ~1.8e19).
template <typename acc_t>
inline bool overflowed(acc_t log_amp, acc_t re, acc_t im) {
  return log_amp == static_cast<acc_t>(INFINITY) && std::isfinite(re) && std::isfinite(im);
}

// Any +Inf among x[0..count) (integer compares, so the loop vectorises).
inline bool any_positive_inf(const float* __restrict__ x, int64_t count) {
  int32_t found = 0;
  for (int64_t i = 0; i < count; ++i) {
    int32_t bits;
    std::memcpy(&bits, x + i, sizeof(bits));
    found |= bits == 0x7f800000 ? 1 : 0;
  }
  return found != 0;
}

inline bool any_positive_inf(const double* __restrict__ x, int64_t count) {
  bool found = false;
  for (int64_t i = 0; i < count; ++i) found |= x[i] == INFINITY;
  return found;
}

template <typename acc_t>
inline acc_t log_amplitude_exact(acc_t re, acc_t im) {
  return static_cast<acc_t>(std::log(std::hypot(static_cast<double>(re), static_cast<double>(im)) + kLogEps));
}

constexpr int64_t kRowPhases = 8;  // rows h with equal h mod 8 share one accumulation buffer

// Scratch (elements) that antidiagonal_planar_range needs for maps of side n.
inline int64_t planar_scratch_size(int64_t n) { return kRowPhases * (2 * n + kRowPhases) + n; }

// Anti-diagonal sums s[m] = sum_{h + w = m mod n} x[h, w] of maps [map_begin, map_end), unit
// (kUnitW) or general W stride, into sums_t[m * count + (idx - map_begin)], count = end - begin.
// Row h adds into a 2n-long buffer at offset h with one contiguous loop. Consecutive rows would
// read-modify-write that buffer at offsets one element apart, which defeats store-to-load
// forwarding; so row h goes to buffer h mod 8 at offset h - h mod 8 (a multiple of 8: loads see
// whole earlier stores), and the 8 buffers are merged once per map.
// antidiagonal_planar_range (below) hands n = 8, 16 and 32 with unit W stride to this version:
// the same sums for a compile-time side N (a multiple of 8): the rows of one phase
// (h = r, r + 8, ...) go into a local accumulator of 2N - 8 elements that the compiler keeps in
// registers, so a row costs its loads and adds only; each phase is then stored once and the 8
// phases merged as above.
template <int N, typename scalar_t, typename acc_t>
void antidiagonal_fixed_range(const scalar_t* __restrict__ data, const MapGeometry& g, int64_t map_begin,
                              int64_t map_end, acc_t* __restrict__ scratch, acc_t* __restrict__ sums_t) {
  constexpr int kLen = 2 * N - kRowPhases;
  const int64_t stride_h = g.stride_h, count = map_end - map_begin;
  for (int64_t idx = map_begin; idx < map_end; ++idx) {
    const scalar_t* map = data + (idx / g.channels) * g.stride_b + (idx % g.channels) * g.stride_c;
    acc_t merged[N] = {};
    for (int r = 0; r < kRowPhases; ++r) {
      acc_t acc[kLen] = {};
#pragma GCC unroll 8
      for (int j = 0; j < N / kRowPhases; ++j) {
        const scalar_t* __restrict__ row = map + (kRowPhases * j + r) * stride_h;
#pragma GCC unroll 64
        for (int w = 0; w < N; ++w) acc[kRowPhases * j + w] += static_cast<acc_t>(row[w]);
      }
      // position h + w = r + i (mod N)
      acc_t* __restrict__ buf = scratch + r * (2 * N);
      for (int i = 0; i < kLen; ++i) buf[r + i] = acc[i];
      for (int i = 0; i < r; ++i) buf[i] = acc_t(0);
      for (int i = kLen + r; i < 2 * N; ++i) buf[i] = acc_t(0);
    }
    for (int r = 0; r < kRowPhases; ++r) {
      const acc_t* __restrict__ buf = scratch + r * (2 * N);
      for (int m = 0; m < N; ++m) merged[m] += buf[m] + buf[m + N];
    }
    for (int m = 0; m < N; ++m) sums_t[m * count + (idx - map_begin)] = merged[m];
  }
}

template <typename scalar_t, typename acc_t, bool kUnitW>
void antidiagonal_planar_range(const scalar_t* __restrict__ data, const MapGeometry& g, int64_t map_begin,
                               int64_t map_end, acc_t* __restrict__ scratch, acc_t* __restrict__ sums_t) {
  if constexpr (kUnitW) {
    if (g.n == 32) return antidiagonal_fixed_range<32>(data, g, map_begin, map_end, scratch, sums_t);
    if (g.n == 16) return antidiagonal_fixed_range<16>(data, g, map_begin, map_end, scratch, sums_t);
    if (g.n == 8) return antidiagonal_fixed_range<8>(data, g, map_begin, map_end, scratch, sums_t);
    // n = 56 measured slower this way (its 104-float accumulator does not fit the registers)
  }
  const int64_t n = g.n, stride_h = g.stride_h, stride_w = g.stride_w, count = map_end - map_begin;
  const int64_t phase_len = 2 * n + kRowPhases;
  const int64_t phases = n < kRowPhases ? n : kRowPhases;
  for (int64_t idx = map_begin; idx < map_end; ++idx) {
    const scalar_t* map = data + (idx / g.channels) * g.stride_b + (idx % g.channels) * g.stride_c;
    for (int64_t i = 0; i < phases * phase_len; ++i) scratch[i] = acc_t(0);
    for (int64_t h = 0; h < n; ++h) {
      const int64_t phase = h % kRowPhases;
      const scalar_t* __restrict__ row = map + h * stride_h;
      // buffer `phase` holds position i at index kRowPhases + i - phase
      acc_t* __restrict__ dst = scratch + phase * phase_len + kRowPhases + (h - phase);
      if constexpr (kUnitW) {
        for (int64_t w = 0; w < n; ++w) dst[w] += static_cast<acc_t>(row[w]);
      } else {
        for (int64_t w = 0; w < n; ++w) dst[w] += static_cast<acc_t>(row[w * stride_w]);
      }
    }
    // merge the phases into scratch[0 .. n) (phase 0's slots are read before being overwritten)
    acc_t* __restrict__ merged = scratch + phase_len * kRowPhases;
    for (int64_t m = 0; m < n; ++m) merged[m] = acc_t(0);
    for (int64_t phase = 0; phase < phases; ++phase) {
      const acc_t* __restrict__ buf = scratch + phase * phase_len + kRowPhases - phase;
      for (int64_t m = 0; m < n; ++m) merged[m] += buf[m] + buf[m + n];
    }
    for (int64_t m = 0; m < n; ++m) sums_t[m * count + (idx - map_begin)] = merged[m];
  }
}

// Anti-diagonal sums of one (batch, channel block) of an interleaved (unit C stride) layout into
// sums_t[m * width + c] (per-channel accumulators, inner loop over contiguous channels).
template <typename scalar_t, typename acc_t>
void antidiagonal_interleaved_task(const scalar_t* __restrict__ data, const MapGeometry& g, int64_t b, int64_t c0,
                                   int64_t width, acc_t* __restrict__ sums_t) {
  const int64_t n = g.n;
  for (int64_t i = 0; i < n * width; ++i) sums_t[i] = acc_t(0);
  const scalar_t* base = data + b * g.stride_b + c0;
  for (int64_t h = 0; h < n; ++h) {
    for (int64_t w = 0; w < n; ++w) {
      const int64_t m = (h + w >= n) ? h + w - n : h + w;
      const scalar_t* __restrict__ src = base + h * g.stride_h + w * g.stride_w;
      acc_t* __restrict__ dst = sums_t + m * width;
      for (int64_t c = 0; c < width; ++c) dst[c] += static_cast<acc_t>(src[c]);
    }
  }
}

// DFT at the K diagonal frequencies and log(|F| + eps) for a block of `count` maps (global
// indices first_map ..) whose anti-diagonal sums are sums_t[m * count + i]; vectorised over the
// maps. Twiddles [m][K]. Results go to out_maps[map * K + k] or, when partial != nullptr, are
// summed (double lanes) into partial[k]. re, im, lg: `count` scratch each.
template <typename acc_t>
void block_dft_log(const acc_t* __restrict__ sums_t, int64_t count, int64_t n, const acc_t* __restrict__ cos_t,
                   const acc_t* __restrict__ sin_t, acc_t* __restrict__ re, acc_t* __restrict__ im,
                   acc_t* __restrict__ lg, int64_t first_map, acc_t* __restrict__ out_maps,
                   double* __restrict__ partial) {
  const int64_t num_freq = (n + 1) / 2;
  for (int64_t k = 0; k < num_freq; ++k) {
    for (int64_t i = 0; i < count; ++i) {
      re[i] = acc_t(0);
      im[i] = acc_t(0);
    }
    for (int64_t m = 0; m < n; ++m) {
      const acc_t cr = cos_t[m * num_freq + k], sr = sin_t[m * num_freq + k];
      const acc_t* __restrict__ s = sums_t + m * count;
      for (int64_t i = 0; i < count; ++i) {
        re[i] += s[i] * cr;
        im[i] += s[i] * sr;
      }
    }
    for (int64_t i = 0; i < count; ++i) lg[i] = log_amplitude(re[i], im[i]);
    if (any_positive_inf(lg, count)) {
      for (int64_t i = 0; i < count; ++i) {
        if (overflowed(lg[i], re[i], im[i])) lg[i] = log_amplitude_exact(re[i], im[i]);
      }
    }
    if (partial != nullptr) {
      double lanes[8] = {};
      int64_t i = 0;
      for (; i + 8 <= count; i += 8) {
        for (int j = 0; j < 8; ++j) lanes[j] += static_cast<double>(lg[i + j]);
      }
      for (; i < count; ++i) lanes[0] += static_cast<double>(lg[i]);
      double total = 0.0;
      for (int j = 0; j < 8; ++j) total += lanes[j];
      partial[k] += total;
    } else {
      for (int64_t i = 0; i < count; ++i) out_maps[(first_map + i) * num_freq + k] = lg[i];
    }
  }
}

template <typename acc_t>
inline void finish_moments(double shift, double s1, double s2, int64_t count, acc_t* mean, acc_t* var) {
  const double n = static_cast<double>(count);
  *mean = static_cast<acc_t>(shift + s1 / n);
  *var = static_cast<acc_t>((s2 - s1 * s1 / n) / (n - 1.0));
}

// Sums are taken of x - shift, shift = the map's first element, so the one-pass variance
// (S2 - S1^2 / N) / (N - 1) does not cancel catastrophically when |mean| >> std. Per-column
// float accumulators col1/col2 (width scratch each): the row loop vectorises and every column
// sums only `height` terms before the fold into double.
template <typename scalar_t, typename acc_t, bool kUnitW>
void moments_planar_range(const scalar_t* __restrict__ data, const MapGeometry& g, int64_t map_begin,
                          int64_t map_end, acc_t* __restrict__ col1, acc_t* __restrict__ col2,
                          acc_t* __restrict__ mean, acc_t* __restrict__ var) {
  const int64_t height = g.height, width = g.width, stride_h = g.stride_h, stride_w = g.stride_w;
  for (int64_t idx = map_begin; idx < map_end; ++idx) {
    const scalar_t* map = data + (idx / g.channels) * g.stride_b + (idx % g.channels) * g.stride_c;
    const acc_t shift = static_cast<acc_t>(map[0]);
    for (int64_t w = 0; w < width; ++w) {
      col1[w] = acc_t(0);
      col2[w] = acc_t(0);
    }
    for (int64_t h = 0; h < height; ++h) {
      const scalar_t* __restrict__ row = map + h * stride_h;
      for (int64_t w = 0; w < width; ++w) {
        const acc_t d = static_cast<acc_t>(kUnitW ? row[w] : row[w * stride_w]) - shift;
        col1[w] += d;
        col2[w] += d * d;
      }
    }
    double s1 = 0.0, s2 = 0.0;
    for (int64_t w = 0; w < width; ++w) {
      s1 += static_cast<double>(col1[w]);
      s2 += static_cast<double>(col2[w]);
    }
    finish_moments<acc_t>(static_cast<double>(shift), s1, s2, height * width, mean + idx, var + idx);
  }
}

// One (batch, channel block) of an interleaved layout; scratch: shift, r1, r2 (acc_t, width)
// and s1, s2 (double, width).
template <typename scalar_t, typename acc_t>
void moments_interleaved_task(const scalar_t* __restrict__ data, const MapGeometry& g, int64_t b, int64_t c0,
                              int64_t width, acc_t* __restrict__ shift, acc_t* __restrict__ r1,
                              acc_t* __restrict__ r2, double* __restrict__ s1, double* __restrict__ s2,
                              acc_t* __restrict__ mean, acc_t* __restrict__ var) {
  const scalar_t* base = data + b * g.stride_b + c0;
  for (int64_t c = 0; c < width; ++c) {
    shift[c] = static_cast<acc_t>(base[c]);
    s1[c] = 0.0;
    s2[c] = 0.0;
  }
  for (int64_t h = 0; h < g.height; ++h) {
    for (int64_t c = 0; c < width; ++c) {
      r1[c] = acc_t(0);
      r2[c] = acc_t(0);
    }
    for (int64_t w = 0; w < g.width; ++w) {
      const scalar_t* __restrict__ src = base + h * g.stride_h + w * g.stride_w;
      for (int64_t c = 0; c < width; ++c) {
        const acc_t d = static_cast<acc_t>(src[c]) - shift[c];
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
    const int64_t idx = b * g.channels + c0 + c;
    finish_moments<acc_t>(static_cast<double>(shift[c]), s1[c], s2[c], g.height * g.width, mean + idx, var + idx);
  }
}

}  // namespace FASTVIT_CPU_NS
}  // namespace cpu
}  // namespace fastvit_analysis

namespace fastvit_analysis {
namespace cpu {
namespace FASTVIT_CPU_NS {

// The kernels of this ISA as one type, so the (baseline-ISA) drivers can take it as a template
// argument.
struct Kernels {
  template <typename scalar_t, typename acc_t, bool kUnitW, typename... Args>
  static void antidiagonal_planar(Args... args) { antidiagonal_planar_range<scalar_t, acc_t, kUnitW>(args...); }
  template <typename scalar_t, typename acc_t, typename... Args>
  static void antidiagonal_interleaved(Args... args) { antidiagonal_interleaved_task<scalar_t, acc_t>(args...); }
  template <typename acc_t, typename... Args>
  static void dft_log(Args... args) { block_dft_log<acc_t>(args...); }
  template <typename scalar_t, typename acc_t, bool kUnitW, typename... Args>
  static void moments_planar(Args... args) { moments_planar_range<scalar_t, acc_t, kUnitW>(args...); }
  template <typename scalar_t, typename acc_t, typename... Args>
  static void moments_interleaved(Args... args) { moments_interleaved_task<scalar_t, acc_t>(args...); }
};

}  // namespace FASTVIT_CPU_NS
}  // namespace cpu
}  // namespace fastvit_analysis

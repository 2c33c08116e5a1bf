// CPU kernels of the CPC encoder, loaded by MindSpore as ops.Custom(func_type="aot") (src/model/cpu/kernels.py).
//
// Channels-last (NHWC) tensors are seen as [rows, C] with rows = N*H*W. Every function has the aot
// signature: params holds the inputs then the outputs, shapes/ndims describe them. All float32.
//
//   BnLeakyTrain  x[M,C], gamma[C], beta[C], consts[2] (eps, alpha) -> y[M,C], mean[C], var[C]
//                 y = leaky(gamma * (x - mean) / sqrt(var + eps) + beta), batch mean and biased variance.
//   BnLeakyGrad   dy[M,C], x[M,C], gamma, beta, mean, var, consts -> dx[M,C], dgamma[C], dbeta[C]
//   BnLeakyInfer  x[M,C], gamma, beta, mean, var, consts -> y[M,C] (moving statistics)
//   Im2colNhwc    x[N,H,W,C], taps[P,9] int32 -> patches[N*P, 9*C]   (Im2colNchw: x[N,C,H,W])
//   ContrastIm2colNchw  x[N,C,H,W], background[N*C], taps[P,9] -> the patches of |x - background| - 1
//                 (the input-contrast layer fused into the first layer's im2col)
//   Col2imNhwc    dpatches[N*P, 9*C], taps[P,9], readers[H*W,4] int32 -> dx[N,H,W,C]
//   LnLeakyTrain  x[N,K], consts[2] (eps, alpha) -> y[N,K], mean[N], rstd[N]
//                 y = leaky((x - mean) * rstd), each sample's (row's) mean and rstd = 1 / sqrt(var + eps)
//                 over its K = H*W*C values (layer normalisation without affine)
//   LnLeakyGrad   dy[N,K], x[N,K], mean[N], rstd[N], consts -> dx[N,K]
// Work is split over the process's CPUs (at most 16) in contiguous row ranges; sums are taken in
// float per block of rows and folded into doubles in a fixed order, so results do not vary run to run.
// The layer-norm kernels give each sample to one thread whole, so their sums do not depend on the
// CPU count either.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <sched.h>
#include <thread>
#include <vector>

namespace {

int NumThreads() {
  static const int n = [] {
    cpu_set_t set;
    int count = 0;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) count = CPU_COUNT(&set);
    if (count < 1) count = static_cast<int>(std::thread::hardware_concurrency());
    return std::max(1, std::min(count, 16));
  }();
  return n;
}

// f(begin, end, thread) over [0, total) split in contiguous ranges, one per thread.
template <typename F>
void ParallelFor(int64_t total, int64_t grain, F f) {
  int threads = static_cast<int>(std::min<int64_t>(NumThreads(), std::max<int64_t>(1, total / grain)));
  if (threads <= 1) {
    f(0, total, 0);
    return;
  }
  std::vector<std::thread> pool;
  int64_t step = (total + threads - 1) / threads;
  for (int t = 1; t < threads; ++t) {
    int64_t b = t * step, e = std::min(total, b + step);
    if (b < e) pool.emplace_back(f, b, e, t);
  }
  f(0, std::min(total, step), 0);
  for (auto &th : pool) th.join();
}

// Rows per float partial sum before it is folded into the double total.
constexpr int64_t kBlock = 256;

// The row loops, written so that the compiler vectorises them: restrict pointers, no branches
// (leaky(z) = max(z, alpha z) and leaky'(z) a select, for 0 < alpha < 1).
inline void ShiftedSums(const float *__restrict row, const float *__restrict first, float *__restrict p1,
                        float *__restrict p2, int64_t c) {
  for (int64_t j = 0; j < c; ++j) {
    float d = row[j] - first[j];
    p1[j] += d;
    p2[j] += d * d;
  }
}

inline void NormLeaky(const float *__restrict row, float *__restrict out, const float *__restrict scale,
                      const float *__restrict shift, int64_t c, float alpha) {
  for (int64_t j = 0; j < c; ++j) {
    float z = row[j] * scale[j] + shift[j];
    out[j] = std::max(z, z * alpha);
  }
}

inline void GradSums(const float *__restrict xr, const float *__restrict dr, const float *__restrict scale,
                     const float *__restrict shift, const float *__restrict mean, float *__restrict pg,
                     float *__restrict pgx, int64_t c, float alpha) {
  for (int64_t j = 0; j < c; ++j) {
    float z = xr[j] * scale[j] + shift[j];
    float g = z > 0.f ? dr[j] : dr[j] * alpha;
    pg[j] += g;
    pgx[j] += g * (xr[j] - mean[j]);
  }
}

inline void GradInput(const float *__restrict xr, const float *__restrict dr, float *__restrict out,
                      const float *__restrict scale, const float *__restrict shift, const float *__restrict mean,
                      const float *__restrict k1, const float *__restrict k2, const float *__restrict k3, int64_t c,
                      float alpha) {
  for (int64_t j = 0; j < c; ++j) {
    float z = xr[j] * scale[j] + shift[j];
    float g = z > 0.f ? dr[j] : dr[j] * alpha;
    out[j] = k1[j] * (g - k2[j] - (xr[j] - mean[j]) * k3[j]);
  }
}

// Per-channel totals (two of them) over rows [0, m): row(r, a, b) adds row r's contributions into
// the float partials a[C], b[C]; partials are folded into doubles every kBlock rows, and the
// threads' doubles are added in thread order, so the result is the same on every run.
template <typename Row>
std::vector<double> ChannelSums(int64_t m, int64_t c, Row row) {
  const int threads = NumThreads();
  std::vector<double> sums(static_cast<size_t>(threads) * 2 * c, 0.0);
  ParallelFor(m, 4096, [&](int64_t b, int64_t e, int t) {
    double *s1 = sums.data() + static_cast<size_t>(t) * 2 * c, *s2 = s1 + c;
    std::vector<float> p1(c), p2(c);
    for (int64_t r0 = b; r0 < e; r0 += kBlock) {
      std::fill(p1.begin(), p1.end(), 0.f);
      std::fill(p2.begin(), p2.end(), 0.f);
      const int64_t r1 = std::min(e, r0 + kBlock);
      for (int64_t r = r0; r < r1; ++r) row(r, p1.data(), p2.data());
      for (int64_t j = 0; j < c; ++j) {
        s1[j] += p1[j];
        s2[j] += p2[j];
      }
    }
  });
  std::vector<double> total(2 * c, 0.0);
  for (int64_t j = 0; j < c; ++j) {
    for (int t = 0; t < threads; ++t) {
      total[j] += sums[static_cast<size_t>(t) * 2 * c + j];
      total[c + j] += sums[static_cast<size_t>(t) * 2 * c + c + j];
    }
  }
  return total;
}

// y = leaky(scale * x + shift) over the m rows of x[m, c], split over the threads.
void NormLeakyRows(const float *x, float *y, const float *scale, const float *shift, int64_t m, int64_t c,
                   float alpha) {
  ParallelFor(m, 4096, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) NormLeaky(x + r * c, y + r * c, scale, shift, c, alpha);
  });
}

}  // namespace

extern "C" int BnLeakyTrain(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 7 || ndims[0] != 2) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *gamma = static_cast<const float *>(params[1]);
  const float *beta = static_cast<const float *>(params[2]);
  const float *consts = static_cast<const float *>(params[3]);
  float *y = static_cast<float *>(params[4]);
  float *mean_out = static_cast<float *>(params[5]);
  float *var_out = static_cast<float *>(params[6]);
  const int64_t m = shapes[0][0], c = shapes[0][1];
  const float eps = consts[0], alpha = consts[1];
  // sums of (x - shift) and (x - shift)^2, shift = the first row (keeps the one-pass variance accurate)
  const std::vector<double> sums = ChannelSums(m, c, [&](int64_t r, float *p1, float *p2) {
    ShiftedSums(x + r * c, x, p1, p2, c);
  });
  std::vector<float> scale(c), shift(c);
  for (int64_t j = 0; j < c; ++j) {
    double dm = sums[j] / m, var = std::max(0.0, sums[c + j] / m - dm * dm);
    double mean = x[j] + dm;
    mean_out[j] = static_cast<float>(mean);
    var_out[j] = static_cast<float>(var);
    float inv = static_cast<float>(1.0 / std::sqrt(var + eps));
    scale[j] = gamma[j] * inv;
    shift[j] = beta[j] - static_cast<float>(mean) * scale[j];
  }
  NormLeakyRows(x, y, scale.data(), shift.data(), m, c, alpha);
  return 0;
}

extern "C" int BnLeakyInfer(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 7 || ndims[0] != 2) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *gamma = static_cast<const float *>(params[1]);
  const float *beta = static_cast<const float *>(params[2]);
  const float *mean = static_cast<const float *>(params[3]);
  const float *var = static_cast<const float *>(params[4]);
  const float *consts = static_cast<const float *>(params[5]);
  float *y = static_cast<float *>(params[6]);
  const int64_t m = shapes[0][0], c = shapes[0][1];
  const float eps = consts[0], alpha = consts[1];
  std::vector<float> scale(c), shift(c);
  for (int64_t j = 0; j < c; ++j) {
    scale[j] = gamma[j] / std::sqrt(var[j] + eps);
    shift[j] = beta[j] - mean[j] * scale[j];
  }
  NormLeakyRows(x, y, scale.data(), shift.data(), m, c, alpha);
  return 0;
}

extern "C" int BnLeakyGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 10 || ndims[0] != 2) return 1;
  const float *dy = static_cast<const float *>(params[0]);
  const float *x = static_cast<const float *>(params[1]);
  const float *gamma = static_cast<const float *>(params[2]);
  const float *beta = static_cast<const float *>(params[3]);
  const float *mean = static_cast<const float *>(params[4]);
  const float *var = static_cast<const float *>(params[5]);
  const float *consts = static_cast<const float *>(params[6]);
  float *dx = static_cast<float *>(params[7]);
  float *dgamma = static_cast<float *>(params[8]);
  float *dbeta = static_cast<float *>(params[9]);
  const int64_t m = shapes[0][0], c = shapes[0][1];
  const float eps = consts[0], alpha = consts[1];
  std::vector<float> inv(c), scale(c), shift(c);
  for (int64_t j = 0; j < c; ++j) {
    inv[j] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(var[j]) + eps));
    scale[j] = gamma[j] * inv[j];
    shift[j] = beta[j] - mean[j] * scale[j];
  }
  // g = dy * leaky'(z); sums of g and g * (x - mean) per channel
  const std::vector<double> sums = ChannelSums(m, c, [&](int64_t r, float *pg, float *pgx) {
    GradSums(x + r * c, dy + r * c, scale.data(), shift.data(), mean, pg, pgx, c, alpha);
  });
  std::vector<float> k1(c), k2(c), k3(c);
  for (int64_t j = 0; j < c; ++j) {
    const double sg = sums[j], sgx = sums[c + j];
    dbeta[j] = static_cast<float>(sg);
    dgamma[j] = static_cast<float>(sgx * inv[j]);
    // dx = gamma*inv * (g - sg/m - xhat * sum(g*xhat)/m), xhat = (x - mean) * inv
    k1[j] = scale[j];
    k2[j] = static_cast<float>(sg / m);
    k3[j] = static_cast<float>(sgx / m) * inv[j] * inv[j];
  }
  ParallelFor(m, 4096, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) {
      GradInput(x + r * c, dy + r * c, dx + r * c, scale.data(), shift.data(), mean, k1.data(), k2.data(),
                k3.data(), c, alpha);
    }
  });
  return 0;
}

// dst[ch] = |src[ch * hw] - bg[ch]| - 1: one pixel's channels of a contrasted NCHW image.
inline void ContrastCopy(float *__restrict dst, const float *__restrict src, const float *__restrict bg, int64_t c,
                         int64_t hw) {
  for (int64_t ch = 0; ch < c; ++ch) dst[ch] = std::fabs(src[ch * hw] - bg[ch]) - 1.f;
}

// im2col of the 3x3 convolution: patches[n*P + o, k*C + ch] = x[n, taps[o, k], ch], 0 where
// taps[o, k] == H*W (a padded tap). Im2colNhwc reads x[N,H,W,C], Im2colNchw reads x[N,C,H,W].
// With a background [N*C] (NCHW only) each read value is |x - background| - 1.
template <bool kChannelsLast>
void Im2col(const float *x, const float *background, const int32_t *taps, float *patches, int64_t n, int64_t c,
            int64_t hw, int64_t p) {
  ParallelFor(n * p, 64, [&](int64_t b, int64_t e, int) {
    for (int64_t row = b; row < e; ++row) {
      const int64_t image = row / p, o = row % p;
      const float *src = x + image * hw * c;
      const float *bg = background ? background + image * c : nullptr;
      float *dst = patches + row * 9 * c;
      for (int64_t k = 0; k < 9; ++k, dst += c) {
        const int32_t pixel = taps[o * 9 + k];
        if (pixel >= hw) {
          std::memset(dst, 0, sizeof(float) * c);
        } else if (kChannelsLast) {
          std::memcpy(dst, src + pixel * c, sizeof(float) * c);
        } else if (bg) {
          ContrastCopy(dst, src + pixel, bg, c, hw);
        } else {
          for (int64_t ch = 0; ch < c; ++ch) dst[ch] = src[ch * hw + pixel];
        }
      }
    }
  });
}

// x (4-D, inputs[0]) and taps (inputs[last]) -> patches; channels from dim 3 (NHWC) or 1 (NCHW).
template <bool kChannelsLast>
int Im2colCall(int nparam, void **params, int *ndims, int64_t **shapes, bool contrast) {
  const int taps_at = contrast ? 2 : 1;
  if (nparam != taps_at + 2 || ndims[0] != 4 || ndims[taps_at] != 2 || shapes[taps_at][1] != 9) return 1;
  const int64_t n = shapes[0][0];
  const int64_t c = kChannelsLast ? shapes[0][3] : shapes[0][1];
  if (contrast && (ndims[1] != 1 || shapes[1][0] != n * c)) return 1;
  Im2col<kChannelsLast>(static_cast<const float *>(params[0]),
                        contrast ? static_cast<const float *>(params[1]) : nullptr,
                        static_cast<const int32_t *>(params[taps_at]), static_cast<float *>(params[taps_at + 1]), n,
                        c, shapes[0][1] * shapes[0][2] * shapes[0][3] / c, shapes[taps_at][0]);
  return 0;
}

extern "C" int Im2colNhwc(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  return Im2colCall<true>(nparam, params, ndims, shapes, false);
}

extern "C" int Im2colNchw(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  return Im2colCall<false>(nparam, params, ndims, shapes, false);
}

extern "C" int ContrastIm2colNchw(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *,
                                  void *) {
  return Im2colCall<false>(nparam, params, ndims, shapes, true);
}

// col2im, the input gradient: dx[n, pixel, ch] = sum of dpatches[n*P*9 + r, ch] over the (at most 4)
// patch entries r = readers[pixel, i] that read the pixel; r == P*9 marks an unused slot.
//   dpatches[N*P, 9*C], taps[P, 9] (gives P), readers[H*W, 4] -> dx[N, H, W, C]
extern "C" int Col2imNhwc(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 4 || ndims[0] != 2 || ndims[1] != 2 || ndims[2] != 2 || shapes[2][1] != 4) return 1;
  const float *dpatches = static_cast<const float *>(params[0]);
  const int32_t *readers = static_cast<const int32_t *>(params[2]);
  float *dx = static_cast<float *>(params[3]);
  const int64_t p = shapes[1][0], hw = shapes[2][0];
  const int64_t c = shapes[0][1] / 9, n = shapes[0][0] / p;
  ParallelFor(n * hw, 64, [&](int64_t b, int64_t e, int) {
    for (int64_t item = b; item < e; ++item) {
      const int64_t image = item / hw, pixel = item % hw;
      float *__restrict out = dx + item * c;
      const float *base = dpatches + image * p * 9 * c;
      std::memset(out, 0, sizeof(float) * c);
      for (int i = 0; i < 4; ++i) {
        const int32_t r = readers[pixel * 4 + i];
        if (r >= p * 9) continue;
        const float *__restrict in = base + static_cast<int64_t>(r) * c;
        for (int64_t ch = 0; ch < c; ++ch) out[ch] += in[ch];
      }
    }
  });
  return 0;
}

namespace {

// Layer normalisation + LeakyReLU, one sample (row of k values) at a time. Sums are taken in kLanes
// float partials (each lane a fixed set of positions, so the compiler vectorises the loop without
// reordering a float sum) and folded into one double in lane order: fixed order, no CPU-count dependence.
constexpr int64_t kLanes = 32;

struct Partials {
  float a[kLanes], b[kLanes];
};

inline double Fold(const float *__restrict p) {
  double total = 0.0;
  for (int64_t j = 0; j < kLanes; ++j) total += p[j];
  return total;
}

template <bool kSquare>
inline void LaneSum(const float *__restrict x, float *__restrict p, float shift, int64_t lanes) {
  for (int64_t j = 0; j < lanes; ++j) {
    const float d = x[j] - shift;
    p[j] += kSquare ? d * d : d;
  }
}

// Sum of (x - shift), or of (x - shift)^2 (kSquare), over the k values of one sample.
template <bool kSquare>
double RowSum(const float *x, int64_t k, float shift) {
  float p[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= k; i += kLanes) LaneSum<kSquare>(x + i, p, shift, kLanes);
  LaneSum<kSquare>(x + i, p, shift, k - i);
  return Fold(p);
}

inline void LnLeakyRow(const float *__restrict x, float *__restrict y, float mean, float rstd, int64_t k,
                       float alpha) {
  for (int64_t i = 0; i < k; ++i) {
    const float z = (x[i] - mean) * rstd;
    y[i] = std::max(z, z * alpha);
  }
}

// Sums of g and g * xhat over one sample, g = dy * leaky'(xhat), xhat = (x - mean) * rstd.
inline void LnGradLanes(const float *__restrict x, const float *__restrict dy, Partials *__restrict p, float mean,
                        float rstd, int64_t lanes, float alpha) {
  for (int64_t j = 0; j < lanes; ++j) {
    const float z = (x[j] - mean) * rstd;
    const float g = z > 0.f ? dy[j] : dy[j] * alpha;
    p->a[j] += g;
    p->b[j] += g * z;
  }
}

inline void LnGradRow(const float *__restrict x, const float *__restrict dy, float *__restrict dx, float mean,
                      float rstd, float mean_g, float mean_gz, int64_t k, float alpha) {
  for (int64_t i = 0; i < k; ++i) {
    const float z = (x[i] - mean) * rstd;
    const float g = z > 0.f ? dy[i] : dy[i] * alpha;
    dx[i] = rstd * (g - mean_g - z * mean_gz);
  }
}

}  // namespace

// Two passes for the statistics (mean, then the variance of the centred values, as the MindSpore-op
// form computes them) and one for the output; a sample (16 KB on the largest layer) stays in cache.
extern "C" int LnLeakyTrain(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 5 || ndims[0] != 2) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *consts = static_cast<const float *>(params[1]);
  float *y = static_cast<float *>(params[2]);
  float *mean_out = static_cast<float *>(params[3]);
  float *rstd_out = static_cast<float *>(params[4]);
  const int64_t n = shapes[0][0], k = shapes[0][1];
  const float eps = consts[0], alpha = consts[1];
  ParallelFor(n, 4, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) {
      const float *row = x + r * k;
      const float mean = static_cast<float>(RowSum<false>(row, k, 0.f) / k);
      const float var = static_cast<float>(RowSum<true>(row, k, mean) / k);
      const float rstd = 1.f / std::sqrt(var + eps);
      mean_out[r] = mean;
      rstd_out[r] = rstd;
      LnLeakyRow(row, y + r * k, mean, rstd, k, alpha);
    }
  });
  return 0;
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) per sample, g = dy * leaky'(xhat).
extern "C" int LnLeakyGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **, void *, void *) {
  if (nparam != 6 || ndims[0] != 2 || ndims[1] != 2) return 1;
  const float *dy = static_cast<const float *>(params[0]);
  const float *x = static_cast<const float *>(params[1]);
  const float *mean = static_cast<const float *>(params[2]);
  const float *rstd = static_cast<const float *>(params[3]);
  const float alpha = static_cast<const float *>(params[4])[1];
  float *dx = static_cast<float *>(params[5]);
  const int64_t n = shapes[1][0], k = shapes[1][1];
  ParallelFor(n, 4, [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) {
      const float *xr = x + r * k, *dr = dy + r * k;
      Partials p = {};
      int64_t i = 0;
      for (; i + kLanes <= k; i += kLanes) LnGradLanes(xr + i, dr + i, &p, mean[r], rstd[r], kLanes, alpha);
      LnGradLanes(xr + i, dr + i, &p, mean[r], rstd[r], k - i, alpha);
      const float mean_g = static_cast<float>(Fold(p.a) / k), mean_gz = static_cast<float>(Fold(p.b) / k);
      LnGradRow(xr, dr, dx + r * k, mean[r], rstd[r], mean_g, mean_gz, k, alpha);
    }
  });
  return 0;
}

// The native kernels' arithmetic (see compute.h). Compiled once per instruction set with
// -DKERNEL_ISA=<namespace>; plain loops written so that GCC and Clang vectorise them: fixed-width
// inner loops over independent lanes, no reductions that need reassociation, ternaries for branches.
#include "compute.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#ifndef KERNEL_ISA
#error "compile with -DKERNEL_ISA=avx512|avx2|baseline"
#endif

namespace mlx_megabyte::KERNEL_ISA {
namespace {

// Floats per column block: one register of the instruction set. The micro-kernels below hold BQ
// accumulators of W floats; with AVX2's 16 registers, W = 16 (two registers each) spilled them to the
// stack: the 40m preset's global attention took 79-102 ms forward and backward on a Zen 3, 17 ms with W = 8.
#if defined(__AVX512F__)
constexpr int W = 16;
#elif defined(__AVX__)
constexpr int W = 8;
#else
constexpr int W = 4;
#endif
constexpr int BQ = 8;   // queries per block in attention
// Partial sums per reduction (dot products, row sums and maxima), whatever W is: 16 running sums of
// n / 16 terms each keep a long row's sum as exact on every build (with 4, the baseline's LayerNorm of
// 1,029 values near 30 was 2e-6 off), and the compiler splits them into registers of any width.
constexpr int LANES = 16;

inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// W floats as one value (GCC/Clang vector extensions): an AVX-512 register, two AVX2 ones, four SSE ones.
// The micro-kernels keep their accumulators in such values, so that they live in registers whatever
// the auto-vectoriser decides; `loadu`/`storeu` allow any alignment.
typedef float vec __attribute__((vector_size(W * sizeof(float))));
typedef float vec_unaligned __attribute__((vector_size(W * sizeof(float)), aligned(alignof(float))));
inline vec loadu(const float* p) { return *reinterpret_cast<const vec_unaligned*>(p); }
inline void storeu(float* p, vec v) { *reinterpret_cast<vec_unaligned*>(p) = v; }
typedef int32_t ivec __attribute__((vector_size(W * sizeof(int32_t))));
inline vec vmax(vec a, vec b) { return a > b ? a : b; }
inline vec vmin(vec a, vec b) { return a < b ? a : b; }
inline vec vabs(vec a) { return a < 0.0f ? -a : a; }

// n floats from src to dst: short rows (a head is 16-64 floats) copied W at a time cost far less than
// calls of memcpy, which took a quarter of the local attention's time.
inline void copy(float* dst, const float* src, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W) storeu(dst + i, loadu(src + i));
  for (; i < n; ++i) dst[i] = src[i];
}

// Applies f (vec -> vec) to n floats: W at a time, the tail through a zero-padded block.
template <class F>
inline void map(const float* x, float* y, int64_t n, F f) {
  int64_t i = 0;
  for (; i + W <= n; i += W) storeu(y + i, f(loadu(x + i), i));
  if (i < n) {
    float in[W] = {}, out[W];
    std::memcpy(in, x + i, (n - i) * sizeof(float));
    storeu(out, f(loadu(in), i));
    std::memcpy(y + i, out, (n - i) * sizeof(float));
  }
}

// exp(x) for x <= 0 (all its callers: softmax, cross-entropy and GELU arguments): 2^k * e^r with
// |r| <= ln 2 / 2 (Cody and Waite's split of ln 2), a degree-6 Taylor polynomial (relative error below
// 3e-7) and 2^k built from the exponent bits. Below -87.3 (-inf included), where exp(x) < 1.2e-38,
// the result is 0. floor() is a truncation of a positive number.
inline vec exp_approx(vec x) {
  vec y = vmin(vmax(x * 1.44269504088896341f, vec{} - 126.0f), vec{} + 127.0f);
  ivec i = __builtin_convertvector(y + 128.5f, ivec) - 128;
  vec k = __builtin_convertvector(i, vec);
  vec r = vmax((x - k * 0.693359375f) - k * -2.12194440e-4f, vec{} - 0.35f);
  vec p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
  return x < -87.3f ? vec{} : p * reinterpret_cast<vec>((i + 127) << 23);
}

inline float exp_approx(float x) {
  vec v = vec{} + x;
  return exp_approx(v)[0];
}

// GELU through Phi(x) = (1 + erf(x / sqrt 2)) / 2, with Abramowitz and Stegun 7.1.26 for erf (absolute
// error 1.5e-7): erfc(z) = t P(t) exp(-z^2), t = 1 / (1 + p z). Phi is formed from erfc directly, so
// the far negative tail keeps its relative accuracy. `e` is exp(-x^2 / 2), which the gradient reuses.
inline vec phi_of(vec x, vec& e) {
  vec z = vabs(x) * 0.70710678118654752f;
  vec t = 1.0f / (1.0f + 0.3275911f * z);
  vec poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  e = exp_approx(-z * z);
  vec half_erfc = 0.5f * poly * e;
  return x >= 0.0f ? 1.0f - half_erfc : half_erfc;
}

void gelu(const float* x, float* y, int64_t n) {
  map(x, y, n, [](vec v, int64_t) {
    vec e;
    return v * phi_of(v, e);
  });
}

void gelu_grad(const float* x, const float* g, float* dx, int64_t n) {
  map(x, dx, n, [g, n](vec v, int64_t i) {
    vec e, grad = {};
    if (i + W <= n) {
      grad = loadu(g + i);
    } else {
      float tail[W] = {};
      std::memcpy(tail, g + i, (n - i) * sizeof(float));
      grad = loadu(tail);
    }
    return grad * (phi_of(v, e) + v * e * 0.398942280401432678f);  // Phi(x) + x phi(x)
  });
}

// Sums over LANES independent lanes (vectorised without reassociation), then across them.
inline float dot(const float* __restrict a, const float* __restrict b, int64_t n) {
  float lanes[LANES] = {};
  int64_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int c = 0; c < LANES; ++c) lanes[c] += a[i + c] * b[i + c];
  float total = 0.0f;
  for (; i < n; ++i) total += a[i] * b[i];
  for (int c = 0; c < LANES; ++c) total += lanes[c];
  return total;
}

// Row r of the token-shifted input: its first half, the previous row's second half (or zeros).
inline void shifted_row(const float* x, float* z, int64_t r, int64_t T, int64_t D) {
  int64_t half = (D + 1) / 2;  // torch.chunk gives the first half the odd feature
  const float* row = x + r * D;
  std::memcpy(z, row, half * sizeof(float));
  if (r % T == 0)
    std::memset(z + half, 0, (D - half) * sizeof(float));
  else
    std::memcpy(z + half, row - D + half, (D - half) * sizeof(float));
}

void rms_norm(const float* x, const float* w, float* y, float* inverse, int64_t row0, int64_t row1, int64_t T,
              int64_t D, bool shift, float scale, float eps) {
  std::vector<float> shifted(shift ? D : 0);
  float* z = shifted.data();
  for (int64_t r = row0; r < row1; ++r) {
    const float* in = x + r * D;
    if (shift) {
      shifted_row(x, z, r, T, D);
      in = z;
    }
    float inv = 1.0f / std::max(std::sqrt(dot(in, in, D)) * scale, eps);
    inverse[r] = inv;
    float* out = y + r * D;
    for (int64_t d = 0; d < D; ++d) out[d] = in[d] * inv * w[d];
  }
}

void rms_norm_grad(const float* x, const float* w, const float* inverse, const float* dy, float* dz, float* dw,
                   int64_t row0, int64_t row1, int64_t T, int64_t D, bool shift, float scale, float eps) {
  std::vector<float> buffer((shift ? 2 : 1) * D);
  float* wdy = buffer.data();
  float* z = wdy + D;
  for (int64_t r = row0; r < row1; ++r) {
    const float* in = x + r * D;
    if (shift) {
      shifted_row(x, z, r, T, D);
      in = z;
    }
    const float* g = dy + r * D;
    float inv = inverse[r];
    for (int64_t d = 0; d < D; ++d) {
      wdy[d] = w[d] * g[d];
      dw[d] += g[d] * in[d] * inv;
    }
    float* out = dz + r * D;
    // Below eps the denominator is the constant eps: no gradient flows through the norm.
    bool clamped = std::sqrt(dot(in, in, D)) * scale <= eps;
    float k = clamped ? 0.0f : dot(wdy, in, D) * inv * inv * inv * scale * scale;
    for (int64_t d = 0; d < D; ++d) out[d] = wdy[d] * inv - k * in[d];
  }
}

void unshift(const float* dz, float* dx, int64_t row0, int64_t row1, int64_t T, int64_t D) {
  int64_t half = (D + 1) / 2;
  for (int64_t r = row0; r < row1; ++r) {
    std::memcpy(dx + r * D, dz + r * D, half * sizeof(float));
    if ((r + 1) % T == 0)
      std::memset(dx + r * D + half, 0, (D - half) * sizeof(float));
    else
      std::memcpy(dx + r * D + half, dz + (r + 1) * D + half, (D - half) * sizeof(float));
  }
}

inline float sum(const float* x, int64_t n) {
  float lanes[LANES] = {};
  int64_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int c = 0; c < LANES; ++c) lanes[c] += x[i + c];
  float total = 0.0f;
  for (; i < n; ++i) total += x[i];
  for (int c = 0; c < LANES; ++c) total += lanes[c];
  return total;
}

// torch's LayerNorm: the variance is the biased one, of the centred row (two passes: exact for rows far
// from zero mean), eps under the square root.
void layer_norm(const float* x, const float* w, const float* b, float* y, float* mean, float* rstd, int64_t row0,
                int64_t row1, int64_t D, float eps) {
  for (int64_t r = row0; r < row1; ++r) {
    const float* in = x + r * D;
    float* out = y + r * D;
    float m = sum(in, D) / D;
    for (int64_t d = 0; d < D; ++d) out[d] = in[d] - m;
    float rs = 1.0f / std::sqrt(dot(out, out, D) / D + eps);
    mean[r] = m;
    rstd[r] = rs;
    for (int64_t d = 0; d < D; ++d) out[d] = out[d] * rs * w[d] + b[d];
  }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = w * dy, xhat = (x - mean) * rstd; these rows'
// shares of dw (dy * xhat) and db (dy) are added to dw and db.
void layer_norm_grad(const float* x, const float* w, const float* mean, const float* rstd, const float* dy,
                     float* dx, float* dw, float* db, int64_t row0, int64_t row1, int64_t D) {
  for (int64_t r = row0; r < row1; ++r) {
    const float *in = x + r * D, *g = dy + r * D;
    float* out = dx + r * D;
    float m = mean[r], rs = rstd[r];
    for (int64_t d = 0; d < D; ++d) {
      float xhat = (in[d] - m) * rs;
      dw[d] += g[d] * xhat;
      db[d] += g[d];
      out[d] = w[d] * g[d];  // wdy, for now
    }
    float total_g = sum(out, D);
    float mean_g = total_g / D, mean_gx = (dot(out, in, D) - m * total_g) * rs / D;
    for (int64_t d = 0; d < D; ++d) out[d] = rs * (out[d] - mean_g - (in[d] - m) * rs * mean_gx);
  }
}

inline float row_max(const float* x, int64_t n) {
  float lanes[LANES];
  for (int c = 0; c < LANES; ++c) lanes[c] = -INFINITY;
  int64_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int c = 0; c < LANES; ++c) lanes[c] = std::max(lanes[c], x[i + c]);
  float m = -INFINITY;
  for (; i < n; ++i) m = std::max(m, x[i]);
  for (int c = 0; c < LANES; ++c) m = std::max(m, lanes[c]);
  return m;
}

inline float sum_exp(const float* x, int64_t n, float shift) {
  vec lanes = {};
  int64_t i = 0;
  for (; i + W <= n; i += W) lanes += exp_approx(loadu(x + i) - shift);
  float total = 0.0f;
  for (; i < n; ++i) total += exp_approx(x[i] - shift);
  for (int c = 0; c < W; ++c) total += lanes[c];
  return total;
}

void cross_entropy(const float* logits, const int32_t* targets, float* loss, float* lse, int64_t row0, int64_t row1,
                   int64_t V) {
  for (int64_t r = row0; r < row1; ++r) {
    const float* row = logits + r * V;
    float m = row_max(row, V);
    float l = m + std::log(sum_exp(row, V, m));
    float total = sum(row, V);
    l += total - total;  // NaN when a logit is NaN or infinite (max() above would drop a NaN)
    int32_t t = targets[r];
    lse[r] = l;
    loss[r] = (t >= 0 && t < V) ? l - row[t] : l;
  }
}

void cross_entropy_grad(const float* logits, const int32_t* targets, const float* lse, const float* g,
                        float* dlogits, int64_t row0, int64_t row1, int64_t V) {
  for (int64_t r = row0; r < row1; ++r) {
    const float* row = logits + r * V;
    float* out = dlogits + r * V;
    float l = lse[r], scale = g[r];
    map(row, out, V, [l, scale](vec v, int64_t) { return scale * exp_approx(v - l); });
    int32_t t = targets[r];
    if (t >= 0 && t < V) out[t] -= scale;
  }
}

// --- attention ------------------------------------------------------------------------------------
//
// Per head, in query blocks of BQ: the block's scores against the keys it may see (S = Q Kt, with K
// transposed once per head), their softmax, and P V; the backward pass recomputes P from the saved
// logsumexp, as flash attention does. Keys sit in registers W at a time: S[r][j0 .. j0 + W) for BQ
// rows is BQ accumulators fed by one load of Kt per feature.

// S[r][j] = sum_d A[r][d] Bt[d][j] for r < BQ and j in [j0, j1) (written up to j1 rounded up to W).
inline void scores(const float* A, int64_t lda, const float* Bt, int64_t ldb, int64_t depth, int64_t j0, int64_t j1,
                   float* S, int64_t lds) {
  for (int64_t j = j0; j < j1; j += W) {
    vec acc[BQ] = {};
    for (int64_t d = 0; d < depth; ++d) {
      vec b = loadu(Bt + d * ldb + j);
#pragma GCC unroll 8
      for (int r = 0; r < BQ; ++r) acc[r] += A[r * lda + d] * b;
    }
#pragma GCC unroll 8
    for (int r = 0; r < BQ; ++r) storeu(S + r * lds + j, acc[r]);
  }
}

// C[r][:] = alpha * sum_{j in [j0, j1)} P[r][j] B[j][:] for r < BQ, over `width` (a multiple of W) columns.
inline void combine(const float* P, int64_t ldp, int64_t j0, int64_t j1, const float* B, int64_t ldb, int64_t width,
                    float* C, int64_t ldc, float alpha) {
  for (int64_t d = 0; d < width; d += W) {
    vec acc[BQ] = {};
    for (int64_t j = j0; j < j1; ++j) {
      vec b = loadu(B + j * ldb + d);
#pragma GCC unroll 8
      for (int r = 0; r < BQ; ++r) acc[r] += P[r * ldp + j] * b;
    }
#pragma GCC unroll 8
    for (int r = 0; r < BQ; ++r) storeu(C + r * ldc + d, alpha * acc[r]);
  }
}

// Y[j][:] += alpha * sum_{r < BQ} P[r][j] X[r][:] for j in [j0, j1): BQ values of j at a time.
inline void combine_transposed(const float* P, int64_t ldp, int64_t j0, int64_t j1, const float* X, int64_t ldx,
                               int64_t width, float* Y, int64_t ldy, float alpha) {
  for (int64_t j = j0; j < j1; j += BQ) {
    int64_t rows = std::min<int64_t>(BQ, j1 - j);
    float p[BQ][BQ];  // p[r][jj] = P[r][j + jj], zero past j1
    for (int r = 0; r < BQ; ++r)
      for (int jj = 0; jj < BQ; ++jj) p[r][jj] = jj < rows ? P[r * ldp + j + jj] : 0.0f;
    for (int64_t d = 0; d < width; d += W) {
      vec acc[BQ] = {};
      for (int r = 0; r < BQ; ++r) {
        vec x = loadu(X + r * ldx + d);
#pragma GCC unroll 8
        for (int jj = 0; jj < BQ; ++jj) acc[jj] += p[r][jj] * x;
      }
      for (int jj = 0; jj < rows; ++jj) {
        float* y = Y + (j + jj) * ldy + d;
        storeu(y, loadu(y) + alpha * acc[jj]);
      }
    }
  }
}

struct HeadLayout {
  int64_t Dp, Tp, rows;  // padded head width, padded key count (columns of Kt), padded query rows
  HeadLayout(int64_t T, int64_t D) : Dp(round_up(D, W)), Tp(round_up(T, W) + W), rows(round_up(T, BQ) + BQ) {}
};

// Rows t of one head of x (element strides sn, st; head offset) into `out` (rows x Dp, zero padded),
// rotated when tables are given (rotate-half convention, as mx.fast.rope with traditional=False).
void gather_head(const AttentionShape& s, const float* x, int64_t sn, int64_t st, int64_t offset, int64_t n,
                 bool rotate, const HeadLayout& L, float* out) {
  // Columns past D take part in dot products, and rows up to the end of the last query block are
  // weighted by zeros (0 * garbage could be NaN): those are zeroed. The rest is left as it is: it only
  // feeds scores that are masked or discarded (for MEGABYTE's local stage, 9 positions and thousands
  // of heads, zeroing whole buffers cost more than the arithmetic).
  std::memset(out + s.T * L.Dp, 0, (round_up(s.T, BQ) - s.T) * L.Dp * sizeof(float));
  int64_t half = s.D / 2;
  for (int64_t t = 0; t < s.T; ++t) {
    const float* row = x + n * sn + t * st + offset;
    float* o = out + t * L.Dp;
    if (L.Dp > s.D) std::memset(o + s.D, 0, (L.Dp - s.D) * sizeof(float));
    if (rotate) {
      const float* c = s.cos + t * half;
      const float* sn_ = s.sin + t * half;
      for (int64_t i = 0; i < half; ++i) {
        o[i] = row[i] * c[i] - row[i + half] * sn_[i];
        o[i + half] = row[i] * sn_[i] + row[i + half] * c[i];
      }
    } else {
      copy(o, row, s.D);
    }
  }
}

// A gradient with respect to rotated rows, back to the unrotated ones (the inverse rotation), written
// to row t of a head of `out` (element strides sn, st).
void scatter_head(const AttentionShape& s, const float* g, bool rotate, const HeadLayout& L, float* out, int64_t sn,
                  int64_t st, int64_t offset, int64_t n) {
  int64_t half = s.D / 2;
  for (int64_t t = 0; t < s.T; ++t) {
    const float* row = g + t * L.Dp;
    float* o = out + n * sn + t * st + offset;
    if (rotate) {
      const float* c = s.cos + t * half;
      const float* sn_ = s.sin + t * half;
      for (int64_t i = 0; i < half; ++i) {
        o[i] = row[i] * c[i] + row[i + half] * sn_[i];
        o[i + half] = row[i + half] * c[i] - row[i] * sn_[i];
      }
    } else {
      copy(o, row, s.D);
    }
  }
}

// (T rows of Dp) -> (Dp x Tp). Score blocks read up to W - 1 columns past T: they hold whatever was
// there, and the scores they make are masked (selected away, never multiplied).
void transpose(const float* rows, int64_t T, const HeadLayout& L, float* out) {
  for (int64_t d = 0; d < L.Dp; ++d) {
    float* o = out + d * L.Tp;
    for (int64_t t = 0; t < T; ++t) o[t] = rows[t * L.Dp + d];
  }
}

inline float horizontal_max(vec v) {
  float m = v[0];
  for (int c = 1; c < W; ++c) m = std::max(m, v[c]);
  return m;
}

inline float horizontal_sum(vec v) {
  float total = 0.0f;
  for (int c = 0; c < W; ++c) total += v[c];
  return total;
}

// The columns j0, j0 + 1, ... of a block, and which of them query i may see (j <= i, within the window).
inline ivec visible_columns(int64_t j0, int64_t i, int64_t window) {
  ivec j = ivec{} + static_cast<int32_t>(j0);
  for (int c = 0; c < W; ++c) j[c] += c;
  ivec seen = j <= static_cast<int32_t>(i);
  if (window > 0) seen &= j > static_cast<int32_t>(i - window);
  return seen;
}

// Row i's scores p[lo, hi) (raw q.k, written by `scores` up to a whole number of blocks) become its
// softmax probabilities; returns the logsumexp of the scaled, visible scores.
inline float softmax_row(float* p, int64_t lo, int64_t hi, int64_t i, int64_t window, float scale) {
  vec m = vec{} - INFINITY;
  for (int64_t j = lo; j < hi; j += W) {
    vec v = visible_columns(j, i, window) ? loadu(p + j) * scale : vec{} - INFINITY;
    storeu(p + j, v);
    m = vmax(m, v);
  }
  float top = horizontal_max(m);
  vec total = {};
  for (int64_t j = lo; j < hi; j += W) {
    vec e = exp_approx(loadu(p + j) - top);  // masked: exp(-inf) = 0
    storeu(p + j, e);
    total += e;
  }
  float sum = horizontal_sum(total), inverse = 1.0f / sum;
  for (int64_t j = lo; j < hi; j += W) storeu(p + j, loadu(p + j) * inverse);
  return top + std::log(sum);
}

// Row i's probabilities from its scores and logsumexp, and dS = P (dP - delta) from dP in `ds`.
inline void softmax_row_grad(float* p, float* ds, int64_t lo, int64_t hi, int64_t i, int64_t window, float scale,
                             float lse, float delta) {
  for (int64_t j = lo; j < hi; j += W) {
    ivec seen = visible_columns(j, i, window);
    vec e = seen ? exp_approx(loadu(p + j) * scale - lse) : vec{};
    storeu(p + j, e);
    storeu(ds + j, seen ? e * (loadu(ds + j) - delta) : vec{});
  }
}

// The keys query block [i0, i0 + BQ) may see: [lo, hi).
inline void key_range(const AttentionShape& s, int64_t i0, int64_t bq, int64_t& lo, int64_t& hi) {
  hi = i0 + bq;
  lo = s.window > 0 ? std::max<int64_t>(0, i0 - s.window + 1) : 0;
}

inline bool visible(const AttentionShape& s, int64_t i, int64_t j) {
  return j <= i && (s.window <= 0 || j > i - s.window);
}

int64_t attention_scratch(int64_t T, int64_t D, bool grad) {
  HeadLayout L(T, D);
  int64_t rows = L.rows * L.Dp, transposed = L.Dp * L.Tp, block = BQ * L.Tp;
  return grad ? 6 * rows + 2 * transposed + 2 * block : 3 * rows + transposed + block + BQ * L.Dp;
}

void attention(const AttentionShape& s, const float* q, const float* kv, float* out, float* lse, int64_t n, int64_t h,
               float* scratch) {
  HeadLayout L(s.T, s.D);
  bool rotate = s.cos != nullptr;
  float* Q = scratch;
  float* K = Q + L.rows * L.Dp;
  float* V = K + L.rows * L.Dp;
  float* Kt = V + L.rows * L.Dp;
  float* P = Kt + L.Dp * L.Tp;
  gather_head(s, q, s.q_sn, s.q_st, h * s.D, n, rotate, L, Q);
  gather_head(s, kv, s.kv_sn, s.kv_st, h * s.D, n, rotate, L, K);
  gather_head(s, kv, s.kv_sn, s.kv_st, (s.H + h) * s.D, n, false, L, V);
  transpose(K, s.T, L, Kt);
  float* O = P + BQ * L.Tp;
  for (int64_t i0 = 0; i0 < s.T; i0 += BQ) {
    int64_t bq = std::min<int64_t>(BQ, s.T - i0), lo, hi;
    key_range(s, i0, bq, lo, hi);
    scores(Q + i0 * L.Dp, L.Dp, Kt, L.Tp, L.Dp, lo, hi, P, L.Tp);
    for (int64_t r = 0; r < BQ; ++r) {
      float* p = P + r * L.Tp;
      if (r < bq)
        lse[(n * s.H + h) * s.T + i0 + r] = softmax_row(p, lo, hi, i0 + r, s.window, s.scale);
      else
        std::fill(p + lo, p + hi, 0.0f);
    }
    combine(P, L.Tp, lo, hi, V, L.Dp, L.Dp, O, L.Dp, 1.0f);
    for (int64_t r = 0; r < bq; ++r)
      copy(out + ((n * s.T + i0 + r) * s.H + h) * s.D, O + r * L.Dp, s.D);
  }
}

void attention_grad(const AttentionShape& s, const float* q, const float* kv, const float* out, const float* lse,
                    const float* dout, float* dq, float* dkv, int64_t n, int64_t h, float* scratch) {
  HeadLayout L(s.T, s.D);
  bool rotate = s.cos != nullptr;
  int64_t rows = L.rows * L.Dp;
  float* Q = scratch;
  float* K = Q + rows;
  float* dO = K + rows;
  float* dQ = dO + rows;
  float* dK = dQ + rows;
  float* dV = dK + rows;
  float* Kt = dV + rows;
  float* Vt = Kt + L.Dp * L.Tp;
  float* P = Vt + L.Dp * L.Tp;
  float* dS = P + BQ * L.Tp;
  gather_head(s, q, s.q_sn, s.q_st, h * s.D, n, rotate, L, Q);
  gather_head(s, kv, s.kv_sn, s.kv_st, h * s.D, n, rotate, L, K);
  gather_head(s, kv, s.kv_sn, s.kv_st, (s.H + h) * s.D, n, false, L, dV);  // V, borrowing dV's room
  transpose(K, s.T, L, Kt);
  transpose(dV, s.T, L, Vt);
  int64_t contiguous = s.H * s.D;  // out and dout are (N, T, H, D)
  gather_head(s, dout, s.T * contiguous, contiguous, h * s.D, n, false, L, dO);
  std::memset(dK, 0, s.T * L.Dp * sizeof(float));
  std::memset(dV, 0, s.T * L.Dp * sizeof(float));
  for (int64_t i0 = 0; i0 < s.T; i0 += BQ) {
    int64_t bq = std::min<int64_t>(BQ, s.T - i0), lo, hi;
    key_range(s, i0, bq, lo, hi);
    scores(Q + i0 * L.Dp, L.Dp, Kt, L.Tp, L.Dp, lo, hi, P, L.Tp);
    scores(dO + i0 * L.Dp, L.Dp, Vt, L.Tp, L.Dp, lo, hi, dS, L.Tp);  // dP = dO V^T
    for (int64_t r = 0; r < BQ; ++r) {
      float* p = P + r * L.Tp;
      float* ds = dS + r * L.Tp;
      int64_t i = i0 + r;
      if (r >= bq) {
        std::fill(p + lo, p + hi, 0.0f);
        std::fill(ds + lo, ds + hi, 0.0f);
        continue;
      }
      const float* o = out + ((n * s.T + i) * s.H + h) * s.D;
      float delta = dot(o, dO + i * L.Dp, s.D);  // sum_d dO O: the softmax's own term
      softmax_row_grad(p, ds, lo, hi, i, s.window, s.scale, lse[(n * s.H + h) * s.T + i], delta);
    }
    combine(dS, L.Tp, lo, hi, K, L.Dp, L.Dp, dQ + i0 * L.Dp, L.Dp, s.scale);
    combine_transposed(dS, L.Tp, lo, hi, Q + i0 * L.Dp, L.Dp, L.Dp, dK, L.Dp, s.scale);
    combine_transposed(P, L.Tp, lo, hi, dO + i0 * L.Dp, L.Dp, L.Dp, dV, L.Dp, 1.0f);
  }
  scatter_head(s, dQ, rotate, L, dq, s.dq_sn, s.dq_st, h * s.D, n);
  scatter_head(s, dK, rotate, L, dkv, s.dkv_sn, s.dkv_st, h * s.D, n);
  scatter_head(s, dV, false, L, dkv, s.dkv_sn, s.dkv_st, (s.H + h) * s.D, n);
}

double sum_squares(const float* x, int64_t n) {
  return static_cast<double>(dot(x, x, n));
}

void adamw(const float* __restrict p, const float* __restrict g, const float* __restrict m, const float* __restrict v,
           float* __restrict p_out, float* __restrict m_out, float* __restrict v_out, int64_t n, float lr, float b1,
           float b2, float eps, float decay, float clip) {
  float keep = 1.0f - lr * decay;
  for (int64_t i = 0; i < n; ++i) {
    float grad = g[i] * clip;
    float mi = b1 * m[i] + (1.0f - b1) * grad;
    float vi = b2 * v[i] + (1.0f - b2) * (grad * grad);
    m_out[i] = mi;
    v_out[i] = vi;
    p_out[i] = p[i] * keep - lr * mi / (std::sqrt(vi) + eps);
  }
}

}  // namespace

const Kernels& kernels() {
  static const Kernels table{
#define STRINGIFY2(x) #x
#define STRINGIFY(x) STRINGIFY2(x)
      STRINGIFY(KERNEL_ISA), gelu, gelu_grad, rms_norm, rms_norm_grad, unshift, layer_norm, layer_norm_grad, cross_entropy,
      cross_entropy_grad, attention, attention_grad, attention_scratch, sum_squares, adamw};
  return table;
}

}  // namespace mlx_megabyte::KERNEL_ISA

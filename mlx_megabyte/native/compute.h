// The arithmetic of the native CPU kernels, on raw float32 buffers, one thread's share at a time.
//
// compute.cpp is compiled once per instruction set (AVX-512, AVX2 + FMA, and the baseline of the
// target), each copy in its own namespace; module.cpp picks the best one the CPU supports at load
// time, so a build runs on any machine of its architecture. Threading is module.cpp's business.
#pragma once

#include <cstdint>

namespace mlx_megabyte {

// Self-attention of T positions over themselves: causal, optionally windowed and rotary.
struct AttentionShape {
  int64_t N, T, H, D;          // sequences, positions, heads, head width
  int64_t q_sn, q_st;          // element strides of q (N, T, H, D) over n and t (h: D, d: 1)
  int64_t kv_sn, kv_st;        // of kv (N, T, 2, H, D): keys at h * D, values at (H + h) * D
  int64_t dq_sn, dq_st;        // of the gradients written
  int64_t dkv_sn, dkv_st;
  float scale;
  int64_t window;              // a query sees at most this many positions, its own included; 0: all
  const float* cos = nullptr;  // rotary tables (T, D / 2), or null
  const float* sin = nullptr;
};

struct Kernels {
  const char* isa;
  // y = x * Phi(x) (torch's exact-erf nn.GELU), and its gradient g * GELU'(x)
  void (*gelu)(const float* x, float* y, int64_t n);
  void (*gelu_grad)(const float* x, const float* g, float* dx, int64_t n);
  // lucidrains' RMSNorm, y = z / max(scale * |z|, eps) * w, of rows [row0, row1) of (rows, D); with
  // `shift` z is x token-shifted (the second half of the features from the previous row of the same
  // T-row sequence, zeros at its start). `inverse` gets 1 / max(scale * |z|, eps) per row.
  void (*rms_norm)(const float* x, const float* w, float* y, float* inverse, int64_t row0, int64_t row1,
                   int64_t T, int64_t D, bool shift, float scale, float eps);
  // The gradient with respect to z (rows [row0, row1)) and these rows' share of dw (D floats, added to).
  void (*rms_norm_grad)(const float* x, const float* w, const float* inverse, const float* dy, float* dz,
                        float* dw, int64_t row0, int64_t row1, int64_t T, int64_t D, bool shift, float scale,
                        float eps);
  // dx from dz: undoes the token shift (dx[r] = dz[r][:half], dz[r + 1][half:] within a sequence).
  void (*unshift)(const float* dz, float* dx, int64_t row0, int64_t row1, int64_t T, int64_t D);
  // torch's LayerNorm of rows [row0, row1) of (rows, D): y = (x - mean) * rstd * w + b, rstd =
  // 1 / sqrt(biased variance + eps); mean and rstd per row are kept for the gradient.
  void (*layer_norm)(const float* x, const float* w, const float* b, float* y, float* mean, float* rstd,
                     int64_t row0, int64_t row1, int64_t D, float eps);
  // Its gradient for those rows, and their shares of dw and db (D floats each, added to).
  void (*layer_norm_grad)(const float* x, const float* w, const float* mean, const float* rstd, const float* dy,
                          float* dx, float* dw, float* db, int64_t row0, int64_t row1, int64_t D);
  // Per row of (rows, V) logits: loss = logsumexp - logit[target], and the logsumexp.
  void (*cross_entropy)(const float* logits, const int32_t* targets, float* loss, float* lse, int64_t row0,
                        int64_t row1, int64_t V);
  // dlogits = g * (softmax - onehot(target)).
  void (*cross_entropy_grad)(const float* logits, const int32_t* targets, const float* lse, const float* g,
                             float* dlogits, int64_t row0, int64_t row1, int64_t V);
  // One head (n, h): out (N, T, H, D) and lse (N, H, T); `scratch` holds attention_scratch floats.
  void (*attention)(const AttentionShape& s, const float* q, const float* kv, float* out, float* lse,
                    int64_t n, int64_t h, float* scratch);
  // One head's gradients: dq and dkv (strides dq_*, dkv_*); out and dout are (N, T, H, D).
  void (*attention_grad)(const AttentionShape& s, const float* q, const float* kv, const float* out,
                         const float* lse, const float* dout, float* dq, float* dkv, int64_t n, int64_t h,
                         float* scratch);
  int64_t (*attention_scratch)(int64_t T, int64_t D, bool grad);
  // Sum of squares of n floats.
  double (*sum_squares)(const float* x, int64_t n);
  // AdamW on n elements (MLX's AdamW, no bias correction), the gradient multiplied by `clip` first;
  // `decay` is the weight decay (0 for parameters that are not decayed).
  void (*adamw)(const float* p, const float* g, const float* m, const float* v, float* p_out, float* m_out,
                float* v_out, int64_t n, float lr, float b1, float b2, float eps, float decay, float clip);
};

namespace avx512 { const Kernels& kernels(); }
namespace avx2 { const Kernels& kernels(); }
namespace baseline { const Kernels& kernels(); }

}  // namespace mlx_megabyte

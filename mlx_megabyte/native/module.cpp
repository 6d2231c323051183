// mlx_megabyte._native: fused, threaded CPU kernels as MLX primitives (forward and backward are
// separate primitives; kernels.py pairs them with mx.custom_function).
//
// Why: on x86 Linux, MLX's CPU elementwise kernels run scalar on one thread, and batched matmuls of
// small heads are one BLAS call per head; a training step of the `small` preset spent ~85% of its time
// outside its matmuls. These primitives run each hot spot in one pass over memory, vectorised (the
// best instruction set of compute.cpp's builds) and split over the machine's cores.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>
#include <sched.h>

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "compute.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/mlx.h"
#include "mlx/primitives.h"
#include "mlx/version.h"

namespace nb = nanobind;
using namespace mlx::core;

namespace mlx_megabyte {
namespace {

// --- which build of compute.cpp -----------------------------------------------------------------

// The best build the CPU runs, or a lower one named by MLX_MEGABYTE_ISA (never a higher one): the
// builds differ in their vector width and blocking, and the tests run every build a machine can.
const Kernels& select_kernels() {
  const char* cap = std::getenv("MLX_MEGABYTE_ISA");
  std::string limit = cap ? cap : "";
#if defined(__x86_64__) && defined(MLX_MEGABYTE_X86)
  __builtin_cpu_init();
  if (limit != "avx2" && limit != "baseline" && __builtin_cpu_supports("avx512f") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return avx512::kernels();
  if (limit != "baseline" && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return avx2::kernels();
#endif
  return baseline::kernels();
}

const Kernels& K() {
  static const Kernels& chosen = select_kernels();
  return chosen;
}

// --- threads ----------------------------------------------------------------------------------------
//
// A pool of (cores - 1) workers; the calling thread (MLX's CPU stream) takes part. One parallel loop at
// a time: MLX runs one CPU stream per thread, and a second caller waits for the first. Tasks are taken
// from a shared counter, and the caller waits only for workers that took one: on a busy machine a worker
// that is not scheduled in time finds the loop done and does nothing, instead of the caller waiting a
// time slice for it.

int default_threads() {
  if (const char* env = std::getenv("MLX_MEGABYTE_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

class Pool {
 public:
  static Pool& get() {
    static Pool* pool = new Pool(default_threads());  // never destroyed: workers may outlive statics
    return *pool;
  }

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void run(int64_t tasks, const std::function<void(int64_t)>& task) {
    if (tasks <= 0) return;
    if (tasks == 1 || workers_.empty()) {
      for (int64_t i = 0; i < tasks; ++i) task(i);
      return;
    }
    std::lock_guard<std::mutex> one_at_a_time(call_);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &task;
      next_.store(0);
      completed_.store(0);
      total_ = tasks;
      ++generation_;
    }
    wake_.notify_all();
    work(task);
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return completed_.load() == total_ && active_ == 0; });
    job_ = nullptr;  // a worker waking up late sees there is nothing to do
  }

 private:
  explicit Pool(int threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { loop(); });
  }

  void work(const std::function<void(int64_t)>& task) {
    for (int64_t i; (i = next_.fetch_add(1)) < total_;) {
      task(i);
      if (completed_.fetch_add(1) + 1 == total_) {
        std::lock_guard<std::mutex> lock(mutex_);
        done_.notify_all();
      }
    }
  }

  void loop() {
    uint64_t seen = 0;
    while (true) {
      const std::function<void(int64_t)>* job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (job_ == nullptr || next_.load() >= total_) continue;
        job = job_;
        ++active_;
      }
      work(*job);
      std::lock_guard<std::mutex> lock(mutex_);
      --active_;
      done_.notify_all();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex call_, mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int64_t)>* job_ = nullptr;
  std::atomic<int64_t> next_{0}, completed_{0};
  int64_t total_ = 0;
  int active_ = 0;
  uint64_t generation_ = 0;
};

// Split [0, n) into pieces of at least `grain` for the pool; f(begin, end).
void parallel_range(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& f) {
  int64_t pieces = std::max<int64_t>(1, std::min<int64_t>(n / std::max<int64_t>(grain, 1), 4 * Pool::get().size()));
  int64_t step = (n + pieces - 1) / pieces;
  Pool::get().run(pieces, [&](int64_t i) {
    int64_t begin = i * step, end = std::min(n, begin + step);
    if (begin < end) f(begin, end);
  });
}

// Rows [0, rows) in pieces over the pool for a gradient that also sums over rows (a norm's weight):
// f(begin, end, share) adds its rows' part of each of the sums to `share` (sums.size() zeroed runs of D
// floats); the pieces' shares are then added in a fixed order, so any number of threads gives the same
// sums.
void rows_with_sums(int64_t rows, int64_t D, std::initializer_list<float*> sums,
                    const std::function<void(int64_t, int64_t, float*)>& f) {
  int64_t pieces = std::max<int64_t>(1, std::min<int64_t>(rows, 4 * Pool::get().size()));
  int64_t step = (rows + pieces - 1) / pieces, width = static_cast<int64_t>(sums.size()) * D;
  std::vector<float> partial(pieces * width, 0.0f);
  Pool::get().run(pieces, [&](int64_t i) {
    int64_t begin = i * step, end = std::min(rows, begin + step);
    if (begin < end) f(begin, end, partial.data() + i * width);
  });
  int64_t k = 0;
  for (float* out : sums) {
    for (int64_t d = 0; d < D; ++d) {
      double total = 0.0;
      for (int64_t i = 0; i < pieces; ++i) total += partial[i * width + k * D + d];
      out[d] = static_cast<float>(total);
    }
    ++k;
  }
}

// --- primitives -------------------------------------------------------------------------------------

void allocate(std::vector<array>& outputs) {
  for (auto& out : outputs) out.set_data(allocator::malloc(out.nbytes()));
}

template <class F>
void dispatch(Stream stream, const std::vector<array>& inputs, std::vector<array>& outputs, F&& body) {
  auto& encoder = cpu::get_command_encoder(stream);
  for (auto& a : inputs) encoder.set_input_array(a);
  for (auto& a : outputs) encoder.set_output_array(a);
  std::vector<array> in, out;
  for (auto& a : inputs) in.push_back(array::unsafe_weak_copy(a));
  for (auto& a : outputs) out.push_back(array::unsafe_weak_copy(a));
  encoder.dispatch([in = std::move(in), out = std::move(out), body = std::forward<F>(body)]() mutable { body(in, out); });
}

const float* f32(const array& a) { return a.data<float>(); }
float* f32(array& a) { return a.data<float>(); }

class NativePrimitive : public Primitive {
 public:
  using Primitive::Primitive;
  void eval_gpu(const std::vector<array>&, std::vector<array>&) override {
    throw std::runtime_error(std::string(name()) + ": the native kernels run on the CPU only");
  }
};

class Gelu : public NativePrimitive {
 public:
  using NativePrimitive::NativePrimitive;
  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override {
    allocate(outputs);
    dispatch(stream(), inputs, outputs, [](auto& in, auto& out) {
      const float* x = f32(in[0]);
      float* y = f32(out[0]);
      parallel_range(in[0].size(), 1 << 15, [&](int64_t b, int64_t e) { K().gelu(x + b, y + b, e - b); });
    });
  }
  const char* name() const override { return "MegabyteGelu"; }
  bool is_equivalent(const Primitive&) const override { return true; }
  std::vector<Shape> output_shapes(const std::vector<array>& in) override { return {in[0].shape()}; }
};

class GeluGrad : public NativePrimitive {
 public:
  using NativePrimitive::NativePrimitive;
  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override {
    allocate(outputs);
    dispatch(stream(), inputs, outputs, [](auto& in, auto& out) {
      const float *x = f32(in[0]), *g = f32(in[1]);
      float* dx = f32(out[0]);
      parallel_range(in[0].size(), 1 << 15,
                     [&](int64_t b, int64_t e) { K().gelu_grad(x + b, g + b, dx + b, e - b); });
    });
  }
  const char* name() const override { return "MegabyteGeluGrad"; }
  bool is_equivalent(const Primitive&) const override { return true; }
  std::vector<Shape> output_shapes(const std::vector<array>& in) override { return {in[0].shape()}; }
};

struct NormSettings {
  int64_t T;  // rows per sequence (token shift stays inside one)
  bool shift;
  float scale, eps;
  bool operator==(const NormSettings& o) const {
    return T == o.T && shift == o.shift && scale == o.scale && eps == o.eps;
  }
};

class RmsNorm : public NativePrimitive {
 public:
  RmsNorm(Stream s, NormSettings n) : NativePrimitive(s), n_(n) {}
  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override {
    allocate(outputs);
    dispatch(stream(), inputs, outputs, [n = n_](auto& in, auto& out) {
      int64_t D = in[0].shape(-1), rows = in[0].size() / D;
      const float *x = f32(in[0]), *w = f32(in[1]);
      float *y = f32(out[0]), *inverse = f32(out[1]);
      parallel_range(rows, std::max<int64_t>(1, (1 << 14) / D), [&](int64_t b, int64_t e) {
        K().rms_norm(x, w, y, inverse, b, e, n.T, D, n.shift, n.scale, n.eps);
      });
    });
  }
  const char* name() const override { return "MegabyteRmsNorm"; }
  bool is_equivalent(const Primitive& o) const override { return n_ == static_cast<const RmsNorm&>(o).n_; }
  std::vector<Shape> output_shapes(const std::vector<array>& in) override {
    Shape rows(in[0].shape().begin(), in[0].shape().end() - 1);
    return {in[0].shape(), rows};
  }

 private:
  NormSettings n_;
};

class RmsNormGrad : public NativePrimitive {
 public:
  RmsNormGrad(Stream s, NormSettings n) : NativePrimitive(s), n_(n) {}
  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override {
    allocate(outputs);
    dispatch(stream(), inputs, outputs, [n = n_](auto& in, auto& out) {
      int64_t D = in[0].shape(-1), rows = in[0].size() / D;
      const float *x = f32(in[0]), *w = f32(in[1]), *inverse = f32(in[2]), *dy = f32(in[3]);
      float *dx = f32(out[0]), *dw = f32(out[1]);
      // With a shift, row r's input gradient needs row r + 1's: first every dz, then dx from them.
      std::vector<float> dz_buffer(n.shift ? rows * D : 0);
      float* dz = n.shift ? dz_buffer.data() : dx;
      rows_with_sums(rows, D, {dw}, [&](int64_t b, int64_t e, float* share) {
        K().rms_norm_grad(x, w, inverse, dy, dz, share, b, e, n.T, D, n.shift, n.scale, n.eps);
      });
      if (n.shift)
        parallel_range(rows, std::max<int64_t>(1, (1 << 14) / D),
                       [&](int64_t b, int64_t e) { K().unshift(dz, dx, b, e, n.T, D); });
    });
  }
  const char* name() const override { return "MegabyteRmsNormGrad"; }
  bool is_equivalent(const Primitive& o) const override { return n_ == static_cast<const RmsNormGrad&>(o).n_; }
  std::vector<Shape> output_shapes(const std::vector<array>& in) override { return {in[0].shape(), in[1].shape()}; }

 private:
  NormSettings n_;
};

class LayerNorm : public NativePrimitive {
 public:
  LayerNorm(Stream s, float eps) : NativePrimitive(s), eps_(eps) {}
  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override {
    allocate(outputs);
    dispatch(stream(), inputs, outputs, [eps = eps_](auto& in, auto& out) {
      int64_t D = in[0].shape(-1), rows = in[0].size() / D;
      const float *x = f32(in[0]), *w = f32(in[1]), *b = f32(in[2]);
      float *y = f32(out[0]), *mean = f32(out[1]), *rstd = f32(out[2]);
      parallel_range(rows, std::max<int64_t>(1, (1 << 14) / D),
                     [&](int64_t r0, int64_t r1) { K().layer_norm(x, w, b, y, mean, rstd, r0, r1, D, eps); });
    });
  }
  const char* name() const override { return "MegabyteLayerNorm"; }
  bool is_equivalent(const Primitive& o) const override { return eps_ == static_cast<const LayerNorm&>(o).eps_; }
  std::vector<Shape> output_shapes(const std::vector<array>& in) override {
    Shape rows(in[0].shape().begin(), in[0].shape().end() - 1);
    return {in[0].shape(), rows, rows};
  }

 private:
  float eps_;
};

class LayerNormGrad : public NativePrimitive {
 public:
  using NativePrimitive::NativePrimitive;
  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override {
    allocate(outputs);
    dispatch(stream(), inputs, outputs, [](auto& in, auto& out) {
      int64_t D = in[0].shape(-1), rows = in[0].size() / D;
      const float *x = f32(in[0]), *w = f32(in[1]), *mean = f32(in[2]), *rstd = f32(in[3]), *dy = f32(in[4]);
      float *dx = f32(out[0]), *dw = f32(out[1]), *db = f32(out[2]);
      rows_with_sums(rows, D, {dw, db}, [&](int64_t r0, int64_t r1, float* share) {
        K().layer_norm_grad(x, w, mean, rstd, dy, dx, share, share + D, r0, r1, D);
      });
    });
  }
  const char* name() const override { return "MegabyteLayerNormGrad"; }
  bool is_equivalent(const Primitive&) const override { return true; }
  std::vector<Shape> output_shapes(const std::vector<array>& in) override {
    return {in[0].shape(), in[1].shape(), in[1].shape()};
  }
};

class CrossEntropy : public NativePrimitive {
 public:
  using NativePrimitive::NativePrimitive;
  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override {
    allocate(outputs);
    dispatch(stream(), inputs, outputs, [](auto& in, auto& out) {
      int64_t V = in[0].shape(-1), rows = in[0].size() / V;
      const float* logits = f32(in[0]);
      const int32_t* targets = in[1].template data<int32_t>();
      float *loss = f32(out[0]), *lse = f32(out[1]);
      parallel_range(rows, std::max<int64_t>(1, (1 << 14) / V),
                     [&](int64_t b, int64_t e) { K().cross_entropy(logits, targets, loss, lse, b, e, V); });
    });
  }
  const char* name() const override { return "MegabyteCrossEntropy"; }
  bool is_equivalent(const Primitive&) const override { return true; }
  std::vector<Shape> output_shapes(const std::vector<array>& in) override { return {in[1].shape(), in[1].shape()}; }
};

class CrossEntropyGrad : public NativePrimitive {
 public:
  using NativePrimitive::NativePrimitive;
  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override {
    allocate(outputs);
    dispatch(stream(), inputs, outputs, [](auto& in, auto& out) {
      int64_t V = in[0].shape(-1), rows = in[0].size() / V;
      const float *logits = f32(in[0]), *lse = f32(in[2]), *g = f32(in[3]);
      const int32_t* targets = in[1].template data<int32_t>();
      float* dlogits = f32(out[0]);
      parallel_range(rows, std::max<int64_t>(1, (1 << 14) / V), [&](int64_t b, int64_t e) {
        K().cross_entropy_grad(logits, targets, lse, g, dlogits, b, e, V);
      });
    });
  }
  const char* name() const override { return "MegabyteCrossEntropyGrad"; }
  bool is_equivalent(const Primitive&) const override { return true; }
  std::vector<Shape> output_shapes(const std::vector<array>& in) override { return {in[0].shape()}; }
};

struct AttentionSettings {
  int64_t heads, window;
  float scale;
  bool rotary;
  bool operator==(const AttentionSettings& o) const {
    return heads == o.heads && window == o.window && scale == o.scale && rotary == o.rotary;
  }
};

// f(n, h) for every head of every sequence, over the pool. With sequences enough to keep every thread
// busy, a task is one sequence's heads: its rows are read by one core, in order (task per head, two
// cores read the same rows, and MEGABYTE's local attention ran 1.x times slower).
void for_each_head(const AttentionShape& s, const std::function<void(int64_t, int64_t)>& f) {
  if (s.N >= 2 * Pool::get().size()) {
    Pool::get().run(s.N, [&](int64_t n) {
      for (int64_t h = 0; h < s.H; ++h) f(n, h);
    });
  } else {
    Pool::get().run(s.N * s.H, [&](int64_t task) { f(task / s.H, task % s.H); });
  }
}

// The rotary tables (T, D / 2) of mx.fast.rope (base 10000, rotate-half), made once per shape.
const std::vector<float>* rotary_tables(int64_t T, int64_t D) {
  static std::mutex mutex;
  static std::map<std::pair<int64_t, int64_t>, std::vector<float>> cache;  // cos then sin
  std::lock_guard<std::mutex> lock(mutex);
  auto& tables = cache[{T, D}];
  if (tables.empty()) {
    int64_t half = D / 2;
    tables.resize(2 * T * half);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < half; ++i) {
        double angle = t * std::pow(10000.0, -2.0 * i / D);
        tables[t * half + i] = static_cast<float>(std::cos(angle));
        tables[T * half + t * half + i] = static_cast<float>(std::sin(angle));
      }
  }
  return &tables;
}

// qkv (N, T, 3 * H * D), any strides with the last axis contiguous: q at 0, kv at H * D. The gradient is
// written contiguously in the same layout.
AttentionShape shape_of(const AttentionSettings& a, const array& qkv) {
  AttentionShape s;
  s.N = qkv.shape(0);
  s.T = qkv.shape(1);
  s.H = a.heads;
  s.D = qkv.shape(2) / (3 * a.heads);
  s.q_sn = s.kv_sn = qkv.strides()[0];
  s.q_st = s.kv_st = qkv.strides()[1];
  s.dq_st = s.dkv_st = 3 * s.H * s.D;
  s.dq_sn = s.dkv_sn = s.T * s.dq_st;
  s.scale = a.scale;
  s.window = a.window;
  if (a.rotary) {
    const auto* tables = rotary_tables(s.T, s.D);
    s.cos = tables->data();
    s.sin = tables->data() + s.T * (s.D / 2);
  }
  return s;
}

void check_last_axis(const array& a) {
  if (a.strides().back() != 1 && a.shape().back() > 1)
    throw std::runtime_error("native attention: qkv must be contiguous in its last axis");
}

class Attention : public NativePrimitive {
 public:
  Attention(Stream s, AttentionSettings a) : NativePrimitive(s), a_(a) {}
  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override {
    allocate(outputs);
    dispatch(stream(), inputs, outputs, [a = a_](auto& in, auto& out) {
      check_last_axis(in[0]);
      AttentionShape s = shape_of(a, in[0]);
      const float* q = f32(in[0]);
      const float* kv = q + s.H * s.D;
      float *o = f32(out[0]), *lse = f32(out[1]);
      int64_t room = K().attention_scratch(s.T, s.D, false);
      for_each_head(s, [&](int64_t n, int64_t h) {
        thread_local std::vector<float> scratch;
        if (static_cast<int64_t>(scratch.size()) < room) scratch.resize(room);
        K().attention(s, q, kv, o, lse, n, h, scratch.data());
      });
    });
  }
  const char* name() const override { return "MegabyteAttention"; }
  bool is_equivalent(const Primitive& o) const override { return a_ == static_cast<const Attention&>(o).a_; }
  std::vector<Shape> output_shapes(const std::vector<array>& in) override {
    Shape out = in[0].shape();
    out.back() /= 3;
    return {out, {in[0].shape(0), static_cast<int>(a_.heads), in[0].shape(1)}};
  }

 private:
  AttentionSettings a_;
};

class AttentionGrad : public NativePrimitive {
 public:
  AttentionGrad(Stream s, AttentionSettings a) : NativePrimitive(s), a_(a) {}
  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override {
    allocate(outputs);
    dispatch(stream(), inputs, outputs, [a = a_](auto& in, auto& out) {
      check_last_axis(in[0]);
      AttentionShape s = shape_of(a, in[0]);
      const float* q = f32(in[0]);
      const float* kv = q + s.H * s.D;
      const float *o = f32(in[1]), *lse = f32(in[2]), *dout = f32(in[3]);
      float* dq = f32(out[0]);
      float* dkv = dq + s.H * s.D;
      int64_t room = K().attention_scratch(s.T, s.D, true);
      for_each_head(s, [&](int64_t n, int64_t h) {
        thread_local std::vector<float> scratch;
        if (static_cast<int64_t>(scratch.size()) < room) scratch.resize(room);
        K().attention_grad(s, q, kv, o, lse, dout, dq, dkv, n, h, scratch.data());
      });
    });
  }
  const char* name() const override { return "MegabyteAttentionGrad"; }
  bool is_equivalent(const Primitive& o) const override { return a_ == static_cast<const AttentionGrad&>(o).a_; }
  std::vector<Shape> output_shapes(const std::vector<array>& in) override { return {in[0].shape()}; }

 private:
  AttentionSettings a_;
};

struct AdamSettings {
  float b1, b2, eps, max_norm;
  std::vector<float> decay;  // per parameter
  bool operator==(const AdamSettings& o) const {
    return b1 == o.b1 && b2 == o.b2 && eps == o.eps && max_norm == o.max_norm && decay == o.decay;
  }
};

// Inputs: lr (scalar), then the P gradients, parameters, first moments and second moments; outputs: the
// gradients' global norm, then the new parameters, first and second moments. The norm is taken first
// and the gradients scaled to max_norm (clip_grad_norm's rule) inside the same pass as the update.
class AdamW : public NativePrimitive {
 public:
  AdamW(Stream s, AdamSettings a) : NativePrimitive(s), a_(std::move(a)) {}
  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override {
    allocate(outputs);
    dispatch(stream(), inputs, outputs, [a = a_](auto& in, auto& out) {
      size_t P = a.decay.size();
      float lr = f32(in[0])[0];  // evaluated already: its task ran before this one
      struct Piece { size_t k; int64_t begin, end; };
      std::vector<Piece> pieces;
      constexpr int64_t grain = 1 << 16;
      for (size_t k = 0; k < P; ++k)
        for (int64_t b = 0; b < static_cast<int64_t>(in[1 + k].size()); b += grain)
          pieces.push_back({k, b, std::min<int64_t>(b + grain, in[1 + k].size())});
      std::vector<double> squares(pieces.size());
      Pool::get().run(pieces.size(), [&](int64_t i) {
        auto& p = pieces[i];
        squares[i] = K().sum_squares(f32(in[1 + p.k]) + p.begin, p.end - p.begin);
      });
      double total = 0.0;
      for (double s : squares) total += s;
      float norm = static_cast<float>(std::sqrt(total));
      float clip = a.max_norm > 0 ? std::min(a.max_norm / (norm + 1e-6f), 1.0f) : 1.0f;
      f32(out[0])[0] = norm;
      Pool::get().run(pieces.size(), [&](int64_t i) {
        auto& p = pieces[i];
        int64_t o = p.begin;
        K().adamw(f32(in[1 + P + p.k]) + o, f32(in[1 + p.k]) + o, f32(in[1 + 2 * P + p.k]) + o,
                  f32(in[1 + 3 * P + p.k]) + o, f32(out[1 + p.k]) + o, f32(out[1 + P + p.k]) + o,
                  f32(out[1 + 2 * P + p.k]) + o, p.end - p.begin, lr, a.b1, a.b2, a.eps, a.decay[p.k], clip);
      });
    });
  }
  const char* name() const override { return "MegabyteAdamW"; }
  bool is_equivalent(const Primitive& o) const override { return a_ == static_cast<const AdamW&>(o).a_; }
  std::vector<Shape> output_shapes(const std::vector<array>& in) override {
    size_t P = a_.decay.size();
    std::vector<Shape> shapes{Shape{}};
    for (int repeat = 0; repeat < 3; ++repeat)
      for (size_t k = 0; k < P; ++k) shapes.push_back(in[1 + P + k].shape());
    return shapes;
  }

 private:
  AdamSettings a_;
};

// --- the Python functions -----------------------------------------------------------------------------

Stream cpu_stream() { return default_stream(Device::cpu); }

array as_f32(const array& a) { return contiguous(astype(a, float32)); }

array gelu(const array& x) {
  auto in = as_f32(x);
  return array(in.shape(), float32, std::make_shared<Gelu>(cpu_stream()), {in});
}

array gelu_grad(const array& x, const array& g) {
  auto in = as_f32(x);
  return array(in.shape(), float32, std::make_shared<GeluGrad>(cpu_stream()), {in, as_f32(g)});
}

std::tuple<array, array> rms_norm(const array& x, const array& w, int64_t T, bool shift, float scale, float eps) {
  auto in = as_f32(x);
  Shape rows(in.shape().begin(), in.shape().end() - 1);
  auto outs = array::make_arrays({in.shape(), rows}, {float32, float32},
                                 std::make_shared<RmsNorm>(cpu_stream(), NormSettings{T, shift, scale, eps}),
                                 {in, as_f32(w)});
  return {outs[0], outs[1]};
}

std::tuple<array, array> rms_norm_grad(const array& x, const array& w, const array& inverse, const array& dy,
                                       int64_t T, bool shift, float scale, float eps) {
  auto in = as_f32(x), weight = as_f32(w);
  auto outs = array::make_arrays({in.shape(), weight.shape()}, {float32, float32},
                                 std::make_shared<RmsNormGrad>(cpu_stream(), NormSettings{T, shift, scale, eps}),
                                 {in, weight, as_f32(inverse), as_f32(dy)});
  return {outs[0], outs[1]};
}

std::tuple<array, array, array> layer_norm(const array& x, const array& w, const array& b, float eps) {
  auto in = as_f32(x);
  Shape rows(in.shape().begin(), in.shape().end() - 1);
  auto outs = array::make_arrays({in.shape(), rows, rows}, {float32, float32, float32},
                                 std::make_shared<LayerNorm>(cpu_stream(), eps), {in, as_f32(w), as_f32(b)});
  return {outs[0], outs[1], outs[2]};
}

std::tuple<array, array, array> layer_norm_grad(const array& x, const array& w, const array& mean, const array& rstd,
                                                const array& dy) {
  auto in = as_f32(x), weight = as_f32(w);
  auto outs = array::make_arrays({in.shape(), weight.shape(), weight.shape()}, {float32, float32, float32},
                                 std::make_shared<LayerNormGrad>(cpu_stream()),
                                 {in, weight, as_f32(mean), as_f32(rstd), as_f32(dy)});
  return {outs[0], outs[1], outs[2]};
}

std::tuple<array, array> cross_entropy(const array& logits, const array& targets) {
  auto in = as_f32(logits);
  auto t = contiguous(astype(targets, int32));
  auto outs = array::make_arrays({t.shape(), t.shape()}, {float32, float32},
                                 std::make_shared<CrossEntropy>(cpu_stream()), {in, t});
  return {outs[0], outs[1]};
}

array cross_entropy_grad(const array& logits, const array& targets, const array& lse, const array& g) {
  auto in = as_f32(logits);
  return array(in.shape(), float32, std::make_shared<CrossEntropyGrad>(cpu_stream()),
               {in, contiguous(astype(targets, int32)), as_f32(lse), as_f32(g)});
}

array attention_input(const array& a) { return astype(a, float32); }

// Causal self-attention from one projection qkv (N, T, 3 * H * D): q, then keys and values (lucidrains'
// to_q and to_kv as one matmul); its gradient comes back as one array of that shape. qkv may be a strided
// view (only its last axis must be contiguous, which `astype` keeps without copying rows that are).
std::tuple<array, array> attention(const array& qkv, int64_t heads, float scale, int64_t window, bool rotary) {
  auto in = attention_input(qkv);
  Shape shape = in.shape();
  shape.back() /= 3;
  auto outs = array::make_arrays({shape, {in.shape(0), static_cast<int>(heads), in.shape(1)}}, {float32, float32},
                                 std::make_shared<Attention>(cpu_stream(), AttentionSettings{heads, window, scale, rotary}),
                                 {in});
  return {outs[0], outs[1]};
}

array attention_grad(const array& qkv, const array& out, const array& lse, const array& dout, int64_t heads,
                           float scale, int64_t window, bool rotary) {
  auto in = attention_input(qkv);
  return array(in.shape(), float32,
               std::make_shared<AttentionGrad>(cpu_stream(), AttentionSettings{heads, window, scale, rotary}),
               {in, as_f32(out), as_f32(lse), as_f32(dout)});
}

std::tuple<array, std::vector<array>, std::vector<array>, std::vector<array>> adamw(
    const array& lr, const std::vector<array>& grads, const std::vector<array>& params, const std::vector<array>& m,
    const std::vector<array>& v, const std::vector<float>& decay, float b1, float b2, float eps, float max_norm) {
  size_t P = params.size();
  if (grads.size() != P || m.size() != P || v.size() != P || decay.size() != P)
    throw std::invalid_argument("adamw: one gradient, first moment, second moment and decay per parameter");
  std::vector<array> inputs{astype(lr, float32)};
  std::vector<Shape> shapes{Shape{}};
  for (auto* group : {&grads, &params, &m, &v})
    for (auto& a : *group) inputs.push_back(as_f32(a));
  for (int repeat = 0; repeat < 3; ++repeat)
    for (auto& p : params) shapes.push_back(p.shape());
  std::vector<Dtype> types(shapes.size(), float32);
  auto outs = array::make_arrays(shapes, types,
                                 std::make_shared<AdamW>(cpu_stream(), AdamSettings{b1, b2, eps, max_norm, decay}), inputs);
  std::vector<array> new_p(outs.begin() + 1, outs.begin() + 1 + P), new_m(outs.begin() + 1 + P, outs.begin() + 1 + 2 * P),
      new_v(outs.begin() + 1 + 2 * P, outs.end());
  return {outs[0], new_p, new_m, new_v};
}

}  // namespace
}  // namespace mlx_megabyte

NB_MODULE(_native, m) {
  using namespace mlx_megabyte;
  m.doc() = "Fused, threaded CPU kernels for mlx-megabyte (see kernels.py)";
  m.def("isa", [] { return std::string(K().isa); }, "the instruction set of the kernels in use");
  m.def("threads", [] { return Pool::get().size(); }, "threads the kernels split their work over");
  m.def("mlx_version", [] {
    return std::to_string(MLX_VERSION_MAJOR) + "." + std::to_string(MLX_VERSION_MINOR) + "." + std::to_string(MLX_VERSION_PATCH);
  }, "the MLX version this module was built against");
  m.def("gelu", &gelu, nb::arg("x"));
  m.def("gelu_grad", &gelu_grad, nb::arg("x"), nb::arg("cotangent"));
  m.def("rms_norm", &rms_norm, nb::arg("x"), nb::arg("weight"), nb::arg("sequence"), nb::arg("shift"), nb::arg("scale"),
        nb::arg("eps"));
  m.def("rms_norm_grad", &rms_norm_grad, nb::arg("x"), nb::arg("weight"), nb::arg("inverse"), nb::arg("cotangent"),
        nb::arg("sequence"), nb::arg("shift"), nb::arg("scale"), nb::arg("eps"));
  m.def("layer_norm", &layer_norm, nb::arg("x"), nb::arg("weight"), nb::arg("bias"), nb::arg("eps"));
  m.def("layer_norm_grad", &layer_norm_grad, nb::arg("x"), nb::arg("weight"), nb::arg("mean"), nb::arg("rstd"),
        nb::arg("cotangent"));
  m.def("cross_entropy", &cross_entropy, nb::arg("logits"), nb::arg("targets"));
  m.def("cross_entropy_grad", &cross_entropy_grad, nb::arg("logits"), nb::arg("targets"), nb::arg("lse"),
        nb::arg("cotangent"));
  m.def("attention", &attention, nb::arg("qkv"), nb::arg("heads"), nb::arg("scale"), nb::arg("window"),
        nb::arg("rotary"));
  m.def("attention_grad", &attention_grad, nb::arg("qkv"), nb::arg("out"), nb::arg("lse"),
        nb::arg("cotangent"), nb::arg("heads"), nb::arg("scale"), nb::arg("window"), nb::arg("rotary"));
  m.def("adamw", &adamw, nb::arg("learning_rate"), nb::arg("gradients"), nb::arg("parameters"), nb::arg("m"),
        nb::arg("v"), nb::arg("decay"), nb::arg("b1"), nb::arg("b2"), nb::arg("eps"), nb::arg("max_norm"));
}

// The CPU kernel sets: Loom's own (reference) kernels, and oneDNN's primitives
// where the library was built with oneDNN (Debian libdnnl-dev 2.6). Ops that
// have a oneDNN path ask `use_onednn()` and fall back to their reference kernel
// when it says no or when oneDNN has no implementation for the case.
//
// Threads: oneDNN runs single-threaded inside each of Loom's kernel threads
// (its OpenMP team is never started), and the work is split over images in a
// way that depends only on the shapes, so results do not depend on the number
// of threads or engine workers.
#pragma once

#include <cstddef>
#include <cstdint>

namespace loom {

enum class CpuKernels { Reference = 0, OneDnn = 1 };

// The kernel set in use: LOOM_CPU_KERNELS (`onednn`, the default where built
// with it, or `reference`), read on first use; an unknown value is an error.
CpuKernels cpu_kernels();
// Switches the kernel set at run time (tests compare the two in one process).
// Asking for oneDNN in a build without it fails with LOOM_ERR_INVALID_ARGUMENT.
void set_cpu_kernels(CpuKernels k);
// True when built with oneDNN.
bool onednn_built();
// Whether oneDNN runs its AVX-512 kernels here (its effective ISA includes
// avx512_core). Only then does oneDNN 2.6 have Winograd convolutions and the
// fast nChw16c LRN backward pass.
bool onednn_avx512();
// The channel block of oneDNN's preferred convolution layouts here, which the
// executors' blocked layouts (TBlob::blocked) use: 16 (nChw16c) where oneDNN
// runs its AVX-512 kernels, 8 (nChw8c) where it runs its AVX2 ones, 0 (no
// blocked layouts) in a build without oneDNN or on an older CPU.
int onednn_block();
// Sets the block (8 or 16 in a build with oneDNN, or 0) and returns the previous one:
// the op tests run the blocked kernels with both widths on one CPU. Arrays made
// or executors bound before keep the old one, so nothing else calls it.
int set_onednn_block(int block);
// "onednn 2.6.3 (avx512_core ...)" or "reference (...)": what runs which op.
const char *cpu_kernels_describe();

// True when the oneDNN kernel set is selected.
inline bool use_onednn() { return cpu_kernels() == CpuKernels::OneDnn; }

// Whose sgemm the oneDNN kernel set runs a float32 matrix product on. Where oneDNN
// runs its AVX-512 kernels, always oneDNN's (OneDnn). Elsewhere (BySize) OpenBLAS's
// for products whose three extents are all 512 or more, oneDNN's for the others: on
// AVX2 both are AVX2 code, and on two cores of an AMD EPYC OpenBLAS's ran
// 1024x3072x3072 at 65-68 against 38-54 GFLOP/s and 2048^3 at 70 against 46-53
// (the survey's FCN-R trained about 20% faster), while oneDNN's were faster for
// the skinny products of FCN-S (batch 64; 20% slower on OpenBLAS's) and the MLP.
// The choice depends on the shape alone, so the bits do not depend on the thread
// count. LOOM_SGEMM=onednn or openblas decides for every product instead (read on
// first use; any other value is an error). The reference set runs OpenBLAS's.
enum class SgemmChoice { OpenBlas = 0, OneDnn = 1, BySize = 2 };
SgemmChoice sgemm_choice();
// Sets it for the process (the tests check either sgemm on any CPU) and returns
// the previous choice.
SgemmChoice set_sgemm_choice(SgemmChoice c);
// The oneDNN kernel set is selected and runs an m x n x k product on oneDNN's sgemm.
bool use_onednn_sgemm(int64_t m, int64_t n, int64_t k);

// Row-major float32 C = alpha * op(A) * op(B) + beta * C by oneDNN's sgemm on
// the calling thread (its JIT kernels use AVX-512 where the CPU has it; OpenBLAS
// 0.3.21 stops at AVX2). False (nothing written) in a build without oneDNN or
// when oneDNN refuses the call; the caller then runs OpenBLAS. Its rounding
// depends on the shape of each call, so callers split a product by shape only.
bool onednn_sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

// 2-D convolution geometry in NCHW (1-D data is H = 1); MXNet's dilation (1 = dense).
struct ConvShape {
  int64_t n, c, h, w;  // input
  int64_t f, groups;   // output channels, groups
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;
  int64_t oh, ow;      // output spatial
};

// Whether the oneDNN set gives this convolution to oneDNN: its output channels
// per group fill whole 16-channel blocks, and its input channels too or they
// are at most 4. Otherwise the reference kernels are faster (LeNet's 20 and 50).
bool onednn_conv_takes(const ConvShape &s);

// float32 convolution through oneDNN. Each returns false (having written
// nothing) when oneDNN does not take or cannot compute the case; the caller then runs the
// reference kernel. `bias` may be null. Backward: `dx` and/or `dw` may be null
// (not wanted); the bias gradient stays with the caller.
// What a prediction applies to a convolution's output inside oneDNN (post-ops):
// y = conv * scale[f] + shift[f] + y_before; each part may be absent. Folded
// BatchNorms and residual additions of a graph bound for prediction run this way.
struct ConvEpilogue {
  const float *scale = nullptr, *shift = nullptr;  // per output channel, both or neither
  bool sum = false;  // add what the output holds (an addend copied there)
  // An array of the output's shape, blocked like the output (dst_blocked), added after
  // scale and shift (a binary post-op: oneDNN 2.6 fuses per-channel
  // post-ops followed by this, but not followed by a sum).
  const float *addend = nullptr;
  // The data and the output in oneDNN's blocked layout (onednn_block()) instead
  // of plain NCHW (channels a multiple of the block): prediction executors keep it between
  // consecutive oneDNN convolutions, training executors between the steps that
  // take it (TBlob::blocked).
  bool src_blocked = false, dst_blocked = false;
  // With src_blocked or dst_blocked: the layout that side is in is channels last
  // (NHWC) rather than the blocked one. Prediction executors keep it after the
  // convolutions cut into bands of rows (onednn_conv_row_bands).
  bool src_last = false, dst_last = false;
  // Applied by Loom to each work item's output as soon as oneDNN has written it,
  // while it is still in cache: y = y + after_add (an array of the output's shape
  // and layout, when given), then MXNet's relu (NaN passes through; oneDNN's
  // eltwise relu would make it 0), when relu is set.
  const float *after_add = nullptr;
  bool relu = false;
  // Non-zero: the weights are a copy derived from the weight array (BatchNorm
  // folded into them), named by this id, which the copies kept in oneDNN's layout
  // on the weight's var are keyed by too (an address alone could be reused).
  uint64_t weights_id = 0;
  // Prediction (LOOM_CONV_WINOGRAD=1 at bind): a convolution that qualifies
  // (onednn_winograd_qualifies) runs by oneDNN's Winograd algorithm when oneDNN
  // takes it with this epilogue, else by the direct one.
  bool winograd = false;
  // With relu: oneDNN may apply it as an eltwise post-op, in registers, where it
  // runs the convolution without after_add (LOOM_EXEC_RELU=onednn at bind). That
  // relu is max(x, 0): NaN gives 0, as in MXNet's oneDNN builds, not MXNet's
  // reference relu (NaN passes through). Where oneDNN has no fast kernel for it,
  // and in Loom's Winograd kernels, the relu stays Loom's.
  bool onednn_relu = false;
};

// Whether LOOM_CONV_WINOGRAD=1 is set now (executors read it at bind).
bool winograd_requested();
// Whether LOOM_EXEC_RELU=onednn is set now (executors read it at bind; unset or
// `mxnet`: Loom's relu, NaN passing through; any other value is refused).
bool onednn_relu_requested();
// The convolutions Winograd runs: 3x3, stride 1, no dilation or groups, input
// channels a multiple of 16 and at least 14x14 outputs per image, or 7x7 for
// batches under 4 (one image per oneDNN call, where it picks its 2x3 variant). On
// 7x7 images in larger batches its 4x3 variant's larger transformed weights cost
// more than the products it saves: 5.5 against 3.6 ms for 4 images of 512
// channels here, where one image takes 0.47 against 0.77 ms per half.
bool onednn_winograd_qualifies(const ConvShape &s);

// Loom's own Winograd convolutions (winograd.cc) for the convolutions marked for
// Winograd where oneDNN 2.6 has none (CPUs without AVX-512): the inputs' tiles and
// the filters transformed, (m + 2)^2 products of oneDNN's sgemm per chunk of tiles,
// the m x m outputs transformed back with the epilogue applied. F(4x4, 3x3) by
// default: within 1e-4 of a float64 convolution relative to the largest output, as
// oneDNN's Winograd (about 1e-5 measured); LOOM_WINOGRAD_TILE=2 picks F(2x2, 3x3),
// within 1e-5 as the direct algorithm (about 1e-6) and slower (docs/backends.md).
// Whether it runs this convolution when it is marked for Winograd.
bool loom_winograd_runs(const ConvShape &s);
// Computes the convolution with the epilogue (any layouts it names); `keep` as
// for onednn_conv_forward (the transformed filters are kept there).
void loom_winograd_forward(const ConvShape &s, const float *x, const float *w, const float *bias, float *y,
                           class Var *keep, const ConvEpilogue &ep);
// Training: the weight gradient dW (OIHW, written) of such a 3x3 convolution by the
// same tiles, dW = G^T (sum over tiles of (A dY A^T) . (B^T x B)) G. It runs where
// the forward kernels do, on outputs down to 7x7 (the sums over the batch's tiles
// read no transformed filters); x and dy plain or blocked as flagged. The tiles'
// transforms are held for passes of at most `pass_bytes` (tests make it small).
bool loom_winograd_weight_gradient_runs(const ConvShape &s);
void loom_winograd_weight_gradient(const ConvShape &s, const float *x, const float *dy, float *dw, bool x_blocked,
                                   bool dy_blocked, size_t pass_bytes = size_t(32) << 20);
// For tests: -1 (where oneDNN has no Winograd, the default), 1 (everywhere, so the
// kernel is tested on any CPU) or 0 (never); returns the previous mode.
int set_loom_winograd(int mode);
// The output tile, 4 or 2 (LOOM_WINOGRAD_TILE, read on first use; any other value is
// an error), and a setter for the process that returns the previous tile.
int loom_winograd_tile();
int set_loom_winograd_tile(int tile);

// Reorders an (n, c, h, w) float32 array between plain NCHW and the blocked
// layout of onednn_block() channels (c a multiple of it). Only where
// onednn_block() is not 0.
void onednn_blocked_layout(const float *src, float *dst, int64_t n, int64_t c, int64_t h, int64_t w,
                           bool to_blocked);
// The same between plain NCHW and channels last (NHWC), any c.
void onednn_channels_last_layout(const float *src, float *dst, int64_t n, int64_t c, int64_t h, int64_t w,
                                 bool to_channels_last);

// Batches under 4 on AVX-512: how many bands of output rows each image's
// convolution is cut into, each band one oneDNN call on the image in channels
// last (NHWC) by the direct algorithm, whatever layouts the data and the output
// are given in and whether Winograd was asked for (ConvEpilogue::winograd); 0
// where it is not cut so (4 or more images, groups, input channels not in
// whole blocks of 16, fewer than 14 output rows, a CPU without AVX-512, or
// Loom's Winograd kernels running it). The cut depends on the shape only.
int64_t onednn_conv_row_bands(const ConvShape &s, bool winograd = false);
// How many forward passes ran in bands of rows (for tests).
int64_t onednn_row_band_calls();

// `keep`, when given, is the weight's var: the weights in oneDNN's layout are
// kept there for the weight's version (prediction passes reorder them once, not
// on every call); the caller gives it only when the weight is a stable input.
// `scratch` (optional): work memory of at least onednn_conv_forward_scratch bytes
// (an executor's planned scratch); without it each thread's own buffers are used.
bool onednn_conv_forward(const ConvShape &s, const float *x, const float *w, const float *bias,
                         float *y, class Var *keep = nullptr, const ConvEpilogue &ep = ConvEpilogue(),
                         void *scratch = nullptr, size_t scratch_bytes = 0);
// The work memory onednn_conv_forward uses without an epilogue (0: none, or oneDNN
// does not take the convolution). Builds the plan, so an executor asks at bind.
// With `winograd`, the most either algorithm uses (the executor does not know at
// bind which one oneDNN will take).
size_t onednn_conv_forward_scratch(const ConvShape &s, bool bias, bool winograd = false);
// `scratch` (optional): memory of at least onednn_conv_backward_scratch bytes for
// the weight gradient's pieces and the work buffers; without it they come from
// reusable_scratch and each thread's own buffers.
// `lay`: which of x, dy and dx are blocked (TBlob::blocked) rather than NCHW.
struct ConvLayouts {
  bool x = false, dy = false, dx = false;
};
bool onednn_conv_backward(const ConvShape &s, const float *x, const float *w, const float *dy,
                          float *dx, float *dw, void *scratch = nullptr, size_t scratch_bytes = 0,
                          const ConvLayouts &lay = ConvLayouts());
// The scratch onednn_conv_backward uses for these wanted gradients (0: oneDNN does
// not take the convolution). Builds the plan, so an executor asks at bind.
size_t onednn_conv_backward_scratch(const ConvShape &s, bool dx, bool dw);
// LRN across channels (float32 (n, c, h, w), an odd window of `size` channels) in
// the oneDNN kernel set: MXNet's out = x / (k + alpha / size * sum of x^2)^beta.
// One image per oneDNN call, spread over the kernel threads (each value is computed
// alone, so the bits do not depend on the threads). The forward pass runs on NCHW;
// the backward pass on nChw16c (oneDNN has only its reference kernel for NCHW),
// recomputing the forward pass's workspace. oneDNN 2.6's fast kernels take a window
// of 5 only (NCHW forward: channels a multiple of 8; nChw16c: of 16). False,
// writing nothing, when oneDNN is not selected or has only its reference kernel.
bool onednn_lrn_forward(int64_t n, int64_t c, int64_t h, int64_t w, int64_t size, float alpha, float beta,
                        float k, const float *x, float *y);
bool onednn_lrn_backward(int64_t n, int64_t c, int64_t h, int64_t w, int64_t size, float alpha, float beta,
                         float k, const float *x, const float *dy, float *dx);
// How many LRN passes oneDNN has computed in this process.
int64_t onednn_lrn_calls();

// How many convolution passes oneDNN has computed in this process (tests check
// that the path they compare really ran).
int64_t onednn_conv_calls();
// How many times a convolution's weights were reordered into oneDNN's layout
// (tests check that kept weights are reused, and dropped after a write).
int64_t onednn_weight_reorders();
// How many convolution passes ran by the Winograd algorithm.
int64_t onednn_winograd_calls();
// How many convolution passes used work memory an executor planned (ctx.temp)
// rather than their threads' own buffers.
int64_t onednn_planned_work_calls();
// How many buffers such a pass needed beyond what was planned (a defect).
int64_t onednn_planned_work_misses();

}  // namespace loom

// Direct convolution for layers with few input values per output (a first layer
// on one or three channels: LeNet's 5x5 on 1 channel has 25): im2col + gemm
// spends most of its time copying and packing there. Stride 1 and dilation 1
// only, float32, where the processor has AVX2 and FMA (else the caller's kernels
// run). Part of the default CPU kernel set; LOOM_CPU_KERNELS=reference and
// LOOM_DIRECT_CONV=0 leave it out.
#pragma once

#include <cstdint>

namespace loom {

struct DirectConvShape {
  int64_t n, c, h, w;  // input (1-D data: h = 1)
  int64_t f, groups;   // output channels, groups
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;
  int64_t oh, ow;
};

// Whether the direct kernels take this convolution (shape and processor).
bool direct_conv_takes(const DirectConvShape &s);

// y (n, f, oh, ow) = conv(x, w) + bias (bias may be null). Each output is one
// chain of fused multiply-adds over (channel, kernel row, kernel column) in
// order, then the bias added: the same bits on any vector width and thread
// count. False, nothing written, when not taken.
bool direct_conv_forward(const DirectConvShape &s, const float *x, const float *w, const float *bias, float *y);

// dw (f, c/groups, kh, kw) = the weight gradient. Each image's sum over the
// output positions runs in 8 lanes (lane j takes the positions j, j+8, ...,
// added in a fixed tree); the images' sums are added in a fixed order over
// min(n, 64) contiguous slots, then the slots in order: the same bits on any
// vector width and thread count. False, nothing written, when not taken (also
// when x holds an infinity or NaN, which the padded positions would multiply by 0).
bool direct_conv_weight_gradient(const DirectConvShape &s, const float *x, const float *dy, float *dw);

// The vector width of the direct kernels in use: 16 (AVX-512), 8 (AVX2 and FMA) or
// 0 (none: LOOM_DIRECT_CONV=0 or an older processor). LOOM_DIRECT_CONV=avx2
// keeps to the AVX2 build.
int direct_conv_lanes();
// Uses the widest build of at most `lanes` this processor runs (the tests
// compare the builds' bits in one process); returns the previous width.
int set_direct_conv_lanes(int lanes);
// How many forward passes and weight gradients the direct kernels have computed.
int64_t direct_conv_calls();

}  // namespace loom

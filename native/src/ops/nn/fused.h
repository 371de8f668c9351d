// Kernels of the steps a graph bound for prediction fuses (symbol/executor.cc):
// Convolution, then BatchNorm with its moving statistics, an elementwise add and
// relu, in one pass where oneDNN takes the convolution.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "op/registry.h"
#include "ops/nn/onednn.h"

namespace loom {

// Convolution (parameters `conv`, inputs data, weight[, bias]) into `out` with
// the epilogue applied by oneDNN. False, having written nothing, when the
// oneDNN kernel set is not selected or does not take the case.
bool conv_forward_with_epilogue(const OpContext &ctx, const Params &conv, const BlobList &in,
                                const TBlob &out, const ConvEpilogue &ep);

// Whether the oneDNN kernel set, selected now, runs this 2-D float32
// Convolution (parameters `conv`, data of shape `data`) through oneDNN.
bool conv_onednn_takes(const Params &conv, const Shape &data);
// Whether oneDNN takes it and cuts its forward pass into bands of output rows
// (onednn_conv_row_bands: fewer than 4 images on AVX-512), which take the data
// and the output in channels last (ConvEpilogue::src_last, dst_last).
bool conv_onednn_row_bands(const Params &conv, const Shape &data, bool winograd);
// Whether Loom's Winograd kernels run it when it is marked for Winograd
// (loom_winograd_runs); they take no channels-last arrays.
bool conv_loom_winograd_runs(const Params &conv, const Shape &data);
// Whether Pooling (parameters `pool`, data of shape `data`) takes float32 data in
// the blocked layout (TBlob::blocked): 2-D pooling of (n, c, h, w) data with c a
// multiple of onednn_block() (never where that is 0), in either kernel set (its
// blocked kernels give the NCHW kernels' bits).
bool pooling_takes_blocked(const Params &pool, const Shape &data);
// Whether an array of this shape reads the same in the blocked layout as in
// NCHW: (n, c, 1, 1) with c a multiple of onednn_block(). A pooling whose output
// is such (global pooling) takes blocked data and writes its output for readers
// of either layout, so the values before it stay blocked.
bool blocked_same_as_plain(const Shape &s);
// The work memory its forward pass with Winograd allowed (ConvEpilogue::winograd)
// uses: the most of either algorithm's (0 where oneDNN does not take it).
size_t conv_winograd_scratch(const Params &conv, const Shape &data);

// BatchNorm (parameters `bn`; inputs data, gamma, beta, moving_mean,
// moving_var, float32, channel axis 1) as out = data * scale + shift per
// channel, scale = gamma / sqrt(moving_var + eps), shift = beta - moving_mean *
// scale, computed in float64 (gamma = 1 under fix_gamma, which, as the op does,
// writes 1 into gamma). False when this context normalises with the batch's
// statistics instead (training without use_global_stats).
bool batchnorm_prediction_affine(const OpContext &ctx, const Params &bn, const BlobList &in,
                                 std::vector<float> &scale, std::vector<float> &shift);

// The fold itself, in place: w holds f rows of `per` weights and b the f biases
// (zeros where the layer has none); W'[f] = W[f] * s[f] and b'[f] = (b[f] - mean[f])
// * s[f] + beta[f], with s[f] = gamma[f] / sqrt(var[f] + eps) (gamma taken as 1
// under fix_gamma), in float64 rounded once. Symbol.FoldBatchNorm and the fused
// prediction step both fold with it, so they give the same bits.
void fold_batchnorm_values(int64_t f, int64_t per, double eps, bool fix_gamma, const float *gamma, const float *beta,
                           const float *mean, const float *var, float *w, float *b);

// BatchNorm (parameters `bn`, inputs `bn_in` as above) folded into the weight and
// bias of the Convolution before it (inputs `conv_in`: data, weight[, bias]), as
// Symbol.FoldBatchNorm folds them:
// W'[f] = W[f] * s[f] and b'[f] = (b[f] - moving_mean[f]) * s[f] + beta[f], with
// s[f] = gamma[f] / sqrt(moving_var[f] + eps), in float64 rounded once. Kept on the
// weight's var for its version, under a key that holds every BatchNorm input and
// the bias, so a change to any of them folds again. Null where the weight is no
// stable float32 input (nothing can be kept then) or the BatchNorm's inputs are
// not one value per output channel.
struct FoldedConv {
  std::vector<float> weight, bias;
  uint64_t id = 0;  // unique per fold (ConvEpilogue::weights_id)
};
std::shared_ptr<const FoldedConv> fold_batchnorm_into_conv(const Params &bn, const BlobList &conv_in,
                                                           const BlobList &bn_in);

}  // namespace loom

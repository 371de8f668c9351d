// 3-D (NCDHW) Convolution, Deconvolution and Pooling: the volume forms of the
// layers in conv.cc, which branch here when the kernel has three extents.
// Convolution and Deconvolution go through vol2col + gemm; pooling follows
// MXNet's pool.h rules (the average divisor clipped to in + pad, or to the
// input without count_include_pad; a max window with no cell gives the lowest).
#pragma once

#include "ops/common.h"

namespace loom {

// db[k] = the sum of dy over channel k of every image ((n, f, plane) data), each
// plane summed in eight double lanes and the planes added in order (conv.cc):
// the bias gradient of every convolution and deconvolution.
void conv_bias_gradient(const float *dy, int64_t n, int64_t f, int64_t plane, float *db);
void conv_bias_gradient(const double *dy, int64_t n, int64_t f, int64_t plane, double *db);

// Whether a Convolution/Deconvolution/Pooling call works on volumes (NCDHW).
bool is_volume(const Params &p, const Shape &data);

Shape conv3d_weight_shape(const Params &p, const Shape &data);
Shape conv3d_output_shape(const Params &p, const Shape &data);
void conv3d_forward(const Params &p, const BlobList &in, const BlobList &out);
void conv3d_backward(const Params &p, const BlobList &in, const BlobList &og, const BlobList &ig,
                     const ReqList &req);

Shape deconv3d_weight_shape(const Params &p, const Shape &data);
Shape deconv3d_output_shape(const Params &p, const Shape &data);
void deconv3d_forward(const Params &p, const BlobList &in, const BlobList &out);
void deconv3d_backward(const Params &p, const BlobList &in, const BlobList &og, const BlobList &ig,
                       const ReqList &req);

Shape pool3d_output_shape(const Params &p, const Shape &data);
void pool3d_forward(const Params &p, const BlobList &in, const BlobList &out);
void pool3d_backward(const Params &p, const BlobList &in, const BlobList &og, const BlobList &ig,
                     const ReqList &req);

}  // namespace loom

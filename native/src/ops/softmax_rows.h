// Float32 softmax rows of unit stride, vectorised, with the same bits on every
// processor (vecmath.h): SoftmaxOutput, SoftmaxActivation, softmax and
// log_softmax take them for their rows along the last axis.
#pragma once

#include <cstdint>

namespace loom {

// One row of k values whose max is finite and which holds no NaN: r = x - max
// (divided by the temperature t when t is not 1), e^r by exp_approx (within 2
// ulp; 0 below e^-87, where float's own exponential is denormal), summed in
// double over 8 fixed lanes (the same order every time), then y = e^r / sum in
// double, or, for log_softmax, y = r - log(sum) in double. Returns false,
// writing nothing, for a row the caller's general loop must take (NaN, or an
// infinite max).
bool softmax_row_f32(const float *x, float *y, int64_t k, float t = 1.0f, bool log_form = false);

// The gradient of one such row (softmax or log_softmax, temperature t): with
// s = the sum of dy * y (softmax) or of dy (log_softmax), in double over 8 fixed
// lanes, dx = y * (dy - s) / t, or (dy - e^y * s) / t, each value in double.
void softmax_grad_row(const float *y, const float *dy, float *dx, int64_t k, double t, bool log_form);
void softmax_grad_row(const double *y, const double *dy, double *dx, int64_t k, double t, bool log_form);

}  // namespace loom

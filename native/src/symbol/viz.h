// Seeing a network: MXNet's mx.viz.plot_network as Graphviz DOT text, and
// mx.viz.print_summary as a layer table, computed here so every frontend draws and
// counts the same.
#pragma once

#include <map>
#include <string>

#include "symbol/symbol.h"

namespace loom {

// The graph in Graphviz's DOT language, as MXNet's plot_network draws it: one box
// per op (MXNet's label and colour for its family), inputs as ovals, parameters
// (names ending _weight, _bias, _gamma, _beta, _moving_mean, ...) hidden unless
// hide_weights is false, and edges from each node to its inputs labelled with the
// input's shape without the batch axis when `shapes` (input name -> shape) is not
// empty. Incomplete shapes are an error naming what could not be inferred.
std::string to_dot(const Symbol &s, const std::map<std::string, Shape> &shapes, const std::string &title,
                   bool hide_weights);

// MXNet's print_summary: a row per op (name(op), output shape without the batch
// axis, parameters, previous layers), `line_length` characters wide, then the total.
// A layer's parameters are the sizes of its learnable inputs (arguments that are
// neither given inputs nor auxiliary states), so every op counts, not only the few
// MXNet has formulas for.
std::string summary(const Symbol &s, const std::map<std::string, Shape> &shapes, int line_length);

}  // namespace loom

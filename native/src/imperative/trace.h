// Tracing: while a trace is open on a thread, every op that thread invokes
// through the ABI is also recorded as a node of a symbol, its inputs found by
// the arrays they read. Arrays declared with input() become the symbol's
// variables; an op reading an array that is neither declared nor produced
// inside the trace fails before it runs. end() returns the symbol of the
// given head arrays. This is how a block written as imperative calls becomes
// a graph for the planned executor (MXNet's hybridize), through the same op
// registry and without a second implementation of any layer.
#pragma once

#include <string>

#include "imperative/imperative.h"
#include "symbol/symbol.h"

namespace loom {
namespace trace {

bool active();  // on this thread, and not paused
bool open();    // on this thread, paused or not
void begin();
// While paused, ops run without being recorded (a parameter's first
// initialisation inside a traced forward). Returns the previous state.
bool set_paused(bool paused);
// Declares `array` as the variable `name` (unique within the trace).
void input(const NDArray &array, const std::string &name);
// Node names get this prefix while it is pushed (nested blocks push theirs).
void push_scope(const std::string &prefix);
void pop_scope();
// Throws if an input is unknown to the trace or an output slot is given.
void check(const OpDef &op, const ArrayList &inputs, const ArrayList &given_outputs);
void record(const OpDef &op, const char *const *keys, const char *const *values, int32_t num_params,
            const ArrayList &inputs, const ArrayList &outputs);
// Closes the trace; the symbol's outputs are the heads, in order.
Symbol end(const ArrayList &heads);
void abort();  // closes the trace without a symbol; no-op when none is open

}  // namespace trace
}  // namespace loom

// IDX files (MNIST, Fashion-MNIST), plain or gzip-compressed.
#pragma once

#include <string>

#include "ndarray/ndarray.h"

namespace loom {
// Reads an IDX file into a new array on cpu(0): uint8, int32, float32 or
// float64 as the file says. Errors name the file and the bytes involved.
NDArray read_idx(const std::string &path);

// The whole content of a plain or gzip-compressed file (gzread reads plain
// files as they are). `what` names the caller in errors.
std::string read_file(const std::string &path, const char *what);
}  // namespace loom

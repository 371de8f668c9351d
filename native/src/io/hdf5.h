// HDF5 datasets (Mocha's data format), read through the HDF5 C library loaded at run time.
#pragma once

#include <cstdint>
#include <string>

#include "ndarray/ndarray.h"

namespace loom {
// Rows [begin, end) of `dataset` in the HDF5 file `path` (end < 0: to the last row), as a
// new array on cpu(0). Errors name the file, the dataset and what is wrong.
NDArray read_hdf5(const std::string &path, const std::string &dataset, int64_t begin, int64_t end);
}  // namespace loom

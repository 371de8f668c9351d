// Writing a file so that an existing one is only ever replaced by a complete one:
// written beside the target under a temporary name, flushed to disk, renamed.
#pragma once

#include <cstddef>
#include <string>

namespace loom {

// Writes `size` bytes to `path` atomically (temporary name "<path>.tmp.<pid>.<n>",
// fsync, rename). First removes temporaries of `path` left by processes that no
// longer run (a save killed half-way). Throws LOOM_ERR_IO naming `what` and the file.
void write_file_atomic(const std::string &path, const void *data, size_t size, const char *what);

// Removes "<path>.tmp.<pid>.*" files whose process is gone; returns how many.
int remove_stale_temporaries(const std::string &path);

}  // namespace loom

#include "io/idx.h"

#include <zlib.h>

#include <cerrno>
#include <vector>

namespace loom {

std::string read_file(const std::string &path, const char *what) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) fail(LOOM_ERR_IO, what, ": cannot open '", path, "': ", std::strerror(errno));
  struct Closer {
    gzFile f;
    ~Closer() { gzclose(f); }
  } closer{f};
  std::string data;
  char buf[1 << 16];
  for (;;) {
    int n = gzread(f, buf, sizeof buf);
    if (n < 0) {
      int code;
      fail(LOOM_ERR_IO, what, ": '", path, "' is corrupted: ", gzerror(f, &code));
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  return data;
}

NDArray read_idx(const std::string &path) {
  std::string data = read_file(path, "read_idx");
  auto bad = [&](const std::string &m) {
    fail(LOOM_ERR_IO, "'", path, "' is not a valid IDX file: ", m, " (file has ", data.size(),
         " bytes)");
  };
  if (data.size() < 4) bad("it is shorter than the 4-byte header");
  const unsigned char *p = reinterpret_cast<const unsigned char *>(data.data());
  if (p[0] != 0 || p[1] != 0) bad("the magic number does not start with two zero bytes");
  int code = p[2], ndim = p[3];
  int32_t dtype;
  size_t esize;
  switch (code) {
    case 0x08: dtype = kUInt8; esize = 1; break;
    case 0x0C: dtype = kInt32; esize = 4; break;
    case 0x0D: dtype = kFloat32; esize = 4; break;
    case 0x0E: dtype = kFloat64; esize = 8; break;
    default: {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", code);
      bad(std::string("element type code ") + hex +
          " is not supported (0x08 uint8, 0x0C int32, 0x0D float32, 0x0E float64)");
    }
  }
  if (ndim < 1 || ndim > LOOM_MAX_NDIM) bad("it has " + std::to_string(ndim) + " dimensions");
  if (data.size() < 4 + 4 * size_t(ndim)) bad("the header is truncated");
  Shape s;
  s.ndim = ndim;
  for (int i = 0; i < ndim; ++i) {
    const unsigned char *d = p + 4 + 4 * i;
    s.d[i] = (int64_t(d[0]) << 24) | (int64_t(d[1]) << 16) | (int64_t(d[2]) << 8) | int64_t(d[3]);
  }
  size_t header = 4 + 4 * size_t(ndim);
  uint64_t need = 0;
  if (!s.checked_bytes(esize, &need))
    fail(LOOM_ERR_IO, "'", path, "' declares shape ", s.str(), ", whose byte count overflows 64 bits");
  if (need != uint64_t(data.size() - header))
    fail(LOOM_ERR_IO, "'", path, "' is truncated or has trailing bytes: shape ", s.str(), " needs ",
         need, " data bytes after the ", header, "-byte header, found ", data.size() - header);
  NDArray a = NDArray::empty(s, dtype, Context{});
  const unsigned char *src = p + header;
  unsigned char *dst = static_cast<unsigned char *>(a.data());
  if (esize == 1) {
    if (a.nbytes()) std::memcpy(dst, src, a.nbytes());
  } else {  // IDX is big-endian
    for (int64_t i = 0; i < s.size(); ++i)
      for (size_t b = 0; b < esize; ++b) dst[i * esize + b] = src[i * esize + (esize - 1 - b)];
  }
  return a;
}

}  // namespace loom

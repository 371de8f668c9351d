// HDF5 datasets read through the HDF5 C library, loaded with dlopen when first needed so
// that libloom itself never depends on it (the NuGet package and the wheel load on
// machines without HDF5; only this reader then says what is missing). The few
// declarations below are HDF5's stable C ABI (1.10 and later: hid_t is 64 bits).
#include "io/hdf5.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "common/base.h"

namespace loom {
namespace {

using hid_t = int64_t;
using herr_t = int;
using htri_t = int;
using hsize_t = unsigned long long;
constexpr hid_t kDefault = 0;  // H5P_DEFAULT, H5S_ALL, H5E_DEFAULT
constexpr int kClassInteger = 0, kClassFloat = 1;  // H5T_class_t
constexpr int kSignNone = 0;                       // H5T_sign_t

struct Hdf5 {
  void *lib = nullptr;
  std::string name;
  herr_t (*open)();
  herr_t (*set_auto)(hid_t, void *, void *);
  htri_t (*is_hdf5)(const char *);
  hid_t (*fopen)(const char *, unsigned, hid_t);
  herr_t (*fclose)(hid_t);
  htri_t (*lexists)(hid_t, const char *, hid_t);
  int64_t (*lname)(hid_t, const char *, int, int, hsize_t, char *, size_t, hid_t);
  hid_t (*dopen)(hid_t, const char *, hid_t);
  herr_t (*dclose)(hid_t);
  hid_t (*dspace)(hid_t);
  hid_t (*dtype)(hid_t);
  herr_t (*dread)(hid_t, hid_t, hid_t, hid_t, hid_t, void *);
  int (*ndims)(hid_t);
  int (*dims)(hid_t, hsize_t *, hsize_t *);
  herr_t (*hyperslab)(hid_t, int, const hsize_t *, const hsize_t *, const hsize_t *, const hsize_t *);
  hid_t (*screate)(int, const hsize_t *, const hsize_t *);
  herr_t (*sclose)(hid_t);
  int (*tclass)(hid_t);
  size_t (*tsize)(hid_t);
  int (*tsign)(hid_t);
  herr_t (*tclose)(hid_t);
  // The native memory types (global ids, valid after open()).
  hid_t *schar, *uchar, *int32, *llong, *flt, *dbl;
};

std::mutex g_mu;  // the serial HDF5 library is not thread-safe

template <class F>
void sym(void *lib, const char *name, F *out, const std::string &file) {
  void *p = dlsym(lib, name);
  if (!p)
    fail(LOOM_ERR_BACKEND_UNAVAILABLE, "read_hdf5: ", file, " has no symbol ", name,
         " (HDF5 1.10 or later is needed)");
  *out = reinterpret_cast<F>(p);
}

// The library, loaded once; LOOM_HDF5_LIBRARY names it, else Debian's names are tried.
Hdf5 &library() {
  static Hdf5 h;
  if (h.lib) return h;
  std::vector<std::string> names;
  if (const char *e = std::getenv("LOOM_HDF5_LIBRARY"); e && *e) names.push_back(e);
  for (const char *n : {"libhdf5_serial.so.103", "libhdf5.so.103", "libhdf5_serial.so.310",
                        "libhdf5.so.310", "libhdf5_serial.so", "libhdf5.so"})
    names.push_back(n);
  std::string tried;
  for (auto &n : names) {
    if ((h.lib = dlopen(n.c_str(), RTLD_NOW | RTLD_LOCAL))) {
      h.name = n;
      break;
    }
    tried += (tried.empty() ? "" : ", ") + n;
  }
  if (!h.lib)
    fail(LOOM_ERR_BACKEND_UNAVAILABLE, "read_hdf5: the HDF5 library is not installed (looked for ",
         tried, "); install it with: sudo apt-get install libhdf5-103-1, or set LOOM_HDF5_LIBRARY");
  const std::string &f = h.name;
  sym(h.lib, "H5open", &h.open, f);
  sym(h.lib, "H5Eset_auto2", &h.set_auto, f);
  sym(h.lib, "H5Fis_hdf5", &h.is_hdf5, f);
  sym(h.lib, "H5Fopen", &h.fopen, f);
  sym(h.lib, "H5Fclose", &h.fclose, f);
  sym(h.lib, "H5Lexists", &h.lexists, f);
  sym(h.lib, "H5Lget_name_by_idx", &h.lname, f);
  sym(h.lib, "H5Dopen2", &h.dopen, f);
  sym(h.lib, "H5Dclose", &h.dclose, f);
  sym(h.lib, "H5Dget_space", &h.dspace, f);
  sym(h.lib, "H5Dget_type", &h.dtype, f);
  sym(h.lib, "H5Dread", &h.dread, f);
  sym(h.lib, "H5Sget_simple_extent_ndims", &h.ndims, f);
  sym(h.lib, "H5Sget_simple_extent_dims", &h.dims, f);
  sym(h.lib, "H5Sselect_hyperslab", &h.hyperslab, f);
  sym(h.lib, "H5Screate_simple", &h.screate, f);
  sym(h.lib, "H5Sclose", &h.sclose, f);
  sym(h.lib, "H5Tget_class", &h.tclass, f);
  sym(h.lib, "H5Tget_size", &h.tsize, f);
  sym(h.lib, "H5Tget_sign", &h.tsign, f);
  sym(h.lib, "H5Tclose", &h.tclose, f);
  sym(h.lib, "H5T_NATIVE_SCHAR_g", &h.schar, f);
  sym(h.lib, "H5T_NATIVE_UCHAR_g", &h.uchar, f);
  sym(h.lib, "H5T_NATIVE_INT_g", &h.int32, f);
  sym(h.lib, "H5T_NATIVE_LLONG_g", &h.llong, f);
  sym(h.lib, "H5T_NATIVE_FLOAT_g", &h.flt, f);
  sym(h.lib, "H5T_NATIVE_DOUBLE_g", &h.dbl, f);
  if (h.open() < 0) fail(LOOM_ERR_BACKEND_UNAVAILABLE, "read_hdf5: ", f, " failed to start");
  h.set_auto(kDefault, nullptr, nullptr);  // errors come back as codes, not printed
  return h;
}

// Closes an HDF5 id when it goes out of scope.
struct Id {
  hid_t id;
  herr_t (*close)(hid_t);
  ~Id() {
    if (id >= 0) close(id);
  }
};

// The names at the file's top level, for an error message.
std::string top_names(Hdf5 &h, hid_t file) {
  std::string names;
  char buf[256];
  for (hsize_t i = 0; i < 50; ++i) {
    if (h.lname(file, ".", 0, 0, i, buf, sizeof buf, kDefault) < 0) break;
    names += (names.empty() ? "" : ", ") + std::string(buf);
  }
  return names.empty() ? "none" : names;
}

}  // namespace

NDArray read_hdf5(const std::string &path, const std::string &dataset, int64_t begin, int64_t end) {
  std::lock_guard<std::mutex> lk(g_mu);
  Hdf5 &h = library();
  const std::string where = "read_hdf5: '" + path + "'";
  if (FILE *probe = std::fopen(path.c_str(), "rb")) std::fclose(probe);
  else fail(LOOM_ERR_IO, "read_hdf5: cannot open '", path, "': ", std::strerror(errno));
  if (h.is_hdf5(path.c_str()) <= 0) fail(LOOM_ERR_IO, where, " is not an HDF5 file");
  Id file{h.fopen(path.c_str(), 0u /* H5F_ACC_RDONLY */, kDefault), h.fclose};
  if (file.id < 0) fail(LOOM_ERR_IO, where, " cannot be opened as HDF5 (damaged or truncated?)");
  // Every link on the way must exist (H5Lexists does not look past a missing group).
  for (size_t at = dataset.find('/', 1);; at = dataset.find('/', at + 1)) {
    std::string part = dataset.substr(0, at);
    if (h.lexists(file.id, part.c_str(), kDefault) <= 0)
      fail(LOOM_ERR_NOT_FOUND, where, " has no dataset '", dataset, "' (at its top level: ",
           top_names(h, file.id), ")");
    if (at == std::string::npos) break;
  }
  Id ds{h.dopen(file.id, dataset.c_str(), kDefault), h.dclose};
  if (ds.id < 0) fail(LOOM_ERR_IO, where, ": '", dataset, "' is not a dataset (a group?)");
  Id space{h.dspace(ds.id), h.sclose};
  Id type{h.dtype(ds.id), h.tclose};
  if (space.id < 0 || type.id < 0) fail(LOOM_ERR_IO, where, ": cannot read the layout of '", dataset, "'");
  int nd = h.ndims(space.id);
  if (nd < 1 || nd > LOOM_MAX_NDIM)
    fail(LOOM_ERR_SHAPE, where, ": dataset '", dataset, "' has ", nd, " dimensions (1 to ",
         LOOM_MAX_NDIM, " are supported)");
  hsize_t dims[LOOM_MAX_NDIM];
  h.dims(space.id, dims, nullptr);
  // The element type, converted by HDF5 on reading where Loom has no exact match.
  int cls = h.tclass(type.id);
  size_t size = h.tsize(type.id);
  int32_t dtype = -1;
  hid_t mem = -1;
  if (cls == kClassFloat && size <= 4) dtype = kFloat32, mem = *h.flt;
  else if (cls == kClassFloat && size == 8) dtype = kFloat64, mem = *h.dbl;
  else if (cls == kClassInteger) {
    bool sign = h.tsign(type.id) != kSignNone;
    if (size == 1) dtype = sign ? kInt8 : kUInt8, mem = sign ? *h.schar : *h.uchar;
    else if (size == 2 || (size == 4 && sign)) dtype = kInt32, mem = *h.int32;
    else if (size == 4 || (size == 8 && sign)) dtype = kInt64, mem = *h.llong;
  }
  if (dtype < 0)
    fail(LOOM_ERR_DTYPE, where, ": dataset '", dataset, "' has elements of ",
         cls == kClassInteger ? "integer" : cls == kClassFloat ? "floating-point" : "another",
         " type of ", size, " bytes", cls == kClassInteger ? " (unsigned 64-bit does not fit int64)" : "",
         "; Loom reads floats of up to 8 bytes and integers (as int8, uint8, int32 or int64)");
  const int64_t rows = static_cast<int64_t>(dims[0]);
  if (end < 0) end = rows;
  if (begin < 0 || begin > end || end > rows)
    fail(LOOM_ERR_INVALID_ARGUMENT, where, ": rows [", begin, ", ", end, ") are outside dataset '",
         dataset, "' of ", rows, " rows");
  Shape s;
  s.ndim = nd;
  for (int i = 0; i < nd; ++i) s.d[i] = static_cast<int64_t>(dims[i]);
  s.d[0] = end - begin;
  NDArray out = NDArray::empty(s, dtype, Context{});
  if (s.size() == 0) return out;
  hsize_t start[LOOM_MAX_NDIM] = {0}, count[LOOM_MAX_NDIM];
  for (int i = 0; i < nd; ++i) count[i] = dims[i];
  start[0] = static_cast<hsize_t>(begin);
  count[0] = static_cast<hsize_t>(end - begin);
  if (h.hyperslab(space.id, 0 /* H5S_SELECT_SET */, start, nullptr, count, nullptr) < 0)
    fail(LOOM_ERR_IO, where, ": cannot select rows [", begin, ", ", end, ") of '", dataset, "'");
  Id memspace{h.screate(nd, count, nullptr), h.sclose};
  if (h.dread(ds.id, mem, memspace.id, space.id, kDefault, out.data()) < 0)
    fail(LOOM_ERR_IO, where, ": reading dataset '", dataset, "' failed (damaged or truncated file?)");
  return out;
}

}  // namespace loom

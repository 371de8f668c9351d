// `.params` files: round trip, byte-exact layout per DESIGN.md, V1 records,
// and every kind of damaged file.
#include <fstream>
#include <iterator>

#include <unistd.h>
#include <zlib.h>

#include "testutil.h"

using namespace lt;

namespace {

std::string tmp_path(const std::string &name) {
  return "/tmp/loom_test_" + std::to_string(::getpid()) + "_" + name;
}

std::string slurp(const std::string &p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void spit(const std::string &p, const std::string &data) {
  std::ofstream f(p, std::ios::binary);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
}

// Byte builder following DESIGN.md, independent of the library's writer.
struct Bytes {
  std::string s;
  template <typename T>
  Bytes &put(T v) {
    s.append(reinterpret_cast<const char *>(&v), sizeof v);
    return *this;
  }
  Bytes &raw(const void *p, size_t n) {
    s.append(static_cast<const char *>(p), n);
    return *this;
  }
};

std::string expected_file() {
  Bytes b;
  b.put<uint64_t>(0x112).put<uint64_t>(0).put<uint64_t>(2);
  // "w": float32 (2,2) = 1..4
  b.put<uint32_t>(0xF993FAC9).put<int32_t>(0).put<int32_t>(2).put<int64_t>(2).put<int64_t>(2);
  b.put<int32_t>(1).put<int32_t>(0).put<int32_t>(0);
  float w[4] = {1, 2, 3, 4};
  b.raw(w, sizeof w);
  // "b": int64 (3,) = 7 8 9
  b.put<uint32_t>(0xF993FAC9).put<int32_t>(0).put<int32_t>(1).put<int64_t>(3);
  b.put<int32_t>(1).put<int32_t>(0).put<int32_t>(6);
  int64_t bv[3] = {7, 8, 9};
  b.raw(bv, sizeof bv);
  b.put<uint64_t>(2).put<uint64_t>(1).raw("w", 1).put<uint64_t>(1).raw("b", 1);
  return b.s;
}

loom_status save(const std::string &path, const std::vector<const Arr *> &arrs,
                 const std::vector<const char *> &names) {
  std::vector<loom_ndarray> hs;
  for (auto *a : arrs) hs.push_back(a->h);
  return loom_ndarray_save(path.c_str(), hs.data(), names.empty() ? nullptr : names.data(),
                           static_cast<int32_t>(hs.size()));
}

TEST(Params, WriterProducesTheDocumentedBytes) {
  Arr w = make({2, 2}, {1, 2, 3, 4}), b = make({3}, {7, 8, 9}, LOOM_DTYPE_INT64);
  std::string p = tmp_path("exact.params");
  ASSERT_EQ(save(p, {&w, &b}, {"w", "b"}), LOOM_OK) << loom_last_error();
  EXPECT_EQ(slurp(p), expected_file());
  std::remove(p.c_str());
}

TEST(Params, ReaderAcceptsHandAssembledV2AndV1) {
  std::string p = tmp_path("hand.params");
  spit(p, expected_file());
  loom_ndarray_list l = nullptr;
  ASSERT_EQ(loom_ndarray_load(&l, p.c_str()), LOOM_OK) << loom_last_error();
  int32_t n = 0;
  ASSERT_EQ(loom_ndarray_list_size(&n, l), LOOM_OK);
  ASSERT_EQ(n, 2);
  loom_ndarray h;
  const char *name;
  ASSERT_EQ(loom_ndarray_list_get(&h, &name, l, 1), LOOM_OK);
  Arr b(h);
  EXPECT_STREQ(name, "b");
  EXPECT_EQ(dtype_of(b), LOOM_DTYPE_INT64);
  EXPECT_EQ(read(b), (std::vector<double>{7, 8, 9}));
  loom_ndarray_list_free(l);

  // V1 records have no storage-type field; an unnamed list has 0 names.
  Bytes v1;
  v1.put<uint64_t>(0x112).put<uint64_t>(0).put<uint64_t>(1);
  v1.put<uint32_t>(0xF993FAC8).put<int32_t>(2).put<int64_t>(1).put<int64_t>(2);
  v1.put<int32_t>(1).put<int32_t>(0).put<int32_t>(1);
  double d[2] = {0.5, -1.25};
  v1.raw(d, sizeof d).put<uint64_t>(0);
  spit(p, v1.s);
  ASSERT_EQ(loom_ndarray_load(&l, p.c_str()), LOOM_OK) << loom_last_error();
  ASSERT_EQ(loom_ndarray_list_get(&h, &name, l, 0), LOOM_OK);
  Arr a(h);
  EXPECT_STREQ(name, "");
  EXPECT_EQ(shape_of(a), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(read(a), (std::vector<double>{0.5, -1.25}));
  loom_ndarray_list_free(l);
  std::remove(p.c_str());
}

TEST(Params, RoundTripEveryDtypeAndShape) {
  std::string p = tmp_path("rt.params");
  std::vector<Arr> arrs;
  std::vector<std::string> names;
  int k = 0;
  for (int32_t dt : {LOOM_DTYPE_FLOAT32, LOOM_DTYPE_FLOAT64, LOOM_DTYPE_INT32, LOOM_DTYPE_INT64,
                     LOOM_DTYPE_UINT8})
    for (auto shape : {std::vector<int64_t>{}, {5}, {2, 0, 3}, {2, 1, 2, 1, 2, 1, 2, 3}}) {
      arrs.push_back(make(shape, as_dtype(random_values(numel(shape), 0, 100, k), dt), dt));
      names.push_back("arg:x" + std::to_string(k++));
    }
  std::vector<const Arr *> ptrs;
  std::vector<const char *> cn;
  for (size_t i = 0; i < arrs.size(); ++i) {
    ptrs.push_back(&arrs[i]);
    cn.push_back(names[i].c_str());
  }
  ASSERT_EQ(save(p, ptrs, cn), LOOM_OK) << loom_last_error();
  loom_ndarray_list l = nullptr;
  ASSERT_EQ(loom_ndarray_load(&l, p.c_str()), LOOM_OK) << loom_last_error();
  int32_t n;
  loom_ndarray_list_size(&n, l);
  ASSERT_EQ(n, static_cast<int32_t>(arrs.size()));
  for (int32_t i = 0; i < n; ++i) {
    loom_ndarray h;
    const char *name;
    ASSERT_EQ(loom_ndarray_list_get(&h, &name, l, i), LOOM_OK);
    Arr a(h);
    EXPECT_EQ(names[i], name);
    EXPECT_EQ(shape_of(a), shape_of(arrs[i]));
    EXPECT_EQ(dtype_of(a), dtype_of(arrs[i]));
    EXPECT_EQ(read(a), read(arrs[i]));
  }
  loom_ndarray_list_free(l);
  std::remove(p.c_str());
}

TEST(Params, EveryTruncationIsAnIoErrorNamingTheFile) {
  std::string good = expected_file(), p = tmp_path("trunc.params");
  for (size_t len = 0; len < good.size(); ++len) {
    spit(p, good.substr(0, len));
    loom_ndarray_list l = nullptr;
    ASSERT_EQ(loom_ndarray_load(&l, p.c_str()), LOOM_ERR_IO) << "length " << len;
    EXPECT_EQ(l, nullptr) << "output touched on failure";
    EXPECT_NE(std::string(loom_last_error()).find(p), std::string::npos) << loom_last_error();
  }
  std::remove(p.c_str());
}

TEST(Params, CorruptFieldsAreReportedWithTheirBytes) {
  std::string p = tmp_path("bad.params");
  struct Damage {
    size_t offset;
    uint32_t value;
    const char *expect;
  };
  // Offsets into expected_file(): list magic 0, array magic 24, stype 28,
  // ndim 32, dtype 60 (after dims at 36..52 and context at 52..60).
  for (const Damage &d : {Damage{0, 0x113, "header magic"}, Damage{24, 0xDEADBEEF, "magic"},
                          Damage{28, 1, "storage type"}, Damage{32, 99, "ndim"},
                          Damage{60, 42, "dtype code 42"}}) {
    std::string f = expected_file();
    std::memcpy(&f[d.offset], &d.value, 4);
    spit(p, f);
    loom_ndarray_list l = nullptr;
    EXPECT_EQ(loom_ndarray_load(&l, p.c_str()), LOOM_ERR_IO) << d.expect;
    EXPECT_NE(std::string(loom_last_error()).find(d.expect), std::string::npos)
        << loom_last_error();
  }
  // A huge element count must not allocate, only fail.
  std::string f = expected_file();
  int64_t huge = int64_t(1) << 40;
  std::memcpy(&f[36], &huge, 8);
  spit(p, f);
  loom_ndarray_list l = nullptr;
  EXPECT_EQ(loom_ndarray_load(&l, p.c_str()), LOOM_ERR_IO);
  EXPECT_NE(std::string(loom_last_error()).find("truncated"), std::string::npos);
  // Extents whose product overflows 64 bits: an error that says so (the byte count
  // used to come from a double, cast back with undefined behaviour).
  f = expected_file();
  int64_t big = int64_t(1) << 62;
  std::memcpy(&f[36], &big, 8);
  spit(p, f);
  EXPECT_EQ(loom_ndarray_load(&l, p.c_str()), LOOM_ERR_IO);
  EXPECT_NE(std::string(loom_last_error()).find("overflows 64 bits"), std::string::npos) << loom_last_error();
  EXPECT_EQ(loom_ndarray_load(&l, "/nonexistent/dir/x.params"), LOOM_ERR_IO);
  std::remove(p.c_str());
}

TEST(Params, FailedSaveLeavesTheOldFileIntact) {
  std::string p = tmp_path("keep.params");
  Arr w = make({2}, {1, 2});
  ASSERT_EQ(save(p, {&w}, {"w"}), LOOM_OK);
  std::string before = slurp(p);
  // An array whose producing op failed cannot be saved; nothing is replaced.
  Arr data = make({3}, {1, 2, 3});
  Arr idx = make({1}, {12}, LOOM_DTYPE_INT32);
  std::vector<Arr> outs;
  ASSERT_EQ(invoke("take", {&data, &idx}, {{"mode", "raise"}}, &outs), LOOM_OK);
  EXPECT_EQ(save(p, {&w, &outs[0]}, {"w", "bad"}), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(slurp(p), before);
  loom_wait_all();
  // An unwritable directory is an IO error naming the path.
  EXPECT_EQ(save("/proc/loom_no_such_dir/x.params", {&w}, {"w"}), LOOM_ERR_IO);
  EXPECT_NE(std::string(loom_last_error()).find("loom_no_such_dir"), std::string::npos);
  std::remove(p.c_str());
}

std::string idx_bytes(uint8_t code, const std::vector<uint32_t> &dims, const std::string &payload) {
  std::string s;
  s += '\0';
  s += '\0';
  s += char(code);
  s += char(dims.size());
  for (uint32_t d : dims)
    for (int b = 3; b >= 0; --b) s += char((d >> (8 * b)) & 0xFF);
  return s + payload;
}

TEST(Idx, ReadsUint8Int32AndFloat32BigEndian) {
  std::string p = tmp_path("a.idx");
  spit(p, idx_bytes(0x08, {2, 3}, std::string("\x01\x02\x03\x04\x05\xff", 6)));
  loom_ndarray h;
  ASSERT_EQ(loom_io_read_idx(&h, p.c_str()), LOOM_OK) << loom_last_error();
  Arr a(h);
  EXPECT_EQ(dtype_of(a), LOOM_DTYPE_UINT8);
  EXPECT_EQ(shape_of(a), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(read(a), (std::vector<double>{1, 2, 3, 4, 5, 255}));
  spit(p, idx_bytes(0x0C, {2}, std::string("\x00\x00\x01\x00\xff\xff\xff\xfe", 8)));
  ASSERT_EQ(loom_io_read_idx(&h, p.c_str()), LOOM_OK) << loom_last_error();
  Arr b(h);
  EXPECT_EQ(read(b), (std::vector<double>{256, -2}));
  spit(p, idx_bytes(0x0D, {1}, std::string("\x3f\xc0\x00\x00", 4)));  // 1.5f
  ASSERT_EQ(loom_io_read_idx(&h, p.c_str()), LOOM_OK);
  Arr c(h);
  EXPECT_EQ(read(c), (std::vector<double>{1.5}));
  std::remove(p.c_str());
}

TEST(Idx, ReadsGzipCompressedFiles) {
  std::string p = tmp_path("b.idx.gz");
  std::string raw = idx_bytes(0x08, {4}, std::string("\x09\x08\x07\x06", 4));
  gzFile f = gzopen(p.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  gzwrite(f, raw.data(), static_cast<unsigned>(raw.size()));
  gzclose(f);
  loom_ndarray h;
  ASSERT_EQ(loom_io_read_idx(&h, p.c_str()), LOOM_OK) << loom_last_error();
  Arr a(h);
  EXPECT_EQ(read(a), (std::vector<double>{9, 8, 7, 6}));
  std::remove(p.c_str());
}

TEST(Idx, DamagedFilesAreIoErrorsNamingTheFile) {
  std::string p = tmp_path("c.idx");
  std::string good = idx_bytes(0x08, {2, 2}, std::string("\x01\x02\x03\x04", 4));
  for (size_t len = 0; len < good.size(); ++len) {
    spit(p, good.substr(0, len));
    loom_ndarray h = nullptr;
    EXPECT_EQ(loom_io_read_idx(&h, p.c_str()), LOOM_ERR_IO) << len;
    EXPECT_EQ(h, nullptr);
    EXPECT_NE(std::string(loom_last_error()).find(p), std::string::npos);
  }
  spit(p, idx_bytes(0x0B, {1}, std::string("\x00\x01", 2)));
  loom_ndarray h;
  EXPECT_EQ(loom_io_read_idx(&h, p.c_str()), LOOM_ERR_IO);
  EXPECT_NE(std::string(loom_last_error()).find("0x0B"), std::string::npos) << loom_last_error();
  spit(p, good + "x");
  EXPECT_EQ(loom_io_read_idx(&h, p.c_str()), LOOM_ERR_IO);
  EXPECT_NE(std::string(loom_last_error()).find("trailing"), std::string::npos);
  EXPECT_EQ(loom_io_read_idx(&h, "/nonexistent/x.idx"), LOOM_ERR_IO);
  std::remove(p.c_str());
}

}  // namespace

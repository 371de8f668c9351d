// Batch iterators (order, last-batch modes, prefetch thread) and CSV files.
#include <dlpack/dlpack.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <set>
#include <thread>

#include "testutil.h"

using namespace lt;

namespace {

struct Iter {
  loom_dataiter h = nullptr;
  ~Iter() { loom_dataiter_free(h); }
};

// One epoch: the first column of every data row, the label of every row, and the pads.
struct Epoch {
  std::vector<std::vector<double>> data, label;
  std::vector<int64_t> pads;
};

Epoch run_epoch(loom_dataiter it) {
  Epoch e;
  for (;;) {
    int32_t has = 0;
    loom_ndarray d = nullptr, l = nullptr;
    int64_t pad = -1;
    EXPECT_EQ(loom_dataiter_next(&has, &d, &l, &pad, it), LOOM_OK) << loom_last_error();
    if (!has) break;
    Arr D(d), L(l);
    auto dv = read(D);
    auto sh = shape_of(D);
    std::vector<double> first;
    for (int64_t r = 0; r < sh[0]; ++r) first.push_back(dv[r * (dv.size() / sh[0])]);
    e.data.push_back(first);
    e.label.push_back(l ? read(L) : std::vector<double>{});
    e.pads.push_back(pad);
  }
  return e;
}

// 10 samples of shape (2,): data row i is (i, -i); label i is 100 + i.
struct Data {
  Arr x, y;
  Data() {
    std::vector<double> xv;
    for (int i = 0; i < 10; ++i) xv.insert(xv.end(), {double(i), double(-i)});
    std::vector<double> yv;
    for (int i = 0; i < 10; ++i) yv.push_back(100 + i);
    x = make({10, 2}, xv);
    y = make({10}, yv, LOOM_DTYPE_INT32);
  }
};

TEST(DataIter, LastBatchModesInOrder) {
  Data d;
  for (int prefetch : {0, 1, 3}) {
    SCOPED_TRACE(prefetch);
    Iter disc, pad, roll;
    ASSERT_EQ(loom_dataiter_create(&disc.h, d.x.h, d.y.h, 4, 0, LOOM_LAST_BATCH_DISCARD, prefetch), LOOM_OK);
    ASSERT_EQ(loom_dataiter_create(&pad.h, d.x.h, d.y.h, 4, 0, LOOM_LAST_BATCH_PAD, prefetch), LOOM_OK);
    ASSERT_EQ(loom_dataiter_create(&roll.h, d.x.h, nullptr, 4, 0, LOOM_LAST_BATCH_ROLL_OVER, prefetch), LOOM_OK);
    auto e = run_epoch(disc.h);
    EXPECT_EQ(e.data, (std::vector<std::vector<double>>{{0, 1, 2, 3}, {4, 5, 6, 7}}));
    EXPECT_EQ(e.label, (std::vector<std::vector<double>>{{100, 101, 102, 103}, {104, 105, 106, 107}}));
    e = run_epoch(pad.h);
    EXPECT_EQ(e.data.back(), (std::vector<double>{8, 9, 0, 1}));
    EXPECT_EQ(e.label.back(), (std::vector<double>{108, 109, 100, 101}));
    EXPECT_EQ(e.pads, (std::vector<int64_t>{0, 0, 2}));
    // Roll over: 8 and 9 open the next epoch.
    e = run_epoch(roll.h);
    EXPECT_EQ(e.data, (std::vector<std::vector<double>>{{0, 1, 2, 3}, {4, 5, 6, 7}}));
    EXPECT_TRUE(e.label[0].empty());
    ASSERT_EQ(loom_dataiter_reset(roll.h), LOOM_OK);
    e = run_epoch(roll.h);
    EXPECT_EQ(e.data, (std::vector<std::vector<double>>{{8, 9, 0, 1}, {2, 3, 4, 5}, {6, 7, 8, 9}}));
    ASSERT_EQ(loom_dataiter_reset(roll.h), LOOM_OK);
    EXPECT_EQ(run_epoch(roll.h).data.size(), 2u);
  }
}

TEST(DataIter, ShufflesFromTheSeededGeneratorWhateverThePrefetchDepth) {
  Data d;
  std::vector<Epoch> runs;
  for (int prefetch : {0, 2}) {
    loom_random_seed(42);
    Iter it;
    ASSERT_EQ(loom_dataiter_create(&it.h, d.x.h, d.y.h, 3, 1, LOOM_LAST_BATCH_PAD, prefetch), LOOM_OK);
    Epoch both;
    for (int epoch = 0; epoch < 2; ++epoch) {
      ASSERT_EQ(loom_dataiter_reset(it.h), LOOM_OK);
      auto e = run_epoch(it.h);
      both.data.insert(both.data.end(), e.data.begin(), e.data.end());
      both.label.insert(both.label.end(), e.label.begin(), e.label.end());
    }
    runs.push_back(both);
  }
  EXPECT_EQ(runs[0].data, runs[1].data);
  // Rows stay paired with their labels, and an epoch visits every sample.
  std::set<double> seen;
  for (size_t b = 0; b < 4; ++b)
    for (size_t i = 0; i < runs[0].data[b].size(); ++i) {
      EXPECT_EQ(runs[0].label[b][i], 100 + runs[0].data[b][i]);
      seen.insert(runs[0].data[b][i]);
    }
  EXPECT_EQ(seen.size(), 10u);
  std::vector<double> first(runs[0].data[0]);
  EXPECT_NE(first, (std::vector<double>{0, 1, 2}));
  EXPECT_NE(runs[0].data[0], runs[0].data[4]);  // each epoch draws a new order
}

TEST(DataIter, BadInputAndConcurrentUse) {
  Data d;
  Iter it;
  Arr y5 = make({5}, {1, 2, 3, 4, 5});
  EXPECT_EQ(loom_dataiter_create(&it.h, d.x.h, y5.h, 4, 0, 0, 1), LOOM_ERR_SHAPE);
  EXPECT_NE(std::string(loom_last_error()).find("data has 10 samples (shape (10,2)) but label has shape (5,)"),
            std::string::npos) << loom_last_error();
  EXPECT_EQ(loom_dataiter_create(&it.h, d.x.h, d.y.h, 0, 0, 0, 1), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(loom_dataiter_create(&it.h, d.x.h, d.y.h, 4, 0, 3, 1), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("last_batch 3"), std::string::npos);
  EXPECT_EQ(loom_dataiter_create(&it.h, nullptr, d.y.h, 4, 0, 0, 1), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(loom_dataiter_create(&it.h, d.x.h, d.y.h, 4, 0, 0, -1), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(loom_dataiter_reset(nullptr), LOOM_ERR_INVALID_ARGUMENT);
  ASSERT_EQ(loom_dataiter_create(&it.h, d.x.h, d.y.h, 2, 1, 0, 2), LOOM_OK);
  loom_dataiter freed = nullptr;
  ASSERT_EQ(loom_dataiter_create(&freed, d.x.h, d.y.h, 2, 0, 0, 2), LOOM_OK);
  loom_dataiter_free(freed);
  int32_t has;
  loom_ndarray a, b;
  int64_t pad;
  EXPECT_EQ(loom_dataiter_next(&has, &a, &b, &pad, freed), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("already freed"), std::string::npos);
  // Four threads draining one iterator get each batch exactly once, also when
  // they all make its first call (which starts the epoch) at once: 30 fresh
  // iterators, the threads released together.
  for (int round = 0; round < 30; ++round) {
    Iter fresh;
    ASSERT_EQ(loom_dataiter_create(&fresh.h, d.x.h, d.y.h, 2, 1, 0, round % 3), LOOM_OK);
    std::atomic<int> batches{0}, ready{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t)
      ts.emplace_back([&] {
        ++ready;
        while (ready.load() < 4) std::this_thread::yield();
        for (;;) {
          int32_t h = 0;
          loom_ndarray x = nullptr, y = nullptr;
          int64_t p;
          if (loom_dataiter_next(&h, &x, &y, &p, fresh.h) != LOOM_OK || !h) return;
          loom_ndarray_free(x);
          loom_ndarray_free(y);
          ++batches;
        }
      });
    for (auto &t : ts) t.join();
    EXPECT_EQ(batches.load(), 5) << "round " << round << ", prefetch " << round % 3;
  }
  // Freeing an iterator in the middle of an epoch stops its thread.
  Iter mid;
  ASSERT_EQ(loom_dataiter_create(&mid.h, d.x.h, d.y.h, 1, 0, 0, 4), LOOM_OK);
  ASSERT_EQ(loom_dataiter_next(&has, &a, &b, &pad, mid.h), LOOM_OK);
  loom_ndarray_free(a);
  loom_ndarray_free(b);
}

std::string write_file(const std::string &name, const std::string &text) {
  std::string path = testing::TempDir() + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

TEST(Csv, ReadsNumbersAndNamesBadFields) {
  auto path = write_file("loom_ok.csv", "a,b,c\n1, 2.5,-3\r\n\n4e2,5,6\n");
  loom_ndarray h = nullptr;
  ASSERT_EQ(loom_io_read_csv(&h, path.c_str(), LOOM_DTYPE_FLOAT64, 1), LOOM_OK) << loom_last_error();
  Arr a(h);
  EXPECT_EQ(shape_of(a), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(read(a), (std::vector<double>{1, 2.5, -3, 400, 5, 6}));
  EXPECT_EQ(loom_io_read_csv(&h, path.c_str(), LOOM_DTYPE_FLOAT64, 0), LOOM_ERR_IO);
  EXPECT_NE(std::string(loom_last_error()).find("line 1 column 1: 'a' is not a number"), std::string::npos)
      << loom_last_error();
  auto ragged = write_file("loom_ragged.csv", "1,2\n3\n");
  EXPECT_EQ(loom_io_read_csv(&h, ragged.c_str(), LOOM_DTYPE_FLOAT32, 0), LOOM_ERR_IO);
  EXPECT_NE(std::string(loom_last_error()).find("line 2 has 1 columns but the first row has 2"), std::string::npos)
      << loom_last_error();
  auto empty_field = write_file("loom_empty.csv", "1,,2\n");
  EXPECT_EQ(loom_io_read_csv(&h, empty_field.c_str(), LOOM_DTYPE_FLOAT32, 0), LOOM_ERR_IO);
  EXPECT_NE(std::string(loom_last_error()).find("column 2: '' is not a number"), std::string::npos);
  EXPECT_EQ(loom_io_read_csv(&h, "/no/such/file.csv", LOOM_DTYPE_FLOAT32, 0), LOOM_ERR_IO);
  EXPECT_NE(std::string(loom_last_error()).find("/no/such/file.csv"), std::string::npos);
  EXPECT_EQ(loom_io_read_csv(&h, path.c_str(), LOOM_DTYPE_UINT8, 1), LOOM_ERR_DTYPE);
  EXPECT_EQ(loom_io_read_csv(&h, nullptr, LOOM_DTYPE_FLOAT32, 0), LOOM_ERR_INVALID_ARGUMENT);
  for (auto &p : {path, ragged, empty_field}) std::remove(p.c_str());
}

// An IDX header whose extents overflow 64 bits is an error, not undefined behaviour.
TEST(Idx, ExtentsThatOverflowAreReported) {
  std::string bytes = {0, 0, 0x08, 3};  // uint8, 3 dimensions of 2^32 - 1
  for (int i = 0; i < 3; ++i) bytes += std::string(4, '\xff');
  auto path = write_file("loom_huge.idx", bytes);
  loom_ndarray h = nullptr;
  EXPECT_EQ(loom_io_read_idx(&h, path.c_str()), LOOM_ERR_IO);
  EXPECT_NE(std::string(loom_last_error()).find("overflows 64 bits"), std::string::npos) << loom_last_error();
  std::remove(path.c_str());
}

// Integers are read exactly; a field that is not an integer of the dtype, or lies
// outside its range, is an error naming the file, line and column (never a wrong value).
TEST(Csv, IntegerDTypesRefuseWhatTheyCannotHold) {
  loom_ndarray h = nullptr;
  auto good = write_file("loom_int.csv", "1,-2,3e2\n9007199254740993,0,-9223372036854775808\n");
  ASSERT_EQ(loom_io_read_csv(&h, good.c_str(), LOOM_DTYPE_INT64, 0), LOOM_OK) << loom_last_error();
  Arr a(h);
  int64_t v[6];
  ASSERT_EQ(loom_ndarray_copy_to_host(v, sizeof v, a.h), LOOM_OK);
  EXPECT_EQ(v[1], -2);
  EXPECT_EQ(v[2], 300);
  EXPECT_EQ(v[3], 9007199254740993LL);  // beyond 2^53: read as an integer, not through a double
  EXPECT_EQ(v[5], INT64_MIN);
  struct Case {
    const char *text, *want;
  };
  for (auto c : {Case{"1,1e10\n", "column 2: '1e10' is outside int32's range"},
                 Case{"1\nnan\n", "line 2 column 1: 'nan' is not an int32 (not finite)"},
                 Case{"-inf\n", "'-inf' is not an int32 (not finite)"},
                 Case{"3.7\n", "'3.7' is not an int32 (it has a fraction)"},
                 Case{"2147483648\n", "'2147483648' is outside int32's range"}}) {
    auto f = write_file("loom_bad_int.csv", c.text);
    EXPECT_EQ(loom_io_read_csv(&h, f.c_str(), LOOM_DTYPE_INT32, 0), LOOM_ERR_IO) << c.text;
    EXPECT_NE(std::string(loom_last_error()).find(c.want), std::string::npos) << loom_last_error();
    std::remove(f.c_str());
  }
  auto big = write_file("loom_big.csv", "99999999999999999999\n");
  EXPECT_EQ(loom_io_read_csv(&h, big.c_str(), LOOM_DTYPE_INT64, 0), LOOM_ERR_IO);
  EXPECT_NE(std::string(loom_last_error()).find("outside int64's range"), std::string::npos) << loom_last_error();
  for (auto &p : {good, big}) std::remove(p.c_str());
}

}  // namespace

namespace {

TEST(DLPack, ExportAndImportShareMemory) {
  Arr a = make({2, 3}, {1, 2, 3, 4, 5, 6}, LOOM_DTYPE_FLOAT64);
  void *p = nullptr;
  ASSERT_EQ(loom_ndarray_to_dlpack(&p, a.h), LOOM_OK) << loom_last_error();
  auto *m = static_cast<DLManagedTensor *>(p);
  EXPECT_EQ(m->dl_tensor.ndim, 2);
  EXPECT_EQ(m->dl_tensor.shape[1], 3);
  EXPECT_EQ(m->dl_tensor.dtype.code, kDLFloat);
  EXPECT_EQ(m->dl_tensor.dtype.bits, 64);
  EXPECT_EQ(m->dl_tensor.device.device_type, kDLCPU);
  static_cast<double *>(m->dl_tensor.data)[4] = 50;  // a write through the export is seen by Loom
  EXPECT_EQ(read(a)[4], 50);
  // Importing it back gives an array over the same memory; the deleter runs once
  // the imported array is freed.
  loom_ndarray back = nullptr;
  ASSERT_EQ(loom_ndarray_from_dlpack(&back, p), LOOM_OK) << loom_last_error();
  Arr b(back);
  EXPECT_EQ(read(b), (std::vector<double>{1, 2, 3, 4, 50, 6}));
  Arr c = call("multiply_scalar", {&b}, {{"scalar", "2"}});
  EXPECT_EQ(read(c)[5], 12);
}

struct Foreign {
  float data[6] = {1, 2, 3, 4, 5, 6};
  int64_t shape[2] = {2, 3};
  int64_t strides[2] = {1, 2};  // column-major
  DLManagedTensor t{};
  int deleted = 0;
  Foreign() {
    t.dl_tensor = DLTensor{data, {kDLCPU, 0}, 2, {kDLFloat, 32, 1}, shape, nullptr, 0};
    t.manager_ctx = this;
    t.deleter = [](DLManagedTensor *self) { static_cast<Foreign *>(self->manager_ctx)->deleted++; };
  }
};

TEST(DLPack, ImportsForeignTensorsAndRefusesWhatItCannotView) {
  Foreign f;
  {
    loom_ndarray h = nullptr;
    ASSERT_EQ(loom_ndarray_from_dlpack(&h, &f.t), LOOM_OK) << loom_last_error();
    Arr a(h);
    EXPECT_EQ(shape_of(a), (std::vector<int64_t>{2, 3}));
    Arr s = call("sum", {&a});
    EXPECT_EQ(read(s)[0], 21);
    EXPECT_EQ(f.deleted, 0);
  }
  loom_wait_all();
  EXPECT_EQ(f.deleted, 1);
  loom_ndarray h = nullptr;
  f.t.dl_tensor.strides = f.strides;
  EXPECT_EQ(loom_ndarray_from_dlpack(&h, &f.t), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("not compact row-major (stride 2 on axis 1, expected 1)"),
            std::string::npos) << loom_last_error();
  f.t.dl_tensor.strides = nullptr;
  f.t.dl_tensor.dtype = {kDLFloat, 32, 4};
  EXPECT_EQ(loom_ndarray_from_dlpack(&h, &f.t), LOOM_ERR_DTYPE);
  f.t.dl_tensor.dtype = {kDLFloat, 32, 1};
  f.t.dl_tensor.device = {kDLCUDA, 0};
  EXPECT_EQ(loom_ndarray_from_dlpack(&h, &f.t), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("only CPU tensors"), std::string::npos);
  EXPECT_EQ(f.deleted, 1);  // refused tensors are not consumed
  EXPECT_EQ(loom_ndarray_from_dlpack(&h, nullptr), LOOM_ERR_INVALID_ARGUMENT);
  loom_dlpack_delete(nullptr);
}


// HDF5 datasets written by h5py (tests/hdf5/make.py wrote tests/hdf5/mocha.h5): values,
// shapes, dtypes (with HDF5's conversions), row ranges, and the errors.
TEST(Io, Hdf5ReadsWhatH5pyWrote) {
  const std::string file = std::string(LOOM_SOURCE_DIR) + "/tests/hdf5/mocha.h5";
  auto load = [&](const char *name, int64_t b = 0, int64_t e = -1) {
    loom_ndarray h = nullptr;
    EXPECT_EQ(loom_io_read_hdf5(&h, file.c_str(), name, b, e), LOOM_OK) << loom_last_error();
    return Arr(h);
  };
  Arr data = load("data");
  EXPECT_EQ(shape_of(data), (std::vector<int64_t>{10, 3, 4}));
  EXPECT_EQ(dtype_of(data), LOOM_DTYPE_FLOAT32);
  auto dv = read(data);
  for (int r = 0; r < 10; ++r)
    for (int c = 0; c < 12; ++c) EXPECT_EQ(dv[r * 12 + c], (r * 100 + c) / 8.0) << r << "," << c;
  Arr rows = load("data", 3, 7);  // a hyperslab of rows 3..6
  EXPECT_EQ(shape_of(rows), (std::vector<int64_t>{4, 3, 4}));
  EXPECT_EQ(read(rows), std::vector<double>(dv.begin() + 36, dv.begin() + 84));
  EXPECT_EQ(shape_of(load("data", 10, 10)), (std::vector<int64_t>{0, 3, 4}));
  Arr label = load("label");
  EXPECT_EQ(dtype_of(label), LOOM_DTYPE_INT64);
  EXPECT_EQ(read(label), (std::vector<double>{0, 1, 2, 0, 1, 2, 0, 1, 2, 0}));
  Arr f64 = load("extra/f64");
  EXPECT_EQ(dtype_of(f64), LOOM_DTYPE_FLOAT64);
  auto fv = read(f64);  // numpy.linspace(-1, 1, 6): start + i * step, the last exactly 1
  for (int i = 0; i < 6; ++i) EXPECT_EQ(fv[i], i == 5 ? 1.0 : -1.0 + i * (2.0 / 5)) << i;
  Arr u8 = load("extra/u8");
  EXPECT_EQ(dtype_of(u8), LOOM_DTYPE_UINT8);
  EXPECT_EQ(read(u8), (std::vector<double>{200, 201, 202, 203, 204, 205}));
  Arr i16 = load("extra/i16");  // widened by HDF5
  EXPECT_EQ(dtype_of(i16), LOOM_DTYPE_INT32);
  EXPECT_EQ(read(i16), (std::vector<double>{-300, 7, 300}));
  Arr u32 = load("extra/u32");
  EXPECT_EQ(dtype_of(u32), LOOM_DTYPE_INT64);
  EXPECT_EQ(read(u32), (std::vector<double>{0, 4000000000.0}));
  Arr f16 = load("extra/f16");
  EXPECT_EQ(dtype_of(f16), LOOM_DTYPE_FLOAT32);
  EXPECT_EQ(read(f16), (std::vector<double>{0.5, -2.25}));

  auto expect_error = [&](const std::string &path, const char *name, int64_t b, int64_t e, loom_status st,
                          const std::string &text) {
    loom_ndarray h = nullptr;
    EXPECT_EQ(loom_io_read_hdf5(&h, path.c_str(), name, b, e), st) << name;
    EXPECT_NE(std::string(loom_last_error()).find(text), std::string::npos) << loom_last_error();
    EXPECT_EQ(h, nullptr);
  };
  expect_error(file, "images", 0, -1, LOOM_ERR_NOT_FOUND, "has no dataset 'images' (at its top level: data, extra, label)");
  expect_error(file, "extra/nothing", 0, -1, LOOM_ERR_NOT_FOUND, "has no dataset 'extra/nothing'");
  expect_error(file, "extra", 0, -1, LOOM_ERR_IO, "'extra' is not a dataset");
  expect_error(file, "data", 4, 11, LOOM_ERR_INVALID_ARGUMENT, "rows [4, 11) are outside dataset 'data' of 10 rows");
  expect_error(file, "extra/u64", 0, -1, LOOM_ERR_DTYPE, "integer type of 8 bytes (unsigned 64-bit does not fit int64)");
  expect_error(file, "extra/scalar", 0, -1, LOOM_ERR_SHAPE, "dataset 'extra/scalar' has 0 dimensions");
  expect_error("/nonexistent/x.h5", "data", 0, -1, LOOM_ERR_IO, "cannot open '/nonexistent/x.h5'");
  // Not HDF5, and HDF5 cut short: clear errors, never a crash.
  std::string dir = ::testing::TempDir();
  std::string text = dir + "/loom_not.h5", cut = dir + "/loom_cut.h5";
  std::ofstream(text) << "plain text, not HDF5\n";
  expect_error(text, "data", 0, -1, LOOM_ERR_IO, "is not an HDF5 file");
  {
    std::ifstream in(file, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }
  loom_ndarray h = nullptr;
  EXPECT_NE(loom_io_read_hdf5(&h, cut.c_str(), "data", 0, -1), LOOM_OK);
  EXPECT_NE(std::string(loom_last_error()).find(cut), std::string::npos) << loom_last_error();
  std::remove(text.c_str());
  std::remove(cut.c_str());
}

}  // namespace

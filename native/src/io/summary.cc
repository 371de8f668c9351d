#include "io/summary.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>

#include "common/base.h"

namespace loom {
namespace {

// ------------------------------------------------------------ protobuf encoding
// Just what Event, Summary, HistogramProto and GraphDef need: varints, 64-bit and
// 32-bit fixed fields and length-delimited fields.
void varint(std::string &o, uint64_t v) {
  while (v >= 0x80) {
    o += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  o += static_cast<char>(v);
}
void key(std::string &o, int field, int wire) { varint(o, (static_cast<uint64_t>(field) << 3) | wire); }
void field_varint(std::string &o, int field, uint64_t v) {
  key(o, field, 0);
  varint(o, v);
}
void field_double(std::string &o, int field, double v) {
  key(o, field, 1);
  char b[8];
  std::memcpy(b, &v, 8);  // little-endian, as protobuf's fixed64
  o.append(b, 8);
}
void field_float(std::string &o, int field, float v) {
  key(o, field, 5);
  char b[4];
  std::memcpy(b, &v, 4);
  o.append(b, 4);
}
void field_bytes(std::string &o, int field, const std::string &bytes) {
  key(o, field, 2);
  varint(o, bytes.size());
  o += bytes;
}
void field_packed_doubles(std::string &o, int field, const std::vector<double> &v) {
  std::string p;
  for (double d : v) {
    char b[8];
    std::memcpy(b, &d, 8);
    p.append(b, 8);
  }
  field_bytes(o, field, p);
}

double wall_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Event { double wall_time = 1; int64 step = 2; ... }
std::string event_head(int64_t step) {
  std::string e;
  field_double(e, 1, wall_time());
  field_varint(e, 2, static_cast<uint64_t>(step));
  return e;
}

uint32_t crc_table[256];
const bool crc_ready = [] {
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;  // reflected Castagnoli
    crc_table[i] = c;
  }
  return true;
}();

void make_dirs(const std::string &dir) {
  std::string part;
  for (size_t i = 0; i <= dir.size(); ++i) {
    if (i < dir.size() && dir[i] != '/') continue;
    part = dir.substr(0, i);
    if (part.empty()) continue;
    struct stat st{};
    if (stat(part.c_str(), &st) == 0) {
      LOOM_CHECK(S_ISDIR(st.st_mode), LOOM_ERR_IO, "SummaryWriter: '", part, "' exists and is not a directory");
      continue;
    }
    LOOM_CHECK(mkdir(part.c_str(), 0777) == 0 || errno == EEXIST, LOOM_ERR_IO, "SummaryWriter: cannot create the log directory '",
               part, "': ", std::strerror(errno));
  }
}

std::atomic<int> g_files{0};

}  // namespace

uint32_t crc32c(const void *data, size_t n) {
  (void)crc_ready;
  const unsigned char *p = static_cast<const unsigned char *>(data);
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; ++i) c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

uint32_t masked_crc32c(const void *data, size_t n) {
  uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

SummaryWriter::SummaryWriter(const std::string &logdir) {
  LOOM_CHECK(!logdir.empty(), LOOM_ERR_INVALID_ARGUMENT, "SummaryWriter: the log directory is empty");
  make_dirs(logdir);
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  path_ = logdir + "/events.out.tfevents." + std::to_string(static_cast<long long>(wall_time())) + "." + host +
          "." + std::to_string(getpid()) + "." + std::to_string(g_files.fetch_add(1));
  f_ = std::fopen(path_.c_str(), "wb");
  LOOM_CHECK(f_, LOOM_ERR_IO, "SummaryWriter: cannot write the event file '", path_, "': ", std::strerror(errno));
  std::string e = event_head(0);
  field_bytes(e, 3, "brain.Event:2");  // file_version
  write_event(e);
  flush();
}

SummaryWriter::~SummaryWriter() {
  if (f_) std::fclose(f_);
}

// TFRecord: uint64 length, uint32 masked CRC of the length, the data, uint32
// masked CRC of the data, all little-endian.
void SummaryWriter::write_event(const std::string &event) {
  uint64_t len = event.size();
  char head[12];
  std::memcpy(head, &len, 8);
  uint32_t lc = masked_crc32c(head, 8);
  std::memcpy(head + 8, &lc, 4);
  uint32_t dc = masked_crc32c(event.data(), event.size());
  std::lock_guard<std::mutex> lk(mu_);
  bool ok = std::fwrite(head, 1, 12, f_) == 12 && std::fwrite(event.data(), 1, event.size(), f_) == event.size() &&
            std::fwrite(&dc, 1, 4, f_) == 4;
  LOOM_CHECK(ok, LOOM_ERR_IO, "SummaryWriter: writing '", path_, "' failed: ", std::strerror(errno));
}

void SummaryWriter::flush() {
  std::lock_guard<std::mutex> lk(mu_);
  LOOM_CHECK(std::fflush(f_) == 0, LOOM_ERR_IO, "SummaryWriter: writing '", path_, "' failed: ", std::strerror(errno));
}

// Summary { repeated Value value = 1; }  Value { string tag = 1; float simple_value = 2; }
void SummaryWriter::add_scalar(const std::string &tag, double value, int64_t step) {
  LOOM_CHECK(!tag.empty(), LOOM_ERR_INVALID_ARGUMENT, "SummaryWriter.add_scalar: the tag is empty");
  std::string v;
  field_bytes(v, 1, tag);
  field_float(v, 2, static_cast<float>(value));
  std::string summary;
  field_bytes(summary, 1, v);
  std::string e = event_head(step);
  field_bytes(e, 5, summary);
  write_event(e);
}

// Value { string tag = 1; HistogramProto histo = 5; }  HistogramProto { double min = 1;
// double max = 2; double num = 3; double sum = 4; double sum_squares = 5;
// repeated double bucket_limit = 6 [packed]; repeated double bucket = 7 [packed]; }
void SummaryWriter::add_histogram(const std::string &tag, const NDArray &values, int64_t step, int bins) {
  LOOM_CHECK(!tag.empty(), LOOM_ERR_INVALID_ARGUMENT, "SummaryWriter.add_histogram: the tag is empty");
  LOOM_CHECK(bins >= 1 && bins <= 10000, LOOM_ERR_INVALID_ARGUMENT, "SummaryWriter.add_histogram '", tag,
             "': bins must be in [1, 10000], got ", bins);
  LOOM_CHECK(values.dtype() == kFloat32 || values.dtype() == kFloat64, LOOM_ERR_DTYPE,
             "SummaryWriter.add_histogram '", tag, "': values must be float32 or float64, got ",
             dtype_name(values.dtype()));
  const int64_t n = values.size();
  std::vector<double> x(static_cast<size_t>(n));
  if (values.dtype() == kFloat64) {
    values.copy_to_host(x.data(), x.size() * sizeof(double));
  } else {
    std::vector<float> f(static_cast<size_t>(n));
    values.copy_to_host(f.data(), f.size() * sizeof(float));
    for (int64_t i = 0; i < n; ++i) x[static_cast<size_t>(i)] = f[static_cast<size_t>(i)];
  }
  double lo = INFINITY, hi = -INFINITY, sum = 0, sq = 0, num = 0;
  for (double v : x) {
    if (!std::isfinite(v)) continue;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    sum += v;
    sq += v * v;
    num += 1;
  }
  LOOM_CHECK(num > 0, LOOM_ERR_INVALID_ARGUMENT, "SummaryWriter.add_histogram '", tag, "': the array of shape ",
             values.shape().str(), " has no finite values");
  std::vector<double> limit(static_cast<size_t>(bins)), count(static_cast<size_t>(bins), 0.0);
  const double width = (hi - lo) / bins;
  for (int b = 0; b < bins; ++b) limit[static_cast<size_t>(b)] = b + 1 == bins ? hi : lo + width * (b + 1);
  for (double v : x) {
    if (!std::isfinite(v)) continue;
    int b = width > 0 ? static_cast<int>((v - lo) / width) : bins - 1;
    count[static_cast<size_t>(std::min(std::max(b, 0), bins - 1))] += 1;
  }
  std::string h;
  field_double(h, 1, lo);
  field_double(h, 2, hi);
  field_double(h, 3, num);
  field_double(h, 4, sum);
  field_double(h, 5, sq);
  field_packed_doubles(h, 6, limit);
  field_packed_doubles(h, 7, count);
  std::string v;
  field_bytes(v, 1, tag);
  field_bytes(v, 5, h);
  std::string summary;
  field_bytes(summary, 1, v);
  std::string e = event_head(step);
  field_bytes(e, 5, summary);
  write_event(e);
}

// GraphDef { repeated NodeDef node = 1; }  NodeDef { string name = 1; string op = 2;
// repeated string input = 3; map<string, AttrValue> attr = 5; }  AttrValue { bytes s = 2; }
void SummaryWriter::add_graph(const Symbol &s) {
  IndexedGraph g = s.index();
  std::string graph;
  for (const Node *n : g.nodes) {
    std::string node;
    field_bytes(node, 1, n->name);
    field_bytes(node, 2, n->op ? Registry::get().mxnet_name(*n->op) : std::string("Variable"));
    for (const NodeEntry &in : n->inputs) {
      std::string name = in.node->name;
      if (in.index > 0) name += ":" + std::to_string(in.index);
      field_bytes(node, 3, name);
    }
    for (auto &p : n->params) {
      std::string value, entry;
      field_bytes(value, 2, p.second);
      field_bytes(entry, 1, p.first);
      field_bytes(entry, 2, value);
      field_bytes(node, 5, entry);
    }
    field_bytes(graph, 1, node);
  }
  std::string e = event_head(0);
  field_bytes(e, 4, graph);  // graph_def
  write_event(e);
}

}  // namespace loom

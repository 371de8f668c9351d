// dist_async: MXNet's asynchronous parameter server on MPI ranks. Every rank is a
// worker and also the server of the keys it owns (owner = a hash of the key modulo
// the ranks), served by a thread of its own on the plugin's point-to-point
// channels. A push goes to the key's owner, which applies the updater to its value
// at once (no waiting for other workers: updates land in arrival order); a pull
// asks the owner for its current value. As in MXNet, an updater is required.
// Each request is answered before the worker sends the next, so a worker never
// has two requests in flight and no two ranks can block each other's sends.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <thread>

#include "imperative/imperative.h"
#include "kvstore/comm.h"
#include "kvstore/kvstore.h"
#include "op/registry.h"

namespace loom {
namespace {

enum Tag : int32_t { kPush = 1, kPull = 2, kAck = 4, kData = 5 };

// The answer to every request: a status, and the reason when it is not LOOM_OK.
struct Reply {
  int32_t status = LOOM_OK;
  char message[252] = {0};
};

void comm_ok(int rc, const std::string &what) {
  if (rc != 0) fail(LOOM_ERR_IO, "kvstore dist_async: ", what, " failed: ", comm().last_error());
}

// A request to one server: the number of entries, then for each the key's length,
// the key, the payload's length and the payload (a push's gradient; none for a pull).
struct RequestWriter {
  std::vector<char> bytes = std::vector<char>(sizeof(uint32_t), 0);
  uint32_t count = 0;
  void add(const std::string &key, const void *payload, uint64_t n) {
    uint32_t k = static_cast<uint32_t>(key.size());
    size_t at = bytes.size();
    bytes.resize(at + sizeof k + k + sizeof n + n);
    std::memcpy(bytes.data() + at, &k, sizeof k);
    std::memcpy(bytes.data() + at + sizeof k, key.data(), k);
    std::memcpy(bytes.data() + at + sizeof k + k, &n, sizeof n);
    if (n) std::memcpy(bytes.data() + at + sizeof k + k + sizeof n, payload, n);
    ++count;
    std::memcpy(bytes.data(), &count, sizeof count);
  }
};

struct RequestEntry {
  std::string key;
  const char *payload;
  uint64_t bytes;
};

std::vector<RequestEntry> parse_request(const std::vector<char> &m) {
  size_t at = 0;
  auto take = [&](void *dst, size_t n) {
    LOOM_CHECK(m.size() - at >= n, LOOM_ERR_IO, "a request of ", m.size(), " bytes ends early");
    std::memcpy(dst, m.data() + at, n);
    at += n;
  };
  uint32_t count = 0;
  take(&count, sizeof count);
  std::vector<RequestEntry> out;
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t k = 0;
    take(&k, sizeof k);
    LOOM_CHECK(m.size() - at >= k, LOOM_ERR_IO, "a request's key runs past its end");
    RequestEntry e;
    e.key.assign(m.data() + at, k);
    at += k;
    take(&e.bytes, sizeof e.bytes);
    LOOM_CHECK(m.size() - at >= e.bytes, LOOM_ERR_IO, "a request's payload runs past its end");
    e.payload = m.data() + at;
    at += e.bytes;
    out.push_back(std::move(e));
  }
  return out;
}

// Live dist_async stores, so their server threads end before MPI is finalised at
// exit even when a program never frees its store.
std::mutex g_live_mu;
std::set<KVStore *> g_live;
void stop_all_at_exit() {
  std::lock_guard<std::mutex> lk(g_live_mu);
  for (KVStore *kv : g_live) kv->stop_server();
  g_live.clear();
}

// Waits until a reply has arrived, polling (and then sleeping a little longer each
// time) rather than blocking in MPI, whose blocking receive spins on a core that
// the servers and engine workers of this machine need.
void wait_for_reply() {
  auto start = std::chrono::steady_clock::now();
  auto nap = std::chrono::microseconds(5);
  for (;;) {
    int32_t found = 0, src = 0, tag = 0;
    size_t bytes = 0;
    comm_ok(comm().probe(LOOM_COMM_REPLIES, &found, &src, &tag, &bytes), "probe for a reply");
    if (found) return;
    if (std::chrono::steady_clock::now() - start < std::chrono::microseconds(50)) {
      std::this_thread::yield();
      continue;
    }
    std::this_thread::sleep_for(nap);
    nap = std::min(nap * 2, std::chrono::microseconds(100));
  }
}

}  // namespace

int KVStore::owner(const std::string &key) const {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : key) h = (h ^ c) * 1099511628211ull;
  return static_cast<int>(h % static_cast<uint64_t>(workers_));
}

void KVStore::start_server() {
  LOOM_CHECK(comm().thread_multiple(), LOOM_ERR_BACKEND_UNAVAILABLE,
             "kvstore 'dist_async' serves keys from a thread of each rank, which needs an MPI library "
             "with MPI_THREAD_MULTIPLE; this one does not provide it (use dist_sync)");
  static std::once_flag registered;
  std::call_once(registered, [] { std::atexit(stop_all_at_exit); });
  {
    std::lock_guard<std::mutex> lk(g_live_mu);
    g_live.insert(this);
  }
  server_ = std::thread([this] { serve(); });
}

void KVStore::stop_server() {
  if (!server_.joinable()) return;
  stop_.store(true);
  server_.join();
}

KVStore::~KVStore() {
  if (!async_) return;
  // Every worker's requests have been answered once all have reached the barrier;
  // then no server is needed any more.
  try {
    barrier();
  } catch (const Error &) {
  }
  {
    std::lock_guard<std::mutex> lk(g_live_mu);
    g_live.erase(this);
  }
  stop_server();
}

// The server loop: the next request from any worker, answered in arrival order.
// Idle, it polls with a growing sleep (up to 250 us) rather than spinning on a core.
void KVStore::serve() {
  RunInlineScope run_here;  // updates run on this thread, not behind this rank's training ops
  std::vector<char> buf;
  auto idle = std::chrono::microseconds(10);
  auto last = std::chrono::steady_clock::now();
  try {
    while (!stop_.load()) {
      int32_t found = 0, src = 0, tag = 0;
      size_t bytes = 0;
      comm_ok(comm().probe(LOOM_COMM_REQUESTS, &found, &src, &tag, &bytes), "probe for requests");
      if (!found) {
        // Requests come in bursts (a worker's keys one after another): poll on for a
        // moment after the last one, then sleep longer and longer between polls.
        if (std::chrono::steady_clock::now() - last < std::chrono::microseconds(200)) {
          std::this_thread::yield();
          continue;
        }
        std::this_thread::sleep_for(idle);
        idle = std::min(idle * 2, std::chrono::microseconds(250));
        continue;
      }
      idle = std::chrono::microseconds(10);
      buf.resize(bytes);
      comm_ok(comm().recv(LOOM_COMM_REQUESTS, src, tag, buf.data(), bytes), "receive of a request");
      last = std::chrono::steady_clock::now();
      Reply reply;
      std::vector<char> data;
      try {
        std::vector<RequestEntry> entries = parse_request(buf);
        std::lock_guard<std::mutex> lk(server_mu_);
        std::vector<Entry *> found_entries;
        for (const RequestEntry &r : entries) {  // everything checked before any update
          auto it = store_.find(r.key);
          LOOM_CHECK(it != store_.end(), LOOM_ERR_NOT_FOUND, "key '", r.key, "' was never initialised on rank ",
                     rank_, " (its server)");
          Entry &e = it->second;
          if (tag == kPush) {
            LOOM_CHECK(!updater_.empty(), LOOM_ERR_INVALID_ARGUMENT, "rank ", rank_, ", the server of key '",
                       r.key, "', has no updater: every worker of a dist_async store calls set_updater/set_optimizer");
            LOOM_CHECK(r.bytes == static_cast<uint64_t>(e.value.nbytes()), LOOM_ERR_SHAPE, "key '", r.key,
                       "' holds ", e.value.shape().str(), " ", dtype_name(e.value.dtype()), " (", e.value.nbytes(),
                       " bytes), but rank ", src, " pushed ", r.bytes, " bytes");
          } else {
            LOOM_CHECK(tag == kPull, LOOM_ERR_IO, "unknown request tag ", tag, " from rank ", src);
          }
          found_entries.push_back(&e);
        }
        size_t total = 0;
        for (size_t i = 0; i < entries.size(); ++i) {
          Entry &e = *found_entries[i];
          if (tag == kPush) {
            NDArray grad = NDArray::empty(e.value.shape(), e.value.dtype(), e.value.ctx());
            grad.copy_from_host(entries[i].payload, entries[i].bytes);
            apply_update(e, grad);
          } else {
            total += static_cast<size_t>(e.value.nbytes());
          }
        }
        if (tag == kPull) {  // the values after every update pushed before this pull
          data.resize(total);
          size_t at = 0;
          for (Entry *e : found_entries) {
            e->value.copy_to_host(data.data() + at, static_cast<size_t>(e->value.nbytes()));
            at += static_cast<size_t>(e->value.nbytes());
          }
        }
      } catch (const Error &err) {
        reply.status = err.status();
        std::snprintf(reply.message, sizeof reply.message, "%s", err.what());
      }
      comm_ok(comm().send(LOOM_COMM_REPLIES, src, kAck, &reply, sizeof reply), "reply to rank " + std::to_string(src));
      if (tag == kPull && reply.status == LOOM_OK)
        comm_ok(comm().send(LOOM_COMM_REPLIES, src, kData, data.data(), data.size()),
                "reply to rank " + std::to_string(src));
    }
  } catch (const std::exception &err) {
    std::fprintf(stderr, "loom: kvstore dist_async: the server of rank %d stopped: %s\n", rank_, err.what());
  }
}

// Waits for the owner's answer to this worker's request; a refusal is raised here
// with the server's reason.
void KVStore::await_reply(int dest, const std::string &key, const char *what) {
  Reply reply;
  wait_for_reply();
  comm_ok(comm().recv(LOOM_COMM_REPLIES, dest, kAck, &reply, sizeof reply),
          std::string(what) + " of key '" + key + "' (the answer of rank " + std::to_string(dest) + ")");
  if (reply.status != LOOM_OK)
    fail(static_cast<loom_status>(reply.status), "kvstore ", what, " (dist_async, rank ", rank_, "): ",
         reply.message);
}

// A push sends one request to each server holding some of the keys (servers in
// rank order, one at a time), with every key's gradient summed over this worker's
// devices first; keys this rank serves are updated here.
void KVStore::async_push(const std::vector<std::string> &order,
                         std::map<std::string, std::vector<NDArray>> &groups) {
  std::map<int, RequestWriter> requests;
  std::vector<std::pair<int, std::string>> names;  // for messages: each server's first key
  for (const std::string &key : order) {
    NDArray merged = reduce(key, groups[key]);
    Entry &e = store_[key];
    if (merged.ctx() != e.value.ctx()) merged = copy_to_context(merged, e.value.ctx());
    int dest = owner(key);
    if (dest == rank_) {
      std::lock_guard<std::mutex> lk(server_mu_);
      apply_update(e, merged);
      continue;
    }
    std::vector<char> host(static_cast<size_t>(merged.nbytes()));
    merged.copy_to_host(host.data(), host.size());
    if (!requests.count(dest)) names.emplace_back(dest, key);
    requests[dest].add(key, host.data(), host.size());
  }
  std::sort(names.begin(), names.end());
  for (auto &[dest, first] : names) {
    const RequestWriter &r = requests[dest];
    comm_ok(comm().send(LOOM_COMM_REQUESTS, dest, kPush, r.bytes.data(), r.bytes.size()),
            "push of key '" + first + "' to rank " + std::to_string(dest));
    await_reply(dest, first, "push");
  }
}

// A pull asks each server for all of its keys at once and copies the answers into
// the outputs; keys this rank serves are copied from here.
void KVStore::async_pull(const std::vector<std::string> &keys, const std::vector<NDArray> &outs) {
  std::map<int, std::vector<size_t>> by_server;
  for (size_t i = 0; i < keys.size(); ++i) {
    int dest = owner(keys[i]);
    if (dest != rank_) {
      by_server[dest].push_back(i);
      continue;
    }
    NDArray value;
    {
      std::lock_guard<std::mutex> lk(server_mu_);
      value = store_[keys[i]].value;  // read after the updates already pushed to the engine
    }
    copy_into(value, outs[i]);
  }
  for (auto &[dest, idx] : by_server) {
    RequestWriter r;
    size_t total = 0;
    for (size_t i : idx) {
      r.add(keys[i], nullptr, 0);
      total += static_cast<size_t>(store_[keys[i]].value.nbytes());
    }
    const std::string &first = keys[idx.front()];
    comm_ok(comm().send(LOOM_COMM_REQUESTS, dest, kPull, r.bytes.data(), r.bytes.size()),
            "pull of key '" + first + "' from rank " + std::to_string(dest));
    await_reply(dest, first, "pull");
    std::vector<char> data(total);
    wait_for_reply();
    comm_ok(comm().recv(LOOM_COMM_REPLIES, dest, kData, data.data(), data.size()),
            "pull of key '" + first + "' from rank " + std::to_string(dest));
    size_t at = 0;
    for (size_t i : idx) {
      const Entry &e = store_[keys[i]];
      NDArray value = NDArray::empty(e.value.shape(), e.value.dtype(), Context{});
      value.copy_from_host(data.data() + at, static_cast<size_t>(value.nbytes()));
      at += static_cast<size_t>(value.nbytes());
      copy_into(value, outs[i]);
    }
  }
}

}  // namespace loom

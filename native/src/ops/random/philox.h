// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3").
// Element i of a draw depends only on (seed, stream, i), never on threads.
#pragma once

#include <cstdint>

namespace loom {

struct Philox {
  uint32_t key[2];
  uint32_t ctr_hi[2];  // stream number occupies the upper counter words

  Philox(uint64_t seed, uint64_t stream) {
    key[0] = static_cast<uint32_t>(seed);
    key[1] = static_cast<uint32_t>(seed >> 32);
    ctr_hi[0] = static_cast<uint32_t>(stream);
    ctr_hi[1] = static_cast<uint32_t>(stream >> 32);
  }

  // Four 32-bit words for block `index`.
  void block(uint64_t index, uint32_t out[4]) const {
    uint32_t c0 = static_cast<uint32_t>(index), c1 = static_cast<uint32_t>(index >> 32),
             c2 = ctr_hi[0], c3 = ctr_hi[1];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; ++r) {
      uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
      uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
      uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
      uint32_t n1 = static_cast<uint32_t>(p1);
      uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
      uint32_t n3 = static_cast<uint32_t>(p0);
      c0 = n0;
      c1 = n1;
      c2 = n2;
      c3 = n3;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
  }
};

// Uniform in [0, 1) from 24 (float) or 53 (double) random bits.
inline float u01_float(uint32_t x) { return static_cast<float>(x >> 8) * (1.0f / 16777216.0f); }
inline double u01_double(uint32_t a, uint32_t b) {
  uint64_t v = (static_cast<uint64_t>(a) << 21) ^ (b >> 11);
  return static_cast<double>(v & ((uint64_t(1) << 53) - 1)) * (1.0 / 9007199254740992.0);
}

}  // namespace loom

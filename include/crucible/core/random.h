// The Random port. Production code takes a Random& so tests and benchmarks are reproducible.
#pragma once

#include <atomic>
#include <cstdint>

namespace crucible {

class Random {
 public:
  virtual ~Random() = default;
  virtual uint64_t next_u64() = 0;

  // Uniform in [0, 1).
  double uniform01();
  // Uniform in [0, n); n must be > 0.
  uint64_t uniform(uint64_t n);
};

// SplitMix64 over an atomic counter: deterministic for a seed, lock-free and thread-safe.
class SeededRandom : public Random {
 public:
  explicit SeededRandom(uint64_t seed) : state_(seed) {}
  uint64_t next_u64() override;

 private:
  std::atomic<uint64_t> state_;
};

// SplitMix64 finaliser: a good 64-bit mix of x, used for common random numbers.
uint64_t splitmix64(uint64_t x);

// The process-wide random source, seeded from std::random_device.
Random& system_random();

}  // namespace crucible

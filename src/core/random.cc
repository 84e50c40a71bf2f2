#include "crucible/core/random.h"

#include <random>

namespace crucible {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

double Random::uniform01() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

uint64_t Random::uniform(uint64_t n) { return n == 0 ? 0 : next_u64() % n; }

uint64_t SeededRandom::next_u64() {
  uint64_t x = state_.fetch_add(0x9e3779b97f4a7c15ULL, std::memory_order_relaxed);
  return splitmix64(x);
}

Random& system_random() {
  static SeededRandom random([] {
    std::random_device device;
    return (static_cast<uint64_t>(device()) << 32) ^ device();
  }());
  return random;
}

}  // namespace crucible

// The libFuzzer entry point every fuzz target defines. Built with clang and -fsanitize=fuzzer
// (CRUCIBLE_FUZZ=ON) it is a fuzzer; otherwise replay_main.cc drives it over the checked-in seed
// and regression corpora, as a ctest.
#pragma once

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

// A Journal kept in memory: for tests and the non-durable benchmark baseline.
#pragma once

#include <memory>

#include "crucible/journal/journal.h"

namespace crucible {

std::unique_ptr<Journal> make_memory_journal();

}  // namespace crucible

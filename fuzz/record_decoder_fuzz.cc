// Journal records as read back from disk: the body's JSON and its fields (attempts, error,
// delta, payload), which a damaged or hand-edited journal may hold in any shape. A bad record is
// kDataLoss, never an abort.
#include <cstdlib>
#include <string_view>

#include "crucible/core/json.h"
#include "crucible/journal/journal.h"
#include "fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto body = crucible::parse_json(text);
  if (!body) return 0;
  crucible::Record record;
  crucible::Status s = crucible::record_body_from_json(*body, record);
  if (!s && s.error().code() != crucible::ErrorCode::kDataLoss) std::abort();
  if (s) (void)crucible::json_dump(crucible::record_body_to_json(record));
  if (auto delta = crucible::delta_from_json(*body)) (void)crucible::delta_to_json(*delta);
  return 0;
}

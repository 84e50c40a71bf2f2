// JSON a user hands in: a signal's --value and a --set override. The first line is the
// override (key=value), the rest a JSON value; both are parsed with the depth and range limits,
// and the override is applied to a config.
#include <string>
#include <string_view>

#include "crucible/core/json.h"
#include "crucible/workflow/config_override.h"
#include "fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  size_t newline = text.find('\n');
  std::string_view assignment = text.substr(0, newline);
  std::string_view value = newline == std::string_view::npos ? std::string_view() : text.substr(newline + 1);
  if (auto parsed = crucible::parse_json(value)) (void)crucible::json_dump(*parsed);
  (void)crucible::parse_json_or_discarded(text);
  crucible::Json config =
      crucible::Json::parse(R"({"lr": 0.1, "epochs": 3, "model": {"name": "m", "layers": [1, 2]}})");
  crucible::Json before = config;
  if (!crucible::apply_config_override(config, assignment) && config != before) std::abort();  // refused: unchanged
  return 0;
}

// Pipelines from YAML: the loader, with its limits, and validation against the real stage
// registry. Any input must give a spec or located diagnostics: never a crash, a hang or unbounded
// memory.
#include <cstdlib>
#include <string_view>

#include "crucible/stages/library.h"
#include "crucible/workflow/loader.h"
#include "fuzz_target.h"

namespace {

const crucible::StageRegistry& registry() {
  static const crucible::StageRegistry r = crucible::builtin_registry();
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  crucible::LoadResult r = crucible::load_pipeline_text(text, "fuzz.yaml", registry());
  if (r.ok()) {
    (void)crucible::spec_to_json(*r.spec);
  } else if (r.diagnostics.empty()) {
    std::abort();  // a refusal must say why
  }
  (void)r.report();
  return 0;
}

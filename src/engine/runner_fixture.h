// The runner tests' fixture: a probe stage that counts runs and fails on demand, and a runner
// on an in-memory journal and a FakeClock. Private to the engine's tests.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "crucible/engine/runner.h"
#include "crucible/journal/memory_journal.h"
#include "crucible/stages/library.h"
#include "crucible/workflow/loader.h"

namespace crucible::engine_test {

using namespace std::chrono_literals;

// Counts executions per stage name and can be told to fail.
struct Probe {
  std::mutex mu;
  std::map<std::string, int> runs;
  std::map<std::string, std::vector<ErrorCode>> failures;  // consumed in order, per stage

  int count(const std::string& name) {
    std::lock_guard lock(mu);
    return runs[name];
  }
};

inline std::shared_ptr<Probe> probe() { return std::make_shared<Probe>(); }

// `probe` counts its runs per stage name and fails as told.
inline void register_probe_stage(StageRegistry& registry, std::shared_ptr<Probe> p) {
  (void)registry.register_stage("probe", [p] {
    StageDescription d;
    d.name = "probe";
    d.summary = "counts runs";
    d.options.push_back({"*", "any", false, Json(), "anything"});
    return make_function_stage(d, [p](Context& ctx, const StageOptions& o, std::stop_token) -> Status {
      std::string name = ctx.current_stage();
      {
        std::lock_guard lock(p->mu);
        p->runs[name]++;
        auto& f = p->failures[name];
        if (!f.empty()) {
          ErrorCode code = f.front();
          f.erase(f.begin());
          ctx.put_metric(name + ".partial", 1);  // must be rolled back
          return make_error(code, "injected failure");
        }
      }
      if (const Json* v = o.get("metric")) ctx.put_metric(name, *v);
      if (const Json* v = o.get("state")) ctx.assign(o.string_or("key", name), *v);
      return {};
    });
  });
}

// `thrower` throws; `waits_for_stop` blocks until its stop token fires.
inline void register_misbehaving(StageRegistry& registry) {
  (void)registry.register_stage("thrower", [] {
    StageDescription d;
    d.name = "thrower";
    d.summary = "throws";
    return make_function_stage(
        d, [](Context&, const StageOptions&, std::stop_token) -> Status { throw std::runtime_error("kaboom"); });
  });
  (void)registry.register_stage("waits_for_stop", [] {
    StageDescription d;
    d.name = "waits_for_stop";
    d.summary = "blocks until stopped";
    return make_function_stage(d, [](Context&, const StageOptions&, std::stop_token stop) -> Status {
      while (!stop.stop_requested()) std::this_thread::sleep_for(1ms);
      return make_error(ErrorCode::kCancelled, "stopped");
    });
  });
}

inline void register_probe(StageRegistry& registry, std::shared_ptr<Probe> p) {
  register_probe_stage(registry, std::move(p));
  register_misbehaving(registry);
}

class RunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_ = builtin_registry();
    register_probe(registry_, probe_);
    journal_ = make_memory_journal();
    runner_ = std::make_unique<Runner>(*journal_, executor_, clock_, random_, registry_);
  }

  WorkflowSpec load(const std::string& yaml) {
    LoadResult r = load_pipeline_text(yaml, "test.yaml", registry_);
    EXPECT_TRUE(r.ok()) << r.report();
    return r.ok() ? *r.spec : WorkflowSpec{};
  }

  RunResult run(const WorkflowSpec& spec, StartOptions options = {}) {
    auto r = runner_->start(spec, options);
    EXPECT_TRUE(r) << (r ? "" : r.error().to_string());
    return r ? std::move(*r) : RunResult{};
  }

  std::vector<Record> records_of(const RunId& id, RecordType type) {
    std::vector<Record> out;
    auto log = journal_->read_run(id);
    for (const Record& r : log->records) {
      if (r.type == type) out.push_back(r);
    }
    return out;
  }

  StageRegistry registry_;
  std::shared_ptr<Probe> probe_ = probe();
  std::unique_ptr<Journal> journal_;
  Executor executor_{4};
  FakeClock clock_;
  SeededRandom random_{42};
  std::unique_ptr<Runner> runner_;
};

}  // namespace crucible::engine_test

// What the CLI's commands share: exit codes, the journal a command opens, the stage library and
// the engine wiring (the composition root), and the pipeline loaders. Private to apps/crucible.
#pragma once

#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>

#include "commands.h"
#include "crucible/core/executor.h"
#include "crucible/engine/runner.h"
#include "crucible/journal/journal.h"
#include "crucible/llm/models.h"
#include "crucible/telemetry/events.h"

namespace crucible::cli {

constexpr int kOk = 0;
constexpr int kRunFailed = 1;
constexpr int kUsage = 2;
constexpr int kInterrupted = 130;  // the shell's convention for SIGINT; the run stays resumable

// Turns SIGINT and SIGTERM into a stop request for the runner. main() blocks both signals before
// any thread starts, so only this task, on the executor, receives them; a second signal ends the
// process at once.
class SignalStop {
 public:
  // `message`: what the first signal does, printed when it comes.
  SignalStop(Executor& executor, const char* message) {
    done_ = executor.run_in_background([this, message] {
      sigset_t set;
      sigemptyset(&set);
      sigaddset(&set, SIGINT);
      sigaddset(&set, SIGTERM);
      const timespec tick{0, 100'000'000};
      while (!quit_.load()) {
        int sig = sigtimedwait(&set, nullptr, &tick);
        if (sig != SIGINT && sig != SIGTERM) continue;
        if (source_.stop_requested()) std::_Exit(kInterrupted);
        std::fprintf(stderr, "\ncrucible: %s\n", message);
        source_.request_stop();
      }
    });
  }
  ~SignalStop() {
    quit_.store(true);
    done_.wait();
  }
  std::stop_token token() const { return source_.get_token(); }
  bool stopped() const { return source_.stop_requested(); }

 private:
  std::stop_source source_;
  std::atomic<bool> quit_{false};
  std::future<void> done_;
};

// Prints "crucible: <message>" to stderr and returns `code`.
int fail(int code, const std::string& message);

// The journal --journal names (or $CRUCIBLE_JOURNAL, or the default file).
Result<std::unique_ptr<Journal>> open_journal(const GlobalOptions& g);

// Where run reports and blobs go: beside a journal file, or .crucible/ for a database journal.
std::filesystem::path local_dir(const GlobalOptions& g);

// The stage families this binary offers, registered one by one, and the model registry the
// llm.* stages call through. Hedged model calls block on the network, so they get a pool of
// their own, larger than the core count.
struct StageLibrary {
  Executor model_executor{32};
  std::shared_ptr<ModelRegistry> models =
      std::make_shared<ModelRegistry>(model_executor, real_clock(), system_random());
  StageRegistry registry;

  StageLibrary();
};

// Everything a command that runs pipelines needs, wired once.
struct Engine {
  StageLibrary library;
  StageRegistry& registry = library.registry;
  std::unique_ptr<Journal> journal;
  std::unique_ptr<Executor> executor;
  std::unique_ptr<SignalStop> signals;  // stopped before the executor it runs on
  EventBus events;
  std::unique_ptr<Runner> runner;

  // What the first SIGINT or SIGTERM does, as the message printed then.
  const char* stop_message = "stopping (the run stays resumable; a second signal exits now)";

  Status open(const GlobalOptions& g, bool progress);
};

// A wall-clock time in ms as UTC, e.g. 2026-12-01 12:40:55Z.
std::string format_time(int64_t ms);

// The pipeline in `file`, or nullopt after printing its problems.
std::optional<WorkflowSpec> load_or_report(const GlobalOptions& g, const std::string& file,
                                           const StageRegistry& registry);

// The start options `--set` and `--run-id` give a pipeline: the whole config with each --set
// applied, and the parsed id. kInvalidArgument naming the flag.
Result<StartOptions> start_options(const WorkflowSpec& spec, const std::vector<std::string>& sets,
                                   const std::optional<std::string>& run_id);

// The spec a run was started with, reloaded from its journaled YAML.
Result<WorkflowSpec> spec_from_log(const RunLog& log, const StageRegistry& registry);
// The same from a journaled spec ({"format":"yaml","text","file"}).
Result<WorkflowSpec> spec_from_json(const Json& spec, const std::string& whose, const StageRegistry& registry);
Result<WorkflowSpec> spec_of_run(Engine& e, const RunId& id);

// spec_from_json() that parses each distinct pipeline text once: a worker claims many runs of a
// few pipelines, and parsing and validating one costs about as much as a short run. Thread-safe.
class SpecCache {
 public:
  explicit SpecCache(const StageRegistry& registry) : registry_(registry) {}
  Result<WorkflowSpec> load(const Json& spec, const std::string& whose);

 private:
  const StageRegistry& registry_;
  std::mutex mu_;
  std::map<std::string, WorkflowSpec> specs_;  // guarded by mu_, by file and text
};

}  // namespace crucible::cli

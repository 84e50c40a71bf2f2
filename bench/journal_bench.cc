#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "bench_util.h"
#include "benchmarks.h"
#include "crucible/core/clock.h"
#include "crucible/core/random.h"
#include "crucible/engine/replay.h"
#include "crucible/engine/runner.h"
#include "crucible/journal_sqlite/sqlite_journal.h"
#include "crucible/stages/library.h"
#include "crucible/telemetry/events.h"
#include "crucible/workflow/builder.h"

namespace crucible::bench {
namespace {

namespace fs = std::filesystem;

std::string scratch_dir() {
  fs::path dir = fs::temp_directory_path() / ("crucible-bench-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

// (a) The floor: one 200-byte row per BEGIN/COMMIT in WAL mode with synchronous=FULL.
Result<Json> raw_commits(const std::string& dir, int n) {
  sqlite3* db = nullptr;
  std::string path = dir + "/raw.db";
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) return make_error(ErrorCode::kUnavailable, "cannot open " + path);
  sqlite3_exec(db,
               "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
               "CREATE TABLE t(wf TEXT, step INT, out BLOB, PRIMARY KEY(wf, step))",
               nullptr, nullptr, nullptr);
  sqlite3_stmt* ins = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO t VALUES(?, ?, ?)", -1, &ins, nullptr);
  std::string blob(200, 'x');
  std::vector<double> lat;
  for (int i = 0; i < n; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
    sqlite3_bind_text(ins, 1, "wf", -1, SQLITE_STATIC);
    sqlite3_bind_int(ins, 2, i);
    sqlite3_bind_blob(ins, 3, blob.data(), static_cast<int>(blob.size()), SQLITE_STATIC);
    sqlite3_step(ins);
    sqlite3_reset(ins);
    sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
    lat.push_back(since_us(t0));
  }
  sqlite3_finalize(ins);
  sqlite3_close(db);
  return Json{{"p50_us", percentile(lat, 50)}, {"p99_us", percentile(lat, 99)}, {"commits", n}};
}

// Records the steady time of every stage.completed event.
class StepTimes : public EventSink {
 public:
  void on_event(const Event& e) override {
    if (e.type == EventType::kStageCompleted || e.type == EventType::kRunStarted) {
      times.push_back(std::chrono::steady_clock::now());
    }
  }
  std::vector<std::chrono::steady_clock::time_point> times;
};

Result<WorkflowSpec> ten_steps(const StageRegistry& registry, Durability d) {
  WorkflowBuilder b(d == Durability::kStrict ? "bench-strict" : "bench-batched");
  b.durability(d);
  for (int i = 0; i < 10; ++i) b.stage("step" + std::to_string(i), "noop");
  return b.build(registry);
}

// The journal alone: one strict step record per commit, no runner.
Result<Json> journal_appends(const std::string& dir, int n) {
  SqliteJournalOptions o;
  o.path = dir + "/appends.db";
  CRUCIBLE_ASSIGN_OR_RETURN(auto journal, open_sqlite_journal(o));
  Record start;
  start.type = RecordType::kRunStarted;
  start.run_id = *RunId::parse("appends");
  start.payload = {{"pipeline", "bench"}, {"spec_hash", "h"}};
  CRUCIBLE_RETURN_IF_ERROR(journal->append(start, Durability::kStrict));
  std::vector<double> lat;
  for (int i = 0; i < n; ++i) {
    Record r;
    r.type = RecordType::kStepCompleted;
    r.run_id = start.run_id;
    r.key = StepKey::from_string("/step" + std::to_string(i % 10));
    r.delta = {Mutation{Mutation::Kind::kComplete, "step", Json()}, Mutation{Mutation::Kind::kTrace, "step", Json()}};
    auto t0 = std::chrono::steady_clock::now();
    CRUCIBLE_RETURN_IF_ERROR(journal->append(std::move(r), Durability::kStrict));
    lat.push_back(since_us(t0));
  }
  return Json{{"p50_us", percentile(lat, 50)}, {"p99_us", percentile(lat, 99)}};
}

// (b) One 10-step pipeline at a time, strict durability.
Result<Json> strict_sequential(const std::string& dir, int workflows, const StageRegistry& registry) {
  SqliteJournalOptions o;
  o.path = dir + "/strict.db";
  CRUCIBLE_ASSIGN_OR_RETURN(auto journal, open_sqlite_journal(o));
  CRUCIBLE_ASSIGN_OR_RETURN(auto spec, ten_steps(registry, Durability::kStrict));
  Executor executor(2);
  SeededRandom random(7);
  EventBus bus;
  auto times = std::make_shared<StepTimes>();
  bus.add_sink(times);
  Runner runner(*journal, executor, real_clock(), random, registry, &bus);
  std::vector<double> steps, workflows_ms;
  for (int w = 0; w < workflows; ++w) {
    times->times.clear();
    auto t0 = std::chrono::steady_clock::now();
    auto r = runner.start(spec);
    workflows_ms.push_back(since_us(t0) / 1000.0);
    if (!r || r->status != RunStatus::kCompleted) return make_error(ErrorCode::kInternal, "strict run failed");
    for (size_t i = 1; i < times->times.size(); ++i) {
      steps.push_back(std::chrono::duration<double, std::micro>(times->times[i] - times->times[i - 1]).count());
    }
  }
  return Json{{"step_p50_us", percentile(steps, 50)},
              {"step_p99_us", percentile(steps, 99)},
              {"workflow_p50_ms", percentile(workflows_ms, 50)},
              {"workflows", workflows}};
}

// The step-ack probe: every few milliseconds, the time until everything appended so far is
// durable, plus the writer's commit delay (1 ms) that a batched record may wait first.
template <class TimePoint>
void probe_acks(Journal& journal, TimePoint deadline, std::vector<double>& acks, std::atomic<bool>& failed) {
  while (std::chrono::steady_clock::now() < deadline) {
    auto ts = std::chrono::steady_clock::now();
    if (!journal.flush()) {
      failed = true;
      return;
    }
    acks.push_back(since_us(ts) / 1000.0 + 1.0);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// (c) Many 10-step pipelines at once, batched durability: group commit throughput.
Result<Json> batched_concurrent(const std::string& dir, int lanes, double seconds, const StageRegistry& registry) {
  SqliteJournalOptions o;
  o.path = dir + "/batched.db";
  CRUCIBLE_ASSIGN_OR_RETURN(auto journal, open_sqlite_journal(o));
  CRUCIBLE_ASSIGN_OR_RETURN(auto spec, ten_steps(registry, Durability::kBatched));
  Executor executor(2);
  SeededRandom random(9);
  Runner runner(*journal, executor, real_clock(), random, registry);
  std::atomic<int64_t> workflows{0};
  std::atomic<bool> failed{false};
  std::vector<double> acks;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  auto t0 = std::chrono::steady_clock::now();
  {
    std::jthread probe([&] { probe_acks(*journal, deadline, acks, failed); });
    std::vector<std::jthread> threads;
    for (int l = 0; l < lanes; ++l) {
      threads.emplace_back([&] {
        while (std::chrono::steady_clock::now() < deadline) {
          auto r = runner.start(spec);
          if (!r || r->status != RunStatus::kCompleted) {
            failed = true;
            return;
          }
          workflows.fetch_add(1);
        }
      });
    }
  }
  double elapsed = since_us(t0) / 1e6;
  if (failed) return make_error(ErrorCode::kInternal, "a batched run failed");
  const int records_per_workflow = 22;  // RunStarted, 10 x (StepStarted, StepCompleted), RunCompleted
  double records = static_cast<double>(workflows.load()) * records_per_workflow;
  return Json{{"records_per_s", records / elapsed},
              {"workflows_per_s", static_cast<double>(workflows.load()) / elapsed},
              {"step_ack_p50_ms", percentile(acks, 50)},
              {"step_ack_p99_ms", percentile(acks, 99)},
              {"lanes", lanes},
              {"seconds", elapsed}};
}

// `runs` runs that stopped after 5 of their 10 steps.
Status write_interrupted_runs(const SqliteJournalOptions& o, int runs) {
  CRUCIBLE_ASSIGN_OR_RETURN(auto journal, open_sqlite_journal(o));
  std::vector<Record> batch;
  for (int i = 0; i < runs; ++i) {
    RunId id = *RunId::parse("r" + std::to_string(i));
    Record s;
    s.type = RecordType::kRunStarted;
    s.run_id = id;
    s.at_ms = 1;
    s.payload = {{"pipeline", "bench"}, {"spec_hash", "h"}, {"input", Json::object()}};
    batch.push_back(s);
    for (int k = 0; k < 5; ++k) {
      Record c;
      c.type = RecordType::kStepCompleted;
      c.run_id = id;
      c.key = StepKey::from_string("/step" + std::to_string(k));
      c.at_ms = 2;
      c.delta = {Mutation{Mutation::Kind::kComplete, "step" + std::to_string(k), Json()},
                 Mutation{Mutation::Kind::kTrace, "step" + std::to_string(k), Json()}};
      batch.push_back(std::move(c));
    }
    if (batch.size() > 5000) {
      CRUCIBLE_RETURN_IF_ERROR(journal->append(std::move(batch), Durability::kStrict));
      batch.clear();
    }
  }
  CRUCIBLE_RETURN_IF_ERROR(journal->append(std::move(batch), Durability::kStrict));
  return {};
}

// (d) 10,000 runs interrupted after 5 of 10 steps: time to read them back and rebuild every
// replay index, ready to continue at the first unfinished step.
Result<Json> recovery(const std::string& dir, int runs) {
  SqliteJournalOptions o;
  o.path = dir + "/recovery.db";
  CRUCIBLE_RETURN_IF_ERROR(write_interrupted_runs(o, runs));
  auto t0 = std::chrono::steady_clock::now();
  CRUCIBLE_ASSIGN_OR_RETURN(auto journal, open_sqlite_journal(o));
  CRUCIBLE_ASSIGN_OR_RETURN(auto logs, journal->read_unfinished());
  size_t ready = 0;
  for (const RunLog& log : logs) {
    auto index = build_replay_index(log);
    if (index.completed.size() == 5) ++ready;
  }
  double secs = since_us(t0) / 1e6;
  if (ready != static_cast<size_t>(runs))
    return make_error(ErrorCode::kInternal, "recovery saw " + std::to_string(ready) + " runs");
  return Json{{"recovery_s", secs}, {"runs", runs}, {"records", runs * 6}};
}

}  // namespace

Result<Json> run_journal(bool quick) {
  std::string dir = scratch_dir();
  StageRegistry registry = builtin_registry();
  auto raw = raw_commits(dir, quick ? 300 : 3000);
  if (!raw) return raw;
  auto appends = journal_appends(dir, quick ? 300 : 3000);
  if (!appends) return appends;
  auto strict = strict_sequential(dir, quick ? 30 : 300, registry);
  if (!strict) return strict;
  auto batched = batched_concurrent(dir, 256, quick ? 2.0 : 20.0, registry);
  if (!batched) return batched;
  auto rec = recovery(dir, quick ? 2000 : 10'000);
  if (!rec) return rec;
  fs::remove_all(dir);
  double raw_p50 = (*raw)["p50_us"], raw_p99 = (*raw)["p99_us"];
  double step_p50 = (*strict)["step_p50_us"], step_p99 = (*strict)["step_p99_us"];
  double rps = (*batched)["records_per_s"], ack = (*batched)["step_ack_p99_ms"], rs = (*rec)["recovery_s"];
  return Json{{"benchmark", "journal"},
              {"quick", quick},
              {"raw_commit_p50_us", raw_p50},
              {"raw_commit_p99_us", raw_p99},
              {"journal_append_p50_us", (*appends)["p50_us"]},
              {"journal_append_p99_us", (*appends)["p99_us"]},
              {"strict_step_p50_us", step_p50},
              {"strict_step_p99_us", step_p99},
              {"strict_workflow_p50_ms", (*strict)["workflow_p50_ms"]},
              {"batched_records_per_s", rps},
              {"batched_workflows_per_s", (*batched)["workflows_per_s"]},
              {"batched_step_ack_p50_ms", (*batched)["step_ack_p50_ms"]},
              {"batched_step_ack_p99_ms", ack},
              {"recovery_s", rs},
              {"recovery_runs", (*rec)["runs"]},
              {"goals",
               {{"strict_step_p50_le_raw_plus_15us", step_p50 <= raw_p50 + 15},
                {"strict_step_p99_le_2x_raw", step_p99 <= 2 * raw_p99},
                {"batched_records_per_s_ge_100k", rps >= 100'000},
                {"batched_step_ack_p99_le_5ms", ack <= 5},
                {"recovery_le_1s", rs <= 1.0}}},
              {"reference", "10-step workflow p50: Restate 14 ms, DBOS 18.6 ms on this machine kind"}};
}

}  // namespace crucible::bench

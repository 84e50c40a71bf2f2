// The `crucible` subcommands. Each returns the process exit code: 0 success, 1 the run failed,
// 2 usage or validation error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace crucible::cli {

struct GlobalOptions {
  std::optional<std::string> journal;  // --journal, else $CRUCIBLE_JOURNAL, else .crucible/journal.db
  std::string events_file;             // --events: JSONL telemetry
  bool json = false;
  bool quiet = false;
};

struct RunArgs {
  std::string file;
  std::vector<std::string> sets;
  std::optional<std::string> run_id;  // given, even empty: then it must be a valid id
  bool new_version = false;
  std::string durability;
  bool no_wait = false;
};

struct ResumeArgs {
  std::string run_id;
  std::vector<std::string> rerun_steps;
  std::vector<std::string> skip_steps;
  bool no_wait = false;
};

struct ListArgs {
  std::string status;
  std::string pipeline;
  std::string since;
  size_t limit = 20;
};

int cmd_run(const GlobalOptions& g, const RunArgs& a);

struct SubmitArgs {
  std::string file;
  std::vector<std::string> sets;
  std::optional<std::string> run_id;
  std::string queue = "default";
  int priority = 0;
  std::string partition;
  std::string timeout;
};
// `crucible submit`: enqueues a run for `crucible worker`s and prints its id.
int cmd_submit(const GlobalOptions& g, const SubmitArgs& a);

struct WorkerArgs {
  std::vector<std::string> queues;
  size_t concurrency = 8;
  std::string id;
  std::string lease = "15s";
  std::string poll = "200ms";
  std::string grace = "30s";
};
// `crucible worker`: claims and executes submitted runs until SIGTERM or SIGINT, then drains.
int cmd_worker(const GlobalOptions& g, const WorkerArgs& a);
int cmd_cancel(const GlobalOptions& g, const std::string& run_id, const std::string& reason);

struct QueueArgs {
  std::string name;
  std::optional<int> concurrency;
  std::string rate;  // N/period, e.g. 10/1m
  bool clear = false;
};
// `crucible queue set|show NAME`: a queue's limits, kept in the journal for every worker.
int cmd_queue_set(const GlobalOptions& g, const QueueArgs& a);
int cmd_queue_show(const GlobalOptions& g, const std::string& name);
// Live workers and the runs they hold; with `lost`, also workers whose heartbeats stopped within
// that duration (killed ones).
int cmd_workers(const GlobalOptions& g, const std::string& lost);

struct ScheduleArgs {
  std::string name;
  std::string cron;
  std::string file;
  std::vector<std::string> sets;
  std::string queue = "default";
  int priority = 0;
  bool backfill = false;
};
// `crucible schedule add|list|pause|resume|remove`: cron schedules that workers fire.
int cmd_schedule_add(const GlobalOptions& g, const ScheduleArgs& a);
int cmd_schedule_list(const GlobalOptions& g);
// `action`: pause, resume or remove.
int cmd_schedule_change(const GlobalOptions& g, const std::string& name, const std::string& action);
int cmd_validate(const GlobalOptions& g, const std::string& file);
int cmd_stages(const GlobalOptions& g);
int cmd_describe(const GlobalOptions& g, const std::string& stage);
int cmd_status(const GlobalOptions& g, const std::string& run_id);
// `crucible experiments show RUN_ID`: branches (config id, varying parameters, status, duration,
// metrics) and comparison verdicts.
int cmd_experiments_show(const GlobalOptions& g, const std::string& run_id);
int cmd_list(const GlobalOptions& g, const ListArgs& a);
int cmd_resume(const GlobalOptions& g, const ResumeArgs& a);
int cmd_signal(const GlobalOptions& g, const std::string& run_id, const std::string& name, const std::string& value);
int cmd_fork(const GlobalOptions& g, const std::string& run_id, const std::string& from,
             const std::optional<std::string>& new_id, bool no_wait);
struct ServeArgs {
  std::string listen = "127.0.0.1:8080";
  std::string pipelines;
  size_t workers = 8;  // in-process run slots; 0: runs wait for `crucible worker`s
  std::string queue = "default";
  bool allow_anonymous_read = false;
  std::string tls_cert;
  std::string tls_key;
  double rate_limit = 0;
  size_t max_body = 1 << 20;
  std::string ingress_wait = "30s";
};
// `crucible serve`: the HTTP API, the ingress and the dashboard, until SIGTERM or SIGINT.
int cmd_serve(const GlobalOptions& g, const ServeArgs& a);
// `crucible keys create|list|revoke`: API keys, stored hashed in the journal.
int cmd_keys_create(const GlobalOptions& g, const std::string& name, const std::string& scope);
int cmd_keys_list(const GlobalOptions& g);
int cmd_keys_revoke(const GlobalOptions& g, const std::string& id_or_name);

struct PruneArgs {
  std::string older_than;
  std::string blob_grace = "15m";
};
int cmd_prune(const GlobalOptions& g, const PruneArgs& a);
struct RandomScenarios {
  uint64_t count = 0;  // hedging: random scenarios to run beside the fixed table
  uint64_t seed = 1;
};
int cmd_bench(const GlobalOptions& g, const std::string& which, bool quick, const std::string& scenarios,
              const RandomScenarios& random);

}  // namespace crucible::cli

#include "record_batch.h"

#include <algorithm>
#include <map>

namespace crucible::pg_internal {

const char* const kUpdateRunSql =
    "UPDATE runs SET updated_ms = greatest(updated_ms, $1), status = coalesce($2, status), error = coalesce($3, "
    "error), spec_hash = coalesce($4, spec_hash), lease_owner = CASE WHEN $5 THEN '' ELSE lease_owner END, "
    "lease_expires_ms = CASE WHEN $5 THEN 0 ELSE lease_expires_ms END, wake_ms = CASE WHEN $7 THEN $8::bigint ELSE "
    "wake_ms END, waiting_on = CASE WHEN $7 THEN $9 ELSE waiting_on END WHERE run_id = $6";

namespace {

const char* const kInsertRunsSql =
    "INSERT INTO runs(run_id, pipeline, spec_hash, status, created_ms, updated_ms, parent_run, queue, priority, "
    "partition_key) SELECT id, pipeline, spec, status, at, at, parent, queue, priority, part FROM unnest($1::text[], "
    "$2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::int[], $9::text[]) WITH ORDINALITY "
    "AS t(id, pipeline, spec, status, at, parent, queue, priority, part, n) ORDER BY n";

const char* const kUpdateRunsSql =
    "UPDATE runs SET updated_ms = greatest(runs.updated_ms, c.at), status = coalesce(c.status, runs.status), error = "
    "coalesce(c.error, runs.error), spec_hash = coalesce(c.spec, runs.spec_hash), lease_owner = CASE WHEN c.releases "
    "THEN '' ELSE runs.lease_owner END, lease_expires_ms = CASE WHEN c.releases THEN 0 ELSE runs.lease_expires_ms "
    "END, wake_ms = CASE WHEN c.parks THEN c.wake ELSE runs.wake_ms END, waiting_on = CASE WHEN c.parks THEN "
    "c.waiting ELSE runs.waiting_on END FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], "
    "$6::bool[], $7::bool[], $8::bigint[], $9::text[]) AS c(id, at, status, error, spec, releases, parks, wake, "
    "waiting) WHERE runs.run_id = c.id";

// Every record of the batch in one statement. Its runs are locked FOR KEY SHARE, which a claimer's
// FOR UPDATE (and acquire_lease's) conflicts with, so no lease changes hands until the commit. If
// a run's lease epoch is not the one its records carry (re-checked on the latest row version if a
// claimer committed meanwhile), or the run does not exist, fewer runs are locked than the batch
// names; then every record gets a NULL sequence number and the NOT NULL constraint fails the
// statement: the whole batch rolls back and is written again group by group, where the offending
// group fails alone with its own error. The count is computed once per statement, so the check
// costs nothing per record.
const char* const kInsertRecordsSql =
    "WITH locked AS MATERIALIZED (SELECT r.run_id FROM runs r JOIN unnest($7::text[], $8::bigint[]) AS f(id, epoch) "
    "ON r.run_id = f.id WHERE f.epoch = 0 OR r.lease_epoch = f.epoch FOR KEY SHARE OF r) INSERT INTO records(run_id, "
    "seq, type, step_key, at_ms, body) SELECT t.id, CASE WHEN (SELECT count(*) FROM locked) = cardinality($7::text[]) "
    "THEN t.seq END, t.type, t.key, t.at, t.body FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], "
    "$5::bigint[], $6::text[]) AS t(id, seq, type, key, at, body)";

Param bool_param(bool b) { return std::string(b ? "t" : "f"); }

// What the batch does to one run.
struct RunInBatch {
  bool started = false;  // its kRunStarted record is in the batch
  uint64_t fence = 0;    // the epoch its fenced records carry (0: none)
  int64_t seq = 0;       // the sequence number of its last record so far
  std::optional<RunRowChange> change;
};

}  // namespace

void RunRowChange::then(const RunRowChange& later) {
  at_ms = std::max(at_ms, later.at_ms);
  if (later.status) status = later.status;
  if (later.error) error = later.error;
  if (later.spec_hash) spec_hash = later.spec_hash;
  releases = releases || later.releases;
  if (later.parks) {
    parks = true;
    wake_ms = later.wake_ms;
    waiting_on = later.waiting_on;
  }
}

std::optional<RunRowChange> run_row_change(const Record& r) {
  const bool new_spec =
      r.type == RecordType::kDecision && r.key.str() == "#spec" && json_member(r.payload, "spec_hash") != nullptr;
  const bool changes_run = r.type != RecordType::kStepStarted && r.type != RecordType::kStepCompleted &&
                           r.type != RecordType::kDecision && r.type != RecordType::kStepFailed &&
                           r.type != RecordType::kRunStarted;
  if (!changes_run && !new_spec) return std::nullopt;
  RunRowChange c;
  c.at_ms = r.at_ms;
  if (auto status = status_after(r); status && r.type != RecordType::kPromiseResolved) {
    c.status = std::string(run_status_name(*status));
  }
  if (r.type == RecordType::kRunFailed && r.error) c.error = r.error->message();
  if (new_spec) c.spec_hash = json_string(r.payload, "spec_hash");
  c.releases =
      r.type == RecordType::kRunCompleted || r.type == RecordType::kRunFailed || r.type == RecordType::kRunSuspended;
  c.parks = r.type == RecordType::kRunSuspended;
  if (auto at = wake_time(r); c.parks && at) c.wake_ms = std::to_string(*at);
  c.waiting_on = json_string(r.payload, "promise");
  return c;
}

std::vector<Param> update_run_params(const RunRowChange& c, const std::string& run) {
  return {std::to_string(c.at_ms), c.status,  c.error,     c.spec_hash, bool_param(c.releases), run,
          bool_param(c.parks),     c.wake_ms, c.waiting_on};
}

std::string array_literal(const std::vector<Param>& items) {
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    if (!items[i]) {
      out += "NULL";
      continue;
    }
    out += '"';
    for (char c : *items[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

std::string text_array(const std::vector<std::string>& items) {
  return array_literal(std::vector<Param>(items.begin(), items.end()));
}

std::optional<RecordBatchPlan> plan_record_batch(
    const GroupCommit::Batch& batch, const std::function<std::optional<int64_t>(const std::string&)>& last_seq) {
  std::map<std::string, RunInBatch> runs;
  std::vector<Param> new_ids, pipelines, hashes, statuses, created, parents, queues, priorities, partitions;
  std::vector<Param> ids, seqs, types, keys, ats, bodies;
  for (const auto& g : batch) {
    if (g->op) continue;
    for (size_t i = 0; i < g->records.size(); ++i) {
      const Record& r = g->records[i];
      const std::string run = r.run_id.str();
      auto [it, first] = runs.try_emplace(run);
      RunInBatch& in = it->second;
      if (r.type == RecordType::kRunStarted) {
        if (!first || r.fence_epoch != 0) return std::nullopt;
        Placement placement;
        std::string queue;  // empty: not submitted
        if (const Json* given = json_member(r.payload, "placement")) {
          auto parsed = Placement::from_json(*given);
          if (!parsed) return std::nullopt;
          placement = *parsed;
          queue = placement.queue;
        }
        in.started = true;
        new_ids.push_back(run);
        pipelines.push_back(json_string(r.payload, "pipeline"));
        hashes.push_back(json_string(r.payload, "spec_hash"));
        statuses.push_back(std::string(queue.empty() ? "running" : "queued"));
        created.push_back(std::to_string(r.at_ms));
        parents.push_back(json_string(r.payload, "parent_run"));
        queues.push_back(queue);
        priorities.push_back(std::to_string(placement.priority));
        partitions.push_back(placement.partition);
      } else {
        if (first) {
          // A run this journal has not numbered yet: the group-by-group path looks its number up.
          auto known = last_seq(run);
          if (!known) return std::nullopt;
          in.seq = *known;
        }
        if (r.fence_epoch != 0) {
          if (in.started || (in.fence != 0 && in.fence != r.fence_epoch)) return std::nullopt;
          in.fence = r.fence_epoch;
        }
      }
      if (auto change = run_row_change(r)) {
        if (in.change) {
          in.change->then(*change);
        } else {
          in.change = change;
        }
      }
      ids.push_back(run);
      seqs.push_back(std::to_string(++in.seq));
      types.push_back(std::string(record_type_name(r.type)));
      keys.push_back(r.key.str());
      ats.push_back(std::to_string(r.at_ms));
      bodies.push_back(i < g->bodies.size() ? g->bodies[i] : json_dump(record_body_to_json(r)));
    }
  }
  RecordBatchPlan plan;
  if (ids.empty()) return plan;
  if (!new_ids.empty()) {
    plan.statements.push_back({"crucible_insert_runs",
                               kInsertRunsSql,
                               {array_literal(new_ids), array_literal(pipelines), array_literal(hashes),
                                array_literal(statuses), array_literal(created), array_literal(parents),
                                array_literal(queues), array_literal(priorities), array_literal(partitions)}});
  }
  std::vector<Param> lock_ids, lock_epochs;  // each run once
  std::vector<Param> c_ids, c_at, c_status, c_error, c_spec, c_releases, c_parks, c_wake, c_waiting;
  for (const auto& [run, in] : runs) {
    plan.last_seq[run] = in.seq;
    lock_ids.push_back(run);
    lock_epochs.push_back(std::to_string(in.fence));
    if (!in.change) continue;
    const RunRowChange& c = *in.change;
    c_ids.push_back(run);
    c_at.push_back(std::to_string(c.at_ms));
    c_status.push_back(c.status);
    c_error.push_back(c.error);
    c_spec.push_back(c.spec_hash);
    c_releases.push_back(bool_param(c.releases));
    c_parks.push_back(bool_param(c.parks));
    c_wake.push_back(c.wake_ms);
    c_waiting.push_back(c.waiting_on);
    if (c.releases) plan.finished.push_back(run);
  }
  plan.statements.push_back(
      {"crucible_insert_records",
       kInsertRecordsSql,
       {array_literal(ids), array_literal(seqs), array_literal(types), array_literal(keys), array_literal(ats),
        array_literal(bodies), array_literal(lock_ids), array_literal(lock_epochs)}});
  if (!c_ids.empty()) {
    plan.statements.push_back({"crucible_update_runs",
                               kUpdateRunsSql,
                               {array_literal(c_ids), array_literal(c_at), array_literal(c_status),
                                array_literal(c_error), array_literal(c_spec), array_literal(c_releases),
                                array_literal(c_parks), array_literal(c_wake), array_literal(c_waiting)}});
  }
  return plan;
}

}  // namespace crucible::pg_internal

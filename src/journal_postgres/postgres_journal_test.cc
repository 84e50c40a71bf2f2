#include "crucible/journal_postgres/postgres_journal.h"

#include <atomic>
#include <thread>

#include <gtest/gtest.h>

#include "crucible/core/clock.h"
#include "crucible/testing/journal_conformance.h"
#include "crucible/testing/postgres_server.h"

namespace crucible::testing {
namespace {

// One real server for the test binary, a fresh database for each journal.
PostgresServer& server() {
  static std::unique_ptr<PostgresServer> s = [] {
    auto started_server = PostgresServer::start();
    CRUCIBLE_CHECK(started_server.has_value());
    return std::move(*started_server);
  }();
  return *s;
}

std::string fresh_url() {
  auto url = server().create_database();
  CRUCIBLE_CHECK(url.has_value());
  return *url;
}

std::unique_ptr<Journal> open_fresh(std::string* url_out = nullptr) {
  std::string url = fresh_url();
  if (url_out != nullptr) *url_out = url;
  auto j = open_postgres_journal(PostgresJournalOptions{url});
  EXPECT_TRUE(j) << j.error().to_string();
  return j ? std::move(*j) : nullptr;
}

INSTANTIATE_TEST_SUITE_P(Postgres, JournalConformance, ::testing::Values(JournalFactory([] { return open_fresh(); })));

TEST(PostgresJournal, RecordsSurviveReopeningAndAreSeenByAnotherConnection) {
  std::string url;
  {
    auto j = open_fresh(&url);
    ASSERT_TRUE(j->append(started("r1"), Durability::kStrict));
    ASSERT_TRUE(j->append(step("r1", RecordType::kStepCompleted, "/a"), Durability::kStrict));
    // A second journal on the same database (another worker) sees the committed records.
    auto other = open_postgres_journal(PostgresJournalOptions{url});
    ASSERT_TRUE(other) << other.error().to_string();
    auto log = (*other)->read_run(*RunId::parse("r1"));
    ASSERT_TRUE(log);
    EXPECT_EQ(log->records.size(), 2u);
  }
  auto again = open_postgres_journal(PostgresJournalOptions{url});
  ASSERT_TRUE(again);
  auto log = (*again)->read_run(*RunId::parse("r1"));
  ASSERT_TRUE(log);
  ASSERT_EQ(log->records.size(), 2u);
  EXPECT_EQ(log->records[1].key.str(), "/a");
}

TEST(PostgresJournal, BatchedAppendsBecomeDurableWithoutAFlush) {
  std::string url;
  auto j = open_fresh(&url);
  ASSERT_TRUE(j->append(started("r1"), Durability::kStrict));
  ASSERT_TRUE(j->append(step("r1", RecordType::kStepStarted, "/a"), Durability::kBatched));
  ASSERT_TRUE(j->append(step("r1", RecordType::kDecision, "/b"), Durability::kDeferred));
  auto reader = open_postgres_journal(PostgresJournalOptions{url});
  ASSERT_TRUE(reader);
  for (int i = 0; i < 200; ++i) {
    if ((*reader)->read_run(*RunId::parse("r1"))->records.size() == 3) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ((*reader)->read_run(*RunId::parse("r1"))->records.size(), 3u);
}

TEST(PostgresJournal, LargeValuesAreStoredInTheRows) {
  auto j = open_fresh();
  Record r = started("big");
  r.payload["input"] = Json{{"text", std::string(300'000, 'x')}};
  ASSERT_TRUE(j->append(r, Durability::kStrict));
  auto log = j->read_run(*RunId::parse("big"));
  ASSERT_TRUE(log);
  EXPECT_EQ(log->records[0].payload["input"]["text"].get<std::string>().size(), 300'000u);
  EXPECT_EQ(log->summary.pipeline, "p");
}

TEST(PostgresJournal, ManyConcurrentStrictAppendersShareCommits) {
  auto j = open_fresh();
  ASSERT_TRUE(j->append(started("r1"), Durability::kStrict));
  std::vector<std::jthread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        std::string key = "/t" + std::to_string(t) + "/" + std::to_string(i);
        EXPECT_TRUE(j->append(step("r1", RecordType::kStepCompleted, key.c_str()), Durability::kStrict));
      }
    });
  }
  threads.clear();
  auto log = j->read_run(*RunId::parse("r1"));
  ASSERT_TRUE(log);
  ASSERT_EQ(log->records.size(), 201u);
  for (size_t i = 1; i < log->records.size(); ++i) EXPECT_EQ(log->records[i].seq, log->records[i - 1].seq + 1);
}

TEST(PostgresJournal, ABadGroupDoesNotSpoilItsNeighbours) {
  auto j = open_fresh();
  ASSERT_TRUE(j->append(started("good"), Durability::kStrict));
  ASSERT_TRUE(j->append(started("other"), Durability::kStrict));
  // A batched record for a run that does not exist fails alone; the next call reports it, once:
  // the next append if the writer committed it first, else the flush.
  ASSERT_TRUE(j->append(step("ghost", RecordType::kStepCompleted, "/x"), Durability::kBatched));
  auto second = j->append(step("good", RecordType::kStepCompleted, "/a"), Durability::kBatched);
  auto flushed = j->flush();
  ASSERT_NE(second.has_value(), flushed.has_value());
  EXPECT_EQ((second ? flushed : second).error().code(), ErrorCode::kNotFound);
  if (!second) {
    ASSERT_TRUE(j->append(step("good", RecordType::kStepCompleted, "/a"), Durability::kStrict));
  }
  EXPECT_TRUE(j->flush());
  // Reported once, by whichever call comes next: here an append after the writer committed.
  ASSERT_TRUE(j->append(step("ghost", RecordType::kStepCompleted, "/z"), Durability::kBatched));
  for (int i = 0; i < 200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // the writer commits it on its own
    auto next = j->append(step("other", RecordType::kDecision, "/w"), Durability::kDeferred);
    if (!next) {
      EXPECT_EQ(next.error().code(), ErrorCode::kNotFound);
      break;
    }
  }
  EXPECT_TRUE(j->flush());
  EXPECT_EQ(j->read_run(*RunId::parse("good"))->records.size(), 2u);
  // A group of several records is all or nothing.
  auto mixed =
      j->append({step("good", RecordType::kStepCompleted, "/b"), step("ghost", RecordType::kStepCompleted, "/c")},
                Durability::kStrict);
  ASSERT_FALSE(mixed);
  EXPECT_EQ(j->read_run(*RunId::parse("good"))->records.size(), 2u);
  EXPECT_TRUE(j->append(step("good", RecordType::kStepCompleted, "/d"), Durability::kStrict));
  EXPECT_EQ(j->read_run(*RunId::parse("good"))->records.back().seq, 3u);
}

TEST(PostgresJournal, ARecordOfUnknownTypeIsDataLossNamingTheRun) {
  std::string url;
  auto j = open_fresh(&url);
  ASSERT_TRUE(j->append(started("r1"), Durability::kStrict));
  auto lease = j->acquire_lease(*RunId::parse("r1"), "worker-a", std::chrono::seconds(30));
  ASSERT_TRUE(lease);
  auto current = j->current_lease(*RunId::parse("r1"));
  ASSERT_TRUE(current && current->has_value());
  EXPECT_EQ((*current)->owner, "worker-a");
  EXPECT_EQ((*current)->epoch, lease->epoch);
  ASSERT_TRUE(server().sql("UPDATE records SET type = 'telepathy'", url.substr(url.rfind('/') + 1)));
  auto log = j->read_run(*RunId::parse("r1"));
  ASSERT_FALSE(log);
  EXPECT_EQ(log.error().code(), ErrorCode::kDataLoss);
  EXPECT_NE(log.error().message().find("unknown record type 'telepathy' in run r1"), std::string::npos);
}

TEST(PostgresJournal, RefusesADatabaseFromANewerVersion) {
  std::string url;
  { auto j = open_fresh(&url); }
  const std::string db = url.substr(url.rfind('/') + 1);
  ASSERT_TRUE(server().sql("UPDATE crucible_meta SET value = '99' WHERE key = 'schema_version'", db));
  auto j = open_postgres_journal(PostgresJournalOptions{url});
  ASSERT_FALSE(j);
  EXPECT_EQ(j.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(j.error().message().find("schema version 99, newer than this crucible supports (" +
                                     std::to_string(kPostgresSchemaVersion) + ")"),
            std::string::npos)
      << j.error().message();
}

TEST(PostgresJournal, MigratorsOnManyMachinesCreateTheSchemaOnce) {
  const std::string url = fresh_url();
  std::atomic<int> opened{0};
  std::vector<std::jthread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      auto j = open_postgres_journal(PostgresJournalOptions{url});
      EXPECT_TRUE(j) << j.error().to_string();
      if (j) ++opened;
    });
  }
  threads.clear();
  EXPECT_EQ(opened, 4);
}

TEST(PostgresJournal, AnUnreachableServerIsUnavailableAndNamesItWithoutThePassword) {
  auto j = open_postgres_journal(
      PostgresJournalOptions{"postgresql://crucible:hunter2@127.0.0.1:1/none", std::chrono::seconds(2)});
  ASSERT_FALSE(j);
  EXPECT_EQ(j.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(j.error().message().find("postgresql://crucible:***@127.0.0.1:1/none"), std::string::npos)
      << j.error().message();
  EXPECT_EQ(j.error().message().find("hunter2"), std::string::npos);
  auto bad = open_postgres_journal(PostgresJournalOptions{"mysql://x@y/z"});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::kInvalidArgument);
}

TEST(PostgresJournal, RedactsPasswordsOnly) {
  EXPECT_EQ(redact_url("postgresql://u:p@h:5/d"), "postgresql://u:***@h:5/d");
  EXPECT_EQ(redact_url("postgresql://u@h:5/d"), "postgresql://u@h:5/d");
  EXPECT_EQ(redact_url("postgres://h/d"), "postgres://h/d");
  EXPECT_EQ(redact_url("no url"), "no url");
  EXPECT_TRUE(is_postgres_url("postgres://h/d"));
  EXPECT_FALSE(is_postgres_url("/tmp/journal.db"));
}

// The server ends the journal's sessions (a restart, a failover, an idle timeout): the next
// calls reconnect, and nothing committed is lost.
TEST(PostgresJournal, ALostConnectionIsReestablished) {
  std::string url;
  auto j = open_fresh(&url);
  const std::string db = url.substr(url.rfind('/') + 1);
  ASSERT_TRUE(j->append(started("r1"), Durability::kStrict));
  ASSERT_TRUE(server().sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + db +
                           "' AND pid <> pg_backend_pid()"));
  auto log = j->read_run(*RunId::parse("r1"));
  ASSERT_TRUE(log) << log.error().to_string();
  EXPECT_TRUE(j->append(step("r1", RecordType::kStepCompleted, "/a"), Durability::kStrict));
  EXPECT_TRUE(j->put_value("r1", "k", 1));
  EXPECT_EQ(j->read_run(*RunId::parse("r1"))->records.size(), 2u);
}

// A server that is gone: calls fail with kUnavailable, a retryable code, and never crash.
TEST(PostgresJournal, AServerThatIsGoneIsUnavailable) {
  auto own = PostgresServer::start();
  ASSERT_TRUE(own) << own.error().to_string();
  auto url = (*own)->create_database();
  ASSERT_TRUE(url);
  auto j = open_postgres_journal(PostgresJournalOptions{*url, std::chrono::seconds(2)});
  ASSERT_TRUE(j);
  ASSERT_TRUE((*j)->append(started("r1"), Durability::kStrict));
  (*own)->kill_now();
  auto read = (*j)->read_run(*RunId::parse("r1"));
  ASSERT_FALSE(read);
  EXPECT_EQ(read.error().code(), ErrorCode::kUnavailable);
  auto write = (*j)->append(step("r1", RecordType::kStepCompleted, "/a"), Durability::kStrict);
  ASSERT_FALSE(write);
  EXPECT_TRUE(is_retryable(write.error())) << write.error().to_string();
  EXPECT_FALSE((*j)->list_runs(RunFilter{}));
  EXPECT_FALSE((*j)->put_value("s", "k", 1));
}

TEST(PostgresJournal, PruneReportsWhatItFreed) {
  auto j = open_fresh();
  for (int i = 0; i < 20; ++i) {
    std::string id = "old" + std::to_string(i);
    Record r = started(id.c_str(), 1000);
    r.payload["input"] = Json{{"text", std::string(20'000, 'y')}};
    ASSERT_TRUE(j->append(r, Durability::kStrict));
    ASSERT_TRUE(j->put_value(id, "k", i));
    ASSERT_TRUE(j->resolve_promise(*RunId::parse(id), "p", i));
    ASSERT_TRUE(j->append(step(id.c_str(), RecordType::kRunCompleted, "", 1000), Durability::kStrict));
  }
  // The promises' records moved the runs' last update to now.
  auto report = j->prune(PruneOptions{real_clock().now_ms() + 60'000});
  ASSERT_TRUE(report) << report.error().to_string();
  EXPECT_EQ(report->runs.size(), 20u);
  EXPECT_GT(report->journal_bytes_before, 0);
  EXPECT_GT(report->journal_bytes_after, 0);
  EXPECT_FALSE(j->get_value("old3", "k")->has_value());
  EXPECT_TRUE(j->list_runs(RunFilter{})->empty());
}

}  // namespace
}  // namespace crucible::testing

#include "crucible/journal_sqlite/sqlite_journal.h"

#include <sched.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "crucible/testing/journal_conformance.h"

namespace crucible::testing {
namespace {

namespace fs = std::filesystem;

std::string fresh_path(const std::string& name) {
  static int counter = 0;
  fs::path dir = fs::path(::testing::TempDir()) /
                 ("sqlite-" + std::to_string(::getpid()) + "-" + name + "-" + std::to_string(counter++));
  fs::remove_all(dir);
  return (dir / "journal.db").string();
}

std::unique_ptr<Journal> open_at(const std::string& path, size_t blob_threshold = kDefaultBlobThreshold) {
  SqliteJournalOptions o;
  o.path = path;
  o.blob_threshold = blob_threshold;
  auto j = open_sqlite_journal(o);
  EXPECT_TRUE(j) << (j ? "" : j.error().to_string());
  return j ? std::move(*j) : nullptr;
}

INSTANTIATE_TEST_SUITE_P(Sqlite, JournalConformance,
                         ::testing::Values(JournalFactory([] { return open_at(fresh_path("conformance")); })));

TEST(SqliteJournal, RecordsSurviveReopening) {
  std::string path = fresh_path("reopen");
  {
    auto j = open_at(path);
    ASSERT_TRUE(j->append(started("r1"), Durability::kStrict));
    Record done = step("r1", RecordType::kStepCompleted, "/a");
    done.delta = {Mutation{Mutation::Kind::kState, "k", Json{{"nested", {1, 2}}}}};
    ASSERT_TRUE(j->append(done, Durability::kBatched));
    ASSERT_TRUE(j->flush());
  }
  auto j = open_at(path);
  auto log = j->read_run(*RunId::parse("r1"));
  ASSERT_TRUE(log);
  ASSERT_EQ(log->records.size(), 2u);
  EXPECT_EQ(log->records[1].delta[0].value, (Json{{"nested", {1, 2}}}));
}

TEST(SqliteJournal, BatchedAppendsBecomeDurableWithoutAFlush) {
  std::string path = fresh_path("batched");
  auto j = open_at(path);
  ASSERT_TRUE(j->append(started("r1"), Durability::kStrict));
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(
        j->append(step("r1", RecordType::kStepCompleted, ("/s" + std::to_string(i)).c_str()), Durability::kBatched));
  }
  // The writer thread commits on its own; another connection sees it.
  for (int tries = 0; tries < 200; ++tries) {
    auto other = open_at(path);
    if (other->read_run(*RunId::parse("r1"))->records.size() == 101) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  FAIL() << "batched records were never committed";
}

TEST(SqliteJournal, LargeValuesGoToTheBlobStore) {
  std::string path = fresh_path("blobs");
  auto j = open_at(path, 1024);
  ASSERT_TRUE(j->append(started("r1"), Durability::kStrict));
  Record done = step("r1", RecordType::kStepCompleted, "/big");
  std::string big(100'000, 'z');
  done.delta = {Mutation{Mutation::Kind::kArtifact, "text", Json(big)}};
  ASSERT_TRUE(j->append(done, Durability::kStrict));
  auto log = j->read_run(*RunId::parse("r1"));
  ASSERT_TRUE(log);
  EXPECT_EQ(log->records[1].delta[0].value, big);
  // The journal row itself holds only the reference.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* q = nullptr;
  sqlite3_prepare_v2(db, "SELECT max(length(body)) FROM records", -1, &q, nullptr);
  ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
  EXPECT_LT(sqlite3_column_int(q, 0), 1000);
  sqlite3_finalize(q);
  sqlite3_close(db);
  EXPECT_TRUE(fs::exists(fs::path(path).parent_path() / "blobs"));
}

// A run whose spec and config are larger than the blob threshold is found, resumed and forked
// like any other: the payload's small fields stay in the record and the run's row.
TEST(SqliteJournal, ALargeRunStartedPayloadKeepsItsSummaryFields) {
  std::string path = fresh_path("big-start");
  auto j = open_at(path, 1024);
  Record s = started("big", 1000, "bigcfg");
  s.payload["input"] = Json{{"items", Json(std::vector<int>(4000, 7))}};
  ASSERT_TRUE(j->append(s, Durability::kStrict));
  auto log = j->read_run(*RunId::parse("big"));
  ASSERT_TRUE(log) << log.error().to_string();
  EXPECT_EQ(log->summary.pipeline, "bigcfg");
  EXPECT_EQ(log->summary.spec_hash, "abc");
  EXPECT_EQ(log->records[0].payload["input"]["items"].size(), 4000u);
  EXPECT_EQ(log->records[0].payload["pipeline"], "bigcfg");
  RunFilter f;
  f.pipeline = "bigcfg";
  auto runs = j->list_runs(f);
  ASSERT_TRUE(runs);
  ASSERT_EQ(runs->size(), 1u);
  EXPECT_EQ((*runs)[0].spec_hash, "abc");
}

int64_t journal_bytes(const std::string& path) {
  int64_t total = 0;
  for (const std::string& p : {path, path + "-wal"}) {
    std::error_code ec;
    auto size = fs::file_size(p, ec);
    if (!ec) total += static_cast<int64_t>(size);
  }
  return total;
}

// Finished runs whose records hold `value_bytes` of state each, all updated at t=1000.
void add_finished_runs(Journal& j, int runs, size_t value_bytes, const std::string& prefix = "old") {
  for (int i = 0; i < runs; ++i) {
    std::string id = prefix + std::to_string(i);
    ASSERT_TRUE(j.append(started(id.c_str(), 1000), Durability::kBatched));
    Record done = step(id.c_str(), RecordType::kStepCompleted, "/a", 1000);
    done.delta = {
        Mutation{Mutation::Kind::kState, "k", Json(std::string(value_bytes, static_cast<char>('a' + i % 26)))}};
    ASSERT_TRUE(j.append(done, Durability::kBatched));
    ASSERT_TRUE(j.append(step(id.c_str(), RecordType::kRunCompleted, "", 1000), Durability::kBatched));
  }
  ASSERT_TRUE(j.flush());
}

TEST(SqliteJournal, PruneGivesTheSpaceBack) {
  std::string path = fresh_path("reclaim");
  auto j = open_at(path);
  add_finished_runs(*j, 200, 20'000);
  ASSERT_TRUE(j->append(started("keep", 9000), Durability::kStrict));
  const int64_t before = journal_bytes(path);
  ASSERT_GT(before, 4'000'000);
  auto report = j->prune(PruneOptions{2000});
  ASSERT_TRUE(report) << report.error().to_string();
  EXPECT_EQ(report->runs.size(), 200u);
  EXPECT_GE(report->journal_bytes_before, before);
  EXPECT_LT(report->journal_bytes_after, before / 10);
  EXPECT_EQ(report->journal_bytes_after, journal_bytes(path));
  EXPECT_TRUE(j->read_run(*RunId::parse("keep")));
  // The journal goes on as before.
  ASSERT_TRUE(j->append(step("keep", RecordType::kStepCompleted, "/a", 9000), Durability::kStrict));
  EXPECT_EQ(j->read_run(*RunId::parse("keep"))->records.size(), 2u);
}

// A journal written before auto_vacuum was on is vacuumed in full once, and incrementally after.
TEST(SqliteJournal, PruneReclaimsAnOlderJournalToo) {
  std::string path = fresh_path("reclaim-old");
  {
    auto j = open_at(path);
    add_finished_runs(*j, 100, 20'000);
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA auto_vacuum=NONE; VACUUM", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto j = open_at(path);
  const int64_t before = journal_bytes(path);
  auto report = j->prune(PruneOptions{2000});
  ASSERT_TRUE(report) << report.error().to_string();
  EXPECT_EQ(report->runs.size(), 100u);
  EXPECT_LT(report->journal_bytes_after, before / 10);
  add_finished_runs(*j, 100, 20'000, "again");
  auto second = j->prune(PruneOptions{2000});
  ASSERT_TRUE(second);
  EXPECT_EQ(second->runs.size(), 100u);
  EXPECT_LT(second->journal_bytes_after, second->journal_bytes_before / 10);
}

// Blobs go when nothing references them any more: not while another run, or the LLM cache,
// still does, and not within the grace period that covers a record about to be appended.
TEST(SqliteJournal, PruneRemovesBlobsNothingReferences) {
  std::string path = fresh_path("blob-gc");
  const fs::path blobs = fs::path(path).parent_path() / "blobs";
  auto j = open_at(path, 1024);
  auto finished_with = [&](const char* id, int64_t at, const std::string& value) {
    ASSERT_TRUE(j->append(started(id, at), Durability::kStrict));
    Record done = step(id, RecordType::kStepCompleted, "/a", at);
    done.delta = {Mutation{Mutation::Kind::kArtifact, "big", Json(value)}};
    ASSERT_TRUE(j->append(done, Durability::kStrict));
    ASSERT_TRUE(j->append(step(id, RecordType::kRunCompleted, "", at), Durability::kStrict));
  };
  finished_with("a", 1000, std::string(5000, 'x'));  // shared with b
  finished_with("b", 9000, std::string(5000, 'x'));
  finished_with("c", 1000, std::string(5000, 'y'));  // c's alone
  BlobStore store(blobs.string());
  auto cached = store.put("a completion the LLM cache holds");
  ASSERT_TRUE(cached);
  fs::create_directories(blobs / "llm-cache");
  std::ofstream(blobs / "llm-cache" / "key") << *cached << "\n";
  auto orphan = store.put("written by a run that crashed before its record");
  ASSERT_TRUE(orphan);
  auto count = [&] {
    size_t n = 0;
    for (const auto& e : fs::recursive_directory_iterator(blobs)) n += e.is_regular_file() ? 1 : 0;
    return n;
  };
  ASSERT_EQ(count(), 5u);                     // x, y, the cached completion, its index entry, the orphan
  auto fresh = j->prune(PruneOptions{2000});  // within the grace period: rows go, blobs stay
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->runs.size(), 2u);
  EXPECT_EQ(fresh->blobs_removed, 0u);
  auto swept = j->prune(PruneOptions{2000, std::chrono::milliseconds(0)});
  ASSERT_TRUE(swept) << swept.error().to_string();
  EXPECT_EQ(swept->blobs_removed, 2u);  // y and the orphan
  EXPECT_GT(swept->blob_bytes_freed, 5000);
  EXPECT_EQ(count(), 3u);
  auto b = j->read_run(*RunId::parse("b"));
  ASSERT_TRUE(b) << b.error().to_string();
  EXPECT_EQ(b->records[1].delta[0].value, Json(std::string(5000, 'x')));
  EXPECT_TRUE(store.get(*cached));
}

TEST(SqliteJournal, RefusesAJournalFromANewerVersion) {
  std::string path = fresh_path("newer");
  { open_at(path); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_exec(db, "UPDATE meta SET value = '99' WHERE key = 'schema_version'", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  SqliteJournalOptions o;
  o.path = path;
  auto j = open_sqlite_journal(o);
  ASSERT_FALSE(j);
  EXPECT_EQ(j.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(j.error().message().find("schema version 99"), std::string::npos);
}

// Processes that start at once on a journal nobody has created yet (a worker and a status call,
// several workers) all open it: each migration runs once, inside the transaction that checks it.
TEST(SqliteJournal, ConcurrentFirstOpensAllSucceed) {
  for (int round = 0; round < 10; ++round) {
    std::string path = fresh_path("first-open");
    constexpr int kOpeners = 6;
    std::vector<std::string> errors(kOpeners);
    std::vector<std::thread> openers;
    for (int i = 0; i < kOpeners; ++i) {
      openers.emplace_back([&, i] {
        SqliteJournalOptions o;
        o.path = path;
        auto j = open_sqlite_journal(o);
        if (!j) {
          errors[i] = j.error().to_string();
          return;
        }
        const std::string run = "r" + std::to_string(i);
        Status s = (*j)->append(started(run.c_str()), Durability::kStrict);
        if (!s) errors[i] = s.error().to_string();
      });
    }
    for (std::thread& t : openers) t.join();
    for (int i = 0; i < kOpeners; ++i) EXPECT_EQ(errors[i], "") << "round " << round << ", opener " << i;
    auto j = open_at(path);
    auto runs = j->list_runs({});
    ASSERT_TRUE(runs);
    EXPECT_EQ(runs->size(), static_cast<size_t>(kOpeners));
  }
}

// A journal written before queues existed (schema 1) gains them on open and keeps its runs.
TEST(SqliteJournal, MigratesAVersionOneJournal) {
  std::string path = fresh_path("v1");
  {
    auto j = open_at(path);
    ASSERT_TRUE(j->append(testing::started("old"), Durability::kStrict));
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  std::string downgrade = "DROP INDEX runs_by_queue;";
  for (const char* column :
       {"queue", "priority", "partition_key", "claims", "started_ms", "wake_ms", "waiting_on", "cancel_requested"}) {
    downgrade += std::string("ALTER TABLE runs DROP COLUMN ") + column + ";";
  }
  downgrade += "UPDATE meta SET value = '1' WHERE key = 'schema_version'";
  ASSERT_EQ(sqlite3_exec(db, downgrade.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  sqlite3_close(db);
  auto j = open_at(path);
  auto old = j->read_run(*RunId::parse("old"));
  ASSERT_TRUE(old) << old.error().to_string();
  EXPECT_EQ(old->summary.status, RunStatus::kRunning);
  EXPECT_EQ(old->summary.queue, "");
  ASSERT_TRUE(j->append(testing::submitted("new"), Durability::kStrict));
  auto claimed = j->claim_runs(testing::claim("w", 5, testing::wall_now() + 3'600'000));
  EXPECT_EQ(testing::claimed_ids(claimed), std::vector<std::string>{"new"});
}

// A damaged record (edited by hand, or by a disk) is data loss naming where, never an abort.
TEST(SqliteJournal, AFieldOfTheWrongTypeIsDataLossNamingTheRecord) {
  std::string path = fresh_path("damaged");
  {
    auto j = open_at(path);
    ASSERT_TRUE(j->append(started("r1"), Durability::kStrict));
    ASSERT_TRUE(j->append(step("r1", RecordType::kStepCompleted, "/a"), Durability::kStrict));
  }
  const char* bodies[] = {R"({"attempts": "x"})",      R"({"duration_us": 1.5})",       R"({"error": "boom"})",
                          R"({"error": {"code": 7}})", R"({"delta": {"op": "state"}})", R"([1, 2])"};
  const char* fields[] = {"'attempts'", "'duration_us'", "'error'", "'error.code'", "'delta'", "not an object"};
  for (size_t i = 0; i < std::size(bodies); ++i) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    std::string sql = std::string("UPDATE records SET body = '") + bodies[i] + "' WHERE seq = 2";
    ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
    auto j = open_at(path);
    auto log = j->read_run(*RunId::parse("r1"));
    ASSERT_FALSE(log) << bodies[i];
    EXPECT_EQ(log.error().code(), ErrorCode::kDataLoss) << bodies[i];
    EXPECT_NE(log.error().message().find("run 'r1' record 2"), std::string::npos) << log.error().message();
    EXPECT_NE(log.error().message().find(fields[i]), std::string::npos) << log.error().message();
  }
}

TEST(SqliteJournal, UnopenablePathIsUnavailable) {
  SqliteJournalOptions o;
  o.path = "/proc/crucible-cannot-write-here/journal.db";
  auto j = open_sqlite_journal(o);
  ASSERT_FALSE(j);
  EXPECT_EQ(j.error().code(), ErrorCode::kUnavailable);
}

TEST(SqliteJournal, ManyConcurrentStrictAppendersShareCommits) {
  std::string path = fresh_path("group");
  auto j = open_at(path);
  constexpr int kThreads = 16, kEach = 40;
  for (int t = 0; t < kThreads; ++t)
    ASSERT_TRUE(j->append(started(("r" + std::to_string(t)).c_str()), Durability::kStrict));
  auto t0 = std::chrono::steady_clock::now();
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        std::string run = "r" + std::to_string(t);
        for (int i = 0; i < kEach; ++i) {
          EXPECT_TRUE(j->append(step(run.c_str(), RecordType::kStepCompleted, ("/s" + std::to_string(i)).c_str()),
                                Durability::kStrict));
        }
      });
    }
  }
  (void)t0;
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(j->read_run(*RunId::parse("r" + std::to_string(t)))->records.size(), static_cast<size_t>(kEach + 1));
  }
}

TEST(SqliteJournal, ABadGroupDoesNotSpoilItsNeighbours) {
  std::string path = fresh_path("isolation");
  auto j = open_at(path);
  ASSERT_TRUE(j->append(started("good"), Durability::kStrict));
  std::vector<std::jthread> threads;
  std::atomic<int> ok{0}, not_found{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        const char* run = t % 2 == 0 ? "good" : "ghost";
        auto s = j->append(step(run, RecordType::kStepCompleted, "/x"), Durability::kStrict);
        if (s)
          ok++;
        else if (s.error().code() == ErrorCode::kNotFound)
          not_found++;
      }
    });
  }
  threads.clear();
  EXPECT_EQ(ok.load(), 80);
  EXPECT_EQ(not_found.load(), 80);
  EXPECT_EQ(j->read_run(*RunId::parse("good"))->records.size(), 81u);
}

// Another process holding the file's lock past the busy timeout fails the commit cleanly
// (kUnavailable, nothing written); once it lets go the journal works again.
TEST(SqliteJournal, ABusyFileIsUnavailableAndTheJournalRecovers) {
  std::string path = fresh_path("busy");
  SqliteJournalOptions o;
  o.path = path;
  o.busy_timeout = std::chrono::milliseconds(50);
  auto j = open_sqlite_journal(o);
  ASSERT_TRUE(j);
  ASSERT_TRUE((*j)->append(started("r1"), Durability::kStrict));
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
  auto blocked = (*j)->append(step("r1", RecordType::kStepCompleted, "/a"), Durability::kStrict);
  ASSERT_FALSE(blocked);
  EXPECT_EQ(blocked.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(blocked.error().message().find("locked"), std::string::npos) << blocked.error().message();
  ASSERT_EQ(sqlite3_exec(other, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);
  ASSERT_TRUE((*j)->append(step("r1", RecordType::kStepCompleted, "/b"), Durability::kStrict));
  auto log = (*j)->read_run(*RunId::parse("r1"));
  ASSERT_TRUE(log);
  ASSERT_EQ(log->records.size(), 2u);
  EXPECT_EQ(log->records[1].key.str(), "/b");
}

// A batched record that cannot be written (its run does not exist) fails its own group; the
// next append or flush reports it, and the journal goes on.
TEST(SqliteJournal, ABatchedFailureIsReportedByTheNextCall) {
  std::string path = fresh_path("deferred");
  auto j = open_at(path);
  ASSERT_TRUE(j->append(started("real"), Durability::kStrict));
  ASSERT_TRUE(j->append(step("ghost", RecordType::kStepCompleted, "/x"), Durability::kBatched));
  Status flushed = j->flush();
  ASSERT_FALSE(flushed);
  EXPECT_EQ(flushed.error().code(), ErrorCode::kNotFound);
  ASSERT_TRUE(j->append(step("real", RecordType::kStepCompleted, "/a"), Durability::kStrict));
  ASSERT_TRUE(j->append(step("ghost", RecordType::kStepCompleted, "/y"), Durability::kBatched));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the writer commits it, and fails
  auto next = j->append(step("real", RecordType::kStepCompleted, "/b"), Durability::kBatched);
  ASSERT_FALSE(next);
  EXPECT_EQ(next.error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(j->read_run(*RunId::parse("real"))->records.size(), 2u);
}

// Runs `body` in a child process whose files may not grow past `bytes` (RLIMIT_FSIZE): writes
// beyond it fail as on a full disk. Returns the child's exit code.
int with_file_size_limit(rlim_t bytes, const std::function<int()>& body) {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    rlimit limit{bytes, bytes};
    ::setrlimit(RLIMIT_FSIZE, &limit);
    std::exit(body());  // exit, not _exit: gcov writes what the child ran
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// A write the file system refuses (here a file size limit, which SQLite reports as an I/O error)
// fails the commit that does not fit, breaks the journal for this process (nothing more is
// written after a failed write), and loses none of what was acknowledged.
TEST(SqliteJournal, AFailedWriteLosesNothingAcknowledged) {
  std::string path = fresh_path("full");
  { open_at(path); }
  const std::string ack_file = path + ".acked";
  int code = with_file_size_limit(2'000'000, [&] {
    auto j = open_at(path);
    if (!j || !j->append(started("r1"), Durability::kStrict)) return 10;
    for (int i = 0; i < 1000; ++i) {
      Record r = step("r1", RecordType::kStepCompleted, ("/s" + std::to_string(i)).c_str());
      r.delta = {Mutation{Mutation::Kind::kState, "k", Json(std::string(20'000, 'x'))}};
      Status s = j->append(r, Durability::kStrict);
      if (!s) {
        std::fprintf(stderr, "append %d: %s\n", i, s.error().to_string().c_str());
        std::ofstream(ack_file) << i;
        bool refused_after = !j->append(step("r1", RecordType::kStepCompleted, "/after"), Durability::kStrict);
        return s.error().code() == ErrorCode::kDataLoss && refused_after ? 0 : 20;
      }
    }
    return 30;  // never filled up
  });
  ASSERT_EQ(code, 0);
  int acked = -1;
  std::ifstream(ack_file) >> acked;
  ASSERT_GT(acked, 10);
  auto j = open_at(path);
  auto log = j->read_run(*RunId::parse("r1"));
  ASSERT_TRUE(log) << log.error().to_string();
  EXPECT_EQ(log->records.size(), static_cast<size_t>(acked + 1));  // run_started and every acknowledged step
  EXPECT_EQ(log->records.back().key.str(), "/s" + std::to_string(acked - 1));
}

// A real full disk: a 1 MiB tmpfs in a private mount namespace (where the machine allows one;
// the test is skipped elsewhere). The commit that does not fit is resource_exhausted and says
// the disk is full; so is a blob that does not fit, which leaves no temporary file behind.
TEST(SqliteJournal, AFullDiskIsResourceExhausted) {
  std::string dir = fs::path(fresh_path("tmpfs")).parent_path().string();
  fs::create_directories(dir);
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=1m") != 0) {
      std::exit(77);
    }
    auto j = open_at(dir + "/journal.db");
    if (!j || !j->append(started("r1"), Durability::kStrict)) std::exit(10);
    int result = 30;
    for (int i = 0; i < 1000; ++i) {
      Record r = step("r1", RecordType::kStepCompleted, ("/s" + std::to_string(i)).c_str());
      r.delta = {Mutation{Mutation::Kind::kState, "k", Json(std::string(20'000, 'x'))}};
      if (Status st = j->append(r, Durability::kStrict); !st) {
        std::fprintf(stderr, "append %d: %s\n", i, st.error().to_string().c_str());
        bool full = st.error().code() == ErrorCode::kResourceExhausted &&
                    st.error().message().find("the disk is full") != std::string::npos;
        result = full ? 0 : 20;
        break;
      }
    }
    BlobStore blobs(dir + "/blobs");
    auto blob = blobs.put(std::string(2'000'000, 'b'));
    if (blob || blob.error().code() != ErrorCode::kResourceExhausted) result = 40;
    for (const auto& e : fs::recursive_directory_iterator(dir + "/blobs")) {
      if (e.path().string().find(".tmp.") != std::string::npos) result = 50;
    }
    j.reset();
    std::exit(result);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77) GTEST_SKIP() << "no private mount namespace for a small tmpfs on this machine";
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

// A journal the process may not write (a read-only file, or another user's) is refused at open
// with the path, never half-opened.
TEST(SqliteJournal, AJournalThatCannotBeWrittenIsRefusedAtOpen) {
  std::string path = fresh_path("readonly");
  { open_at(path); }
  fs::permissions(path, fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
  fs::permissions(fs::path(path).parent_path(), fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read |
                                                    fs::perms::group_exec | fs::perms::others_read |
                                                    fs::perms::others_exec);
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::getuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) std::exit(10);  // root may write anything
    SqliteJournalOptions o;
    o.path = path;
    auto j = open_sqlite_journal(o);
    if (j) std::exit(20);
    std::fprintf(stderr, "open: %s\n", j.error().to_string().c_str());
    bool named = j.error().message().find(path) != std::string::npos;
    bool says_why = j.error().message().find("read-only") != std::string::npos;
    std::exit(j.error().code() == ErrorCode::kUnavailable && named && says_why ? 0 : 30);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  fs::permissions(fs::path(path).parent_path(), fs::perms::owner_all);
  fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(DefaultJournalPath, FlagThenEnvironmentThenDefault) {
  EXPECT_EQ(default_journal_path("x.db"), "x.db");
  setenv("CRUCIBLE_JOURNAL", "/tmp/env.db", 1);
  EXPECT_EQ(default_journal_path(""), "/tmp/env.db");
  unsetenv("CRUCIBLE_JOURNAL");
  EXPECT_EQ(default_journal_path(""), ".crucible/journal.db");
}

}  // namespace
}  // namespace crucible::testing

#include "crucible/telemetry/events.h"

#include <cstdio>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

namespace crucible {
namespace {

class Collect : public EventSink {
 public:
  void on_event(const Event& e) override { events.push_back(e); }
  std::vector<Event> events;
};

TEST(EventBus, InactiveUntilASinkIsAdded) {
  EventBus bus;
  EXPECT_FALSE(bus.active());
  bus.emit(Event{EventType::kRunStarted, "r", "", "", 0, 0, 0, "", "", Json()});
  auto sink = std::make_shared<Collect>();
  bus.add_sink(sink);
  EXPECT_TRUE(bus.active());
  bus.emit(Event{EventType::kStageCompleted, "r", "/a", "a", 1, 5, 1, "completed", "", Json()});
  ASSERT_EQ(sink->events.size(), 1u);
  EXPECT_EQ(sink->events[0].step_key, "/a");
}

TEST(JsonlSink, WritesOneObjectPerLine) {
  std::string path = ::testing::TempDir() + "/events_test.jsonl";
  std::remove(path.c_str());
  {
    auto sink = make_jsonl_sink(path);
    ASSERT_TRUE(sink);
    (*sink)->on_event(Event{EventType::kStageStarted, "r", "/a", "a", 1, 0, 0, "", "", Json()});
    (*sink)->on_event(Event{EventType::kStageFailed, "r", "/a", "a", 2, 9, 2, "failed", "boom", Json()});
  }
  std::ifstream in(path);
  std::string line;
  std::vector<Json> lines;
  while (std::getline(in, line)) lines.push_back(Json::parse(line));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["event"], "stage.started");
  EXPECT_EQ(lines[1]["event"], "stage.failed");
  EXPECT_EQ(lines[1]["error"], "boom");
  EXPECT_EQ(lines[1]["attempts"], 2);
}

TEST(JsonlSink, UnwritablePathIsUnavailable) {
  auto sink = make_jsonl_sink("/nonexistent-dir/x.jsonl");
  ASSERT_FALSE(sink);
  EXPECT_EQ(sink.error().code(), ErrorCode::kUnavailable);
}

TEST(ConsoleSink, PlainModePrintsFinishedStages) {
  char* buf = nullptr;
  size_t size = 0;
  std::FILE* mem = open_memstream(&buf, &size);
  auto sink = make_console_sink(mem, false);
  sink->on_event(Event{EventType::kStageStarted, "r", "/a", "a", 0, 0, 0, "", "", Json()});
  sink->on_event(Event{EventType::kStageCompleted, "r", "/a", "a", 0, 1500, 1, "completed", "", Json()});
  std::fclose(mem);
  std::string text(buf, size);
  free(buf);
  EXPECT_EQ(text.find("running"), std::string::npos);
  EXPECT_NE(text.find("/a"), std::string::npos);
  EXPECT_NE(text.find("1.5 ms"), std::string::npos);
}

}  // namespace
}  // namespace crucible

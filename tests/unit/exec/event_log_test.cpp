#include <doctest/doctest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "exec/event_log.hpp"
#include "exec/execution_registry.hpp"
#include "support/temp_dir.hpp"

using namespace execd::exec;
using namespace std::chrono_literals;

namespace {

std::vector<Event> read_all(EventLog& log, Cursor& cursor) {
  std::vector<Event> out;
  for (;;) {
    auto r = log.read(cursor, 1000, 2s);
    out.insert(out.end(), r.events.begin(), r.events.end());
    if (r.end || r.events.empty()) break;
  }
  return out;
}

}  // namespace

TEST_CASE("events get sequence numbers and the terminal event closes the log") {
  EventLog log({});
  CHECK(log.append(events::stdout_text("a")) == 1);
  CHECK(log.append(events::stdout_text("b")) == 2);
  CHECK(log.close(events::execution_complete(5)) == 3);
  CHECK(log.is_closed());
  CHECK(log.append(events::stdout_text("late")) == 0);  // dropped after close
  Cursor c;
  auto all = read_all(log, c);
  REQUIRE(all.size() == 3);
  CHECK(all[0].type == "stdout");
  CHECK(all[0].json.find(R"("text":"a")") != std::string::npos);
  CHECK(all[2].type == "execution_complete");
  CHECK(c.after == 3);
}

TEST_CASE("a reader blocks until an event arrives, and times out when none does") {
  EventLog log({});
  Cursor c;
  const auto t0 = std::chrono::steady_clock::now();
  auto empty = log.read(c, 10, 100ms);
  CHECK(empty.events.empty());
  CHECK_FALSE(empty.end);
  CHECK(std::chrono::steady_clock::now() - t0 >= 90ms);
  std::thread producer([&] {
    std::this_thread::sleep_for(50ms);
    log.append(events::stdout_text("x"));
  });
  auto got = log.read(c, 10, 5s);
  producer.join();
  REQUIRE(got.events.size() == 1);
  CHECK(got.events[0].seq == 1);
}

TEST_CASE("many concurrent readers each see every event in order") {
  EventLog log({});
  constexpr int kEvents = 5000;
  constexpr int kReaders = 8;
  std::atomic<int> ok{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < kReaders; ++r) {
    readers.emplace_back([&] {
      Cursor c;
      uint64_t expect = 1;
      bool in_order = true;
      for (;;) {
        auto batch = log.read(c, 64, 5s);
        for (const auto& e : batch.events) in_order = in_order && e.seq == expect++;
        if (batch.end) break;
        if (batch.events.empty()) break;  // timeout: fail below
      }
      if (in_order && expect == kEvents + 2) ++ok;
    });
  }
  for (int i = 0; i < kEvents; ++i) log.append(events::stdout_text("line " + std::to_string(i)));
  log.close(events::execution_complete(1));
  for (auto& t : readers) t.join();
  CHECK(ok.load() == kReaders);
}

TEST_CASE("past the memory budget, old events spill to disk and are replayed exactly") {
  execd::test::TempDir dir;
  EventLog log({4096, dir.str()});
  constexpr int kEvents = 20000;
  for (int i = 0; i < kEvents; ++i) log.append(events::stdout_text("payload-" + std::to_string(i)));
  log.close(events::execution_complete(1));
  CHECK(log.spilled_count() > kEvents / 2);
  CHECK(log.memory_bytes() <= 4096 + 512);  // bounded, whatever was written
  // The spill file is named (a closed log reopens it per read instead of holding a
  // descriptor); it goes with the log (tested below).

  // A reader from the start gets every event, in order, with the right payloads.
  Cursor c;
  auto all = read_all(log, c);
  REQUIRE(all.size() == kEvents + 1);
  for (int i = 0; i < kEvents; i += 997) {
    CHECK(all[i].seq == static_cast<uint64_t>(i + 1));
    CHECK(all[i].json.find("\"payload-" + std::to_string(i) + "\"") != std::string::npos);
  }
  CHECK(all.back().type == "execution_complete");

  // Resuming mid-spill (Last-Event-ID) starts right after the named event.
  for (uint64_t after : {uint64_t{1}, uint64_t{255}, uint64_t{256}, uint64_t{257}, uint64_t{12345}}) {
    Cursor resume{after};
    auto r = log.read(resume, 3, 1s);
    REQUIRE(r.events.size() == 3);
    CHECK(r.events[0].seq == after + 1);
    CHECK(r.events[0].json.find("\"payload-" + std::to_string(after) + "\"") != std::string::npos);
    CHECK(r.events[2].seq == after + 3);
  }
}

TEST_CASE("a live reader keeps up while the writer spills underneath it") {
  execd::test::TempDir dir;
  EventLog log({2048, dir.str()});
  std::atomic<bool> in_order{true};
  std::atomic<uint64_t> seen{0};
  std::thread reader([&] {
    Cursor c;
    uint64_t expect = 1;
    for (;;) {
      auto r = log.read(c, 7, 5s);
      for (const auto& e : r.events) {
        const bool payload_ok = e.type == "done" || e.json.find("\"n" + std::to_string(e.seq) + "\"") != std::string::npos;
        if (e.seq != expect++ || !payload_ok) {
          in_order = false;
        }
      }
      if (r.end || r.events.empty()) break;
    }
    seen = expect - 1;
  });
  for (int i = 1; i <= 30000; ++i) log.append(events::stdout_text("n" + std::to_string(i)));
  log.close(events::custom("done", {}));
  reader.join();
  CHECK(in_order.load());
  CHECK(seen.load() == 30001);
}

TEST_CASE("events carry type and timestamp; invalid UTF-8 is repaired, not rejected") {
  const Event e = events::stdout_text(std::string("ok \xff\xfe end"));
  const auto j = nlohmann::json::parse(e.json);
  CHECK(j["type"] == "stdout");
  CHECK(j["timestamp"].get<int64_t>() > 1'600'000'000'000);
  CHECK(j["text"].get<std::string>().find("end") != std::string::npos);
  const Event r = events::result({{"text/plain", "2"}, {"image/png", "AAAA"}});
  const auto rj = nlohmann::json::parse(r.json);
  CHECK(rj["results"]["text"] == "2");
  CHECK(rj["results"]["image/png"] == "AAAA");
  CHECK_FALSE(rj["results"].contains("text/plain"));
  const auto zero = nlohmann::json::parse(events::execution_complete(0).json);
  CHECK_FALSE(zero.contains("execution_time"));  // omitted like the contract's omitempty
  const auto err = nlohmann::json::parse(events::error("CommandExecError", "3", {"exit status 3"}).json);
  CHECK(err["error"]["evalue"] == "3");
}

TEST_CASE("the registry evicts finished executions after the retention, never running ones") {
  ExecutionRegistry reg({}, std::chrono::seconds(0));
  auto running = reg.create("command");
  auto done = reg.create("command");
  CHECK(running->id().size() == 32);
  CHECK(reg.find(done->id()) == done);
  done->log()->close(events::execution_complete(1));
  reg.sweep();  // first sighting of the closed log starts its retention clock
  reg.sweep();
  CHECK(reg.find(done->id()) == nullptr);
  CHECK(reg.find(running->id()) == running);
  CHECK(reg.size() == 1);
  auto named = reg.create("session", "my-id");
  CHECK(named->id() == "my-id");
  auto clash = reg.create("session", "my-id");
  CHECK(clash->id() != "my-id");
}

TEST_CASE("past max_bytes events are dropped after one notice; the terminal event still gets in") {
  execd::test::TempDir dir;
  execd::exec::EventLog log({1024, dir.str(), 8 * 1024});
  uint64_t accepted = 0;
  for (int i = 0; i < 1000; ++i) {
    if (log.append(execd::exec::events::stdout_text("line " + std::to_string(i))) != 0) ++accepted;
  }
  CHECK(accepted > 10);
  CHECK(accepted < 1000);
  CHECK(log.close(execd::exec::events::execution_complete(1)) != 0);
  execd::exec::Cursor cursor;
  std::vector<execd::exec::Event> all;
  for (;;) {
    auto r = log.read(cursor, 10000, std::chrono::milliseconds(0));
    all.insert(all.end(), r.events.begin(), r.events.end());
    if (r.end) break;
  }
  REQUIRE(all.size() == accepted + 2);
  CHECK(all[all.size() - 2].type == "status");
  CHECK(all[all.size() - 2].json.find("event log full") != std::string::npos);
  CHECK(all.back().type == "execution_complete");
}

TEST_CASE("a closed log holds no spill descriptor, and its spilled events still read back in full") {
  execd::test::TempDir dir;
  EventLog log({1024, dir.str(), 0});
  for (int i = 1; i <= 500; ++i) log.append(events::stdout_text("line " + std::to_string(i)));
  REQUIRE(log.spilled_count() > 0);
  CHECK(log.holds_descriptor());  // the writer keeps its file open while running
  log.close(events::execution_complete(1));
  CHECK(!log.holds_descriptor());
  // A retained log keeps (nearly) nothing in memory: the rest moved to its file.
  CHECK(log.memory_bytes() < 1024);
  // The spill file is a named file in the spill dir until the log goes.
  size_t files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++files;
  CHECK(files == 1);
  Cursor c;
  auto all = read_all(log, c);
  REQUIRE(all.size() == 501);
  CHECK(all[0].json.find(R"("text":"line 1")") != std::string::npos);
  CHECK(all[499].json.find(R"("text":"line 500")") != std::string::npos);
  CHECK(all[500].type == "execution_complete");
  // A reader resuming in the middle (a cursor carrying a file offset) too.
  Cursor mid;
  mid.after = 0;
  auto first = log.read(mid, 10, 0ms);
  REQUIRE(first.events.size() == 10);
  auto rest = read_all(log, mid);
  CHECK(rest.size() == 491);
}

TEST_CASE("the spill file goes with the log") {
  execd::test::TempDir dir;
  {
    EventLog log({1024, dir.str(), 0});
    for (int i = 1; i <= 200; ++i) log.append(events::stdout_text("line " + std::to_string(i)));
    log.close();
    REQUIRE(log.spilled_count() > 0);
  }
  CHECK(std::filesystem::is_empty(dir.path()));
}

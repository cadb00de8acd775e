#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "process/reactor.hpp"

using namespace std::chrono_literals;

TEST_CASE("timers fire in order and a cancelled one never fires") {
  execd::process::Reactor reactor;
  std::atomic<int> order{0};
  std::atomic<int> first{0}, second{0}, cancelled{0};
  reactor.after(60ms, [&] { second = ++order; });
  reactor.after(20ms, [&] { first = ++order; });
  auto id = reactor.after(40ms, [&] { cancelled = 1; });
  reactor.cancel(id);
  std::this_thread::sleep_for(200ms);
  CHECK(first == 1);
  CHECK(second == 2);
  CHECK(cancelled == 0);
}

TEST_CASE("a watched fd calls back when readable and not after unwatch") {
  execd::process::Reactor reactor;
  int fds[2];
  REQUIRE(pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0);
  std::atomic<int> calls{0};
  reactor.watch(fds[0], [&](uint32_t) {
    char buf[16];
    while (read(fds[0], buf, sizeof buf) > 0) {
    }
    ++calls;
  });
  REQUIRE(write(fds[1], "x", 1) == 1);
  for (int i = 0; i < 100 && calls == 0; ++i) std::this_thread::sleep_for(5ms);
  CHECK(calls == 1);
  reactor.unwatch(fds[0]);
  REQUIRE(write(fds[1], "y", 1) == 1);
  std::this_thread::sleep_for(50ms);
  CHECK(calls == 1);
  close(fds[0]);
  close(fds[1]);
}

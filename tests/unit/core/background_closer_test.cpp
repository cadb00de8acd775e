#include <doctest/doctest.h>

#include <poll.h>
#include <unistd.h>

#include "core/background_closer.hpp"

using namespace execd;

namespace {

/// True when the pipe's reader sees end-of-file (every write end closed) within 2 s.
bool reader_sees_eof(int read_fd) {
  pollfd p{read_fd, POLLIN, 0};
  if (::poll(&p, 1, 2000) != 1) return false;
  char c;
  return ::read(read_fd, &c, 1) == 0;
}

}  // namespace

TEST_CASE("BackgroundCloser closes what it is given, and what is queued when it is destroyed") {
  int first[2];
  int second[2];
  REQUIRE(::pipe(first) == 0);
  REQUIRE(::pipe(second) == 0);
  core::UniqueFd first_reader(first[0]);
  core::UniqueFd second_reader(second[0]);
  {
    core::BackgroundCloser closer;
    closer.close(core::UniqueFd(first[1]));
    CHECK(reader_sees_eof(first_reader.get()));
    closer.close(core::UniqueFd());  // nothing to close is fine
    closer.close(core::UniqueFd(second[1]));
  }
  CHECK(reader_sees_eof(second_reader.get()));
}

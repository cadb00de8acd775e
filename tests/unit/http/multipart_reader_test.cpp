#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "http/multipart_reader.hpp"

using execd::http::MultipartReader;

namespace {

struct Part {
  std::string name, filename, data;
};

std::vector<Part> parse(const std::string& body, size_t chunk, bool& done, std::string& error) {
  std::vector<Part> parts;
  MultipartReader r(
      "XyZ",
      [&](const std::string& name, const std::string& filename) {
        parts.push_back({name, filename, ""});
        return true;
      },
      [&](std::string_view bytes) {
        parts.back().data.append(bytes);
        return true;
      });
  for (size_t i = 0; i < body.size(); i += chunk) {
    if (!r.feed(std::string_view(body).substr(i, chunk))) break;
  }
  done = r.done();
  error = r.error();
  return parts;
}

const std::string kBody =
    "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"metadata\"; filename=\"metadata\"\r\n"
    "Content-Type: application/json\r\n\r\n{\"path\":\"/x\"}\r\n--XyZ\r\n"
    "Content-Disposition: form-data; name=\"file\"; filename=\"a b.bin\"\r\n\r\n"
    "data with \r\n--XyNot a boundary\r\n-- and CRLFs\r\n\r\n--XyZ--\r\nepilogue";

}  // namespace

TEST_CASE("parts and their bytes come out the same whatever the chunking") {
  for (size_t chunk : {1, 2, 3, 5, 7, 13, 64, 4096}) {
    bool done = false;
    std::string error;
    auto parts = parse(kBody, chunk, done, error);
    INFO("chunk " << chunk);
    CHECK(done);
    CHECK(error.empty());
    REQUIRE(parts.size() == 2);
    CHECK(parts[0].name == "metadata");
    CHECK(parts[0].data == "{\"path\":\"/x\"}");
    CHECK(parts[1].name == "file");
    CHECK(parts[1].filename == "a b.bin");
    CHECK(parts[1].data == "data with \r\n--XyNot a boundary\r\n-- and CRLFs\r\n");
  }
}

TEST_CASE("a body cut off before the closing boundary is not done") {
  bool done = true;
  std::string error;
  auto parts = parse(kBody.substr(0, kBody.size() - 30), 100, done, error);
  CHECK_FALSE(done);
  CHECK(parts.size() == 2);
}

TEST_CASE("a part without a name is an error; the boundary comes from the Content-Type") {
  bool done = false;
  std::string error;
  parse("--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--", 1000, done, error);
  CHECK_FALSE(error.empty());
  CHECK(MultipartReader::boundary_of("multipart/form-data; boundary=\"abc def\"").value() == "abc def");
  CHECK(MultipartReader::boundary_of("multipart/form-data; charset=x; boundary=q1").value() == "q1");
  CHECK_FALSE(MultipartReader::boundary_of("application/json"));
  CHECK_FALSE(MultipartReader::boundary_of("multipart/form-data"));
}

TEST_CASE("a part with no headers at all is an error however the bytes arrive (found by fuzz_multipart)") {
  const std::string body =
      "--XyZ\r\n\r\nbody\r\n--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--XyZ--";
  for (size_t chunk : {size_t{1}, size_t{2}, size_t{7}, body.size()}) {
    bool done = false;
    std::string error;
    auto parts = parse(body, chunk, done, error);
    CAPTURE(chunk);
    CHECK(parts.empty());
    CHECK(error.find("no Content-Disposition name") != std::string::npos);
  }
}

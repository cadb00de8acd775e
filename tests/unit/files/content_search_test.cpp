#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "files/content_search.hpp"
#include "files/path_resolver.hpp"
#include "support/temp_dir.hpp"

using namespace execd;
namespace fs = std::filesystem;

namespace {

struct Found {
  std::vector<std::string> hits;  // path:line:column:text
  files::GrepSummary summary;
};

Found grep(const files::GrepQuery& q, unsigned workers) {
  files::PathResolver resolver;
  files::ContentSearch search(resolver, workers);
  Found f;
  auto s = search.run(q, [&](const files::GrepMatch& m) {
    f.hits.push_back(m.path + ":" + std::to_string(m.line) + ":" + std::to_string(m.column) + ":" + m.text);
    return true;
  });
  REQUIRE(s);
  f.summary = *s;
  return f;
}

files::GrepQuery query(const std::string& path, const std::string& pattern) {
  files::GrepQuery q;
  q.path = path;
  q.pattern = pattern;
  q.max_results = files::GrepQuery::kMaxResults;
  return q;
}

/// Regular files below `dir` in the walk's order: entries by name, symlinks skipped.
void walk_order(const fs::path& dir, std::vector<std::string>& out) {
  std::vector<fs::directory_entry> entries{fs::directory_iterator(dir), fs::directory_iterator()};
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.path().filename().string() < b.path().filename().string(); });
  for (const auto& e : entries) {
    if (e.is_symlink()) continue;
    if (e.is_directory()) walk_order(e.path(), out);
    else if (e.is_regular_file()) out.push_back(e.path().string());
  }
}

/// A tree of 40 directories of small files (names whose byte order is not their case-folded
/// order), three files with more matches than the workers may hold, and a binary file.
void make_tree(const test::TempDir& dir) {
  for (int d = 0; d < 40; ++d) {
    const std::string sub = (d % 2 ? "B" : "a") + std::to_string(d) + "/";
    for (int f = 0; f < 10; ++f) {
      std::string text;
      for (int l = 0; l < 30; ++l) text += (l % (f + 3) == 0 ? "a needle in line " : "hay ") + std::to_string(l) + "\n";
      dir.write(sub + (f % 3 ? "Z" : "b") + std::to_string(f) + ".txt", text);
    }
  }
  std::string many;
  for (int l = 0; l < 6000; ++l) many += "needle " + std::string(100, 'x') + "\n";
  dir.write("a7/many1.txt", many);
  dir.write("B9/many2.txt", many);
  dir.write("many3.txt", many);
  dir.write("a3/binary.bin", std::string("needle\0needle\n", 14));
}

}  // namespace

TEST_CASE("content search: the same matches, in walk order, with 0 to 4 workers and past what workers may hold") {
  test::TempDir dir;
  make_tree(dir);
  const auto base = grep(query(dir.str(), "needle"), 0);
  CHECK(base.summary.files_binary == 1);
  CHECK(base.summary.files_searched == 404);
  CHECK_FALSE(base.summary.truncated);
  CHECK(std::count_if(base.hits.begin(), base.hits.end(), [](const auto& h) { return h.find("/many") != std::string::npos; }) == 18000);
  // Files in the walk's order, lines in file order.
  std::vector<std::string> order;
  walk_order(dir.path(), order);
  size_t at = 0;
  std::string last_path;
  uint64_t last_line = 0;
  for (const auto& h : base.hits) {
    const std::string path = h.substr(0, h.find(':'));
    const uint64_t line = std::stoull(h.substr(path.size() + 1));
    if (path != last_path) {
      while (at < order.size() && order[at] != path) ++at;
      REQUIRE(at < order.size());  // a file out of order
      ++at;
      last_path = path;
      last_line = 0;
    }
    CHECK(line > last_line);
    last_line = line;
  }
  for (unsigned w : {1u, 2u, 4u}) {
    INFO("workers " << w);
    const auto f = grep(query(dir.str(), "needle"), w);
    CHECK(f.hits == base.hits);
    CHECK(f.summary.files_searched == base.summary.files_searched);
    CHECK(f.summary.bytes_searched == base.summary.bytes_searched);
    CHECK(f.summary.matches == base.summary.matches);
  }
  // With context lines too (each match holds more).
  auto q = query(dir.str(), "needle");
  q.context = 3;
  CHECK(grep(q, 3).hits == base.hits);
}

TEST_CASE("content search: max_results, a consumer that leaves, and the stop flag end a search with workers") {
  test::TempDir dir;
  make_tree(dir);
  const auto full = grep(query(dir.str(), "needle"), 0);
  for (size_t n : {size_t{1}, size_t{7}, size_t{500}, size_t{6100}}) {
    INFO("max_results " << n);
    auto q = query(dir.str(), "needle");
    q.max_results = n;
    const auto f = grep(q, 2);
    CHECK(f.hits == std::vector<std::string>(full.hits.begin(), full.hits.begin() + static_cast<long>(n)));
    CHECK(f.summary.truncated);
    CHECK(f.summary.truncated_by == "max_results");
  }
  files::PathResolver resolver;
  files::ContentSearch search(resolver, 2);
  size_t seen = 0;
  auto left = search.run(query(dir.str(), "needle"), [&](const files::GrepMatch&) { return ++seen < 3; });
  REQUIRE(left);
  CHECK(seen == 3);
  CHECK(left->matches == 3);
  CHECK(left->cancelled);

  std::atomic<bool> stop{false};
  seen = 0;
  auto stopped = search.run(query(dir.str(), "needle"), [&](const files::GrepMatch&) {
    if (++seen == 10) stop = true;
    return true;
  }, &stop);
  REQUIRE(stopped);
  CHECK(stopped->cancelled);
  CHECK(seen < full.hits.size() / 2);
}

TEST_CASE("content search: a slow consumer holds the workers back, so what they read ahead stays bounded") {
  test::TempDir dir;
  const std::string pad(16 * 1024, 'x');
  for (int f = 0; f < 1000; ++f) dir.write("d" + std::to_string(f / 100) + "/f" + std::to_string(f), "one needle\n" + pad + "\n");
  // Bytes this process read (all threads).
  auto rchar = [] {
    std::ifstream io("/proc/self/io");
    std::string key;
    uint64_t v = 0;
    while (io >> key >> v) {
      if (key == "rchar:") return v;
    }
    return uint64_t{0};
  };
  files::PathResolver resolver;
  files::ContentSearch search(resolver, 2);
  const uint64_t file_size = 11 + pad.size() + 1;
  const uint64_t start = rchar();
  size_t seen = 0;
  std::vector<std::pair<size_t, uint64_t>> checkpoints;  // (files delivered, bytes read by then)
  auto s = search.run(query(dir.str(), "needle"), [&](const files::GrepMatch&) {
    if (seen % 300 == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the workers run ahead meanwhile
      checkpoints.emplace_back(seen, rchar() - start);
    }
    ++seen;
    return true;
  });
  REQUIRE(s);
  CHECK(s->matches == 1000);
  REQUIRE(checkpoints.size() == 4);
  CHECK(checkpoints[0].second >= 4 * file_size);  // they did run ahead...
  for (const auto& [delivered, read] : checkpoints) {
    INFO("delivered " << delivered << ", read " << read);
    CHECK(read <= (delivered + 1 + files::ContentSearch::kFilesInFlight) * file_size);  // ...but only so far
  }
}

TEST_CASE("content search: symlink loops and symlinks to files are not followed") {
  test::TempDir dir;
  test::TempDir outside;
  outside.write("secret.txt", "needle outside\n");
  dir.write("a/x.txt", "needle inside\n");
  fs::create_directory_symlink("..", dir.path() / "a" / "up");
  fs::create_directory_symlink(dir.path() / "a", dir.path() / "a" / "self");
  fs::create_symlink(outside.path() / "secret.txt", dir.path() / "link.txt");
  fs::create_directory_symlink(outside.path(), dir.path() / "out");
  for (unsigned w : {0u, 2u}) {
    const auto f = grep(query(dir.str(), "needle"), w);
    CHECK(f.hits == std::vector<std::string>{dir.str() + "/a/x.txt:1:1:needle inside"});
    CHECK(f.summary.files_searched == 1);
  }
}

TEST_CASE("content search: a file swapped for a symlink during the search is never followed") {
  test::TempDir dir;
  test::TempDir outside;
  outside.write("secret.txt", "SECRET_TOKEN\n");
  for (int f = 0; f < 200; ++f) dir.write("d/f" + std::to_string(f), "benign\n");
  dir.write("d/victim", "benign\n");
  const fs::path victim = dir.path() / "d" / "victim";
  std::atomic<bool> done{false};
  std::atomic<int> swaps{0};
  std::thread swapper([&] {
    // rename() replaces the name atomically: at any instant it is a file or a symlink.
    while (!done) {
      dir.write("tmp_file", "benign\n");
      fs::rename(dir.path() / "tmp_file", victim);
      std::error_code ec;
      fs::remove(dir.path() / "tmp_link", ec);
      fs::create_symlink(outside.path() / "secret.txt", dir.path() / "tmp_link");
      fs::rename(dir.path() / "tmp_link", victim);
      ++swaps;
    }
  });
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);
  int searches = 0;
  size_t leaked = 0;
  while (std::chrono::steady_clock::now() < until) {
    leaked += grep(query(dir.str() + "/d", "SECRET_TOKEN"), 2).hits.size();
    ++searches;
  }
  done = true;
  swapper.join();
  CHECK(searches >= 3);  // the swaps raced with searches...
  CHECK(swaps >= 20);
  CHECK(leaked == 0);  // ...and the secret never showed
}

TEST_CASE("content search: max_total_bytes and the timeout cut a search with workers to a prefix of walk order") {
  test::TempDir dir;
  make_tree(dir);
  const auto full = grep(query(dir.str(), "needle"), 0);
  auto q = query(dir.str(), "needle");
  q.max_total_bytes = full.summary.bytes_searched / 3;
  for (unsigned w : {0u, 2u}) {
    INFO("workers " << w);
    const auto f = grep(q, w);
    CHECK(f.summary.truncated);
    CHECK(f.summary.truncated_by == "max_total_bytes");
    CHECK(f.summary.bytes_searched <= q.max_total_bytes);
    REQUIRE(!f.hits.empty());
    REQUIRE(f.hits.size() < full.hits.size());
    const size_t n = f.hits.size() - 1;
    CHECK(std::vector<std::string>(f.hits.begin(), f.hits.begin() + static_cast<long>(n)) ==
          std::vector<std::string>(full.hits.begin(), full.hits.begin() + static_cast<long>(n)));
    // The last line read may be cut short.
    CHECK(full.hits[n].starts_with(f.hits[n]));
  }
  auto t = query(dir.str(), "needle");
  t.timeout = std::chrono::milliseconds(0);
  const auto timed_out = grep(t, 2);
  CHECK(timed_out.summary.truncated);
  CHECK(timed_out.summary.truncated_by == "timeout");
  CHECK(timed_out.hits.empty());
}

TEST_CASE("content search: a NUL in the first 64 KiB makes a file binary; later, it is text; a match never spans lines") {
  test::TempDir dir;
  dir.write("early.bin", std::string(1000, 'a') + std::string(1, '\0') + "\nneedle\n");
  dir.write("late.txt", std::string(70000, 'a') + "\n" + std::string(1, '\0') + "\nneedle\n");
  dir.write("lines.txt", "nee\ndle\nneedle\n");
  for (unsigned w : {0u, 2u}) {
    const auto f = grep(query(dir.str(), "needle"), w);
    CHECK(f.hits == std::vector<std::string>{dir.str() + "/late.txt:3:1:needle", dir.str() + "/lines.txt:3:1:needle"});
    CHECK(f.summary.files_binary == 1);
    CHECK(grep(query(dir.str() + "/lines.txt", "nee\\s+dle"), w).hits.empty());
    CHECK(grep(query(dir.str() + "/lines.txt", "e[^x]d"), w).hits == std::vector<std::string>{dir.str() + "/lines.txt:3:2:needle"});
  }
}

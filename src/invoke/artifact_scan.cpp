#include "invoke/artifact_scan.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <memory>

#include <openssl/evp.h>

#include "core/bytes.hpp"

namespace execd::invoke {

namespace {

constexpr int kMaxDepth = 64;

std::string sha256_of(int fd) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) return {};
  char buf[64 * 1024];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) return {};
    if (n == 0) break;
    EVP_DigestUpdate(ctx.get(), buf, static_cast<size_t>(n));
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), md, &len) != 1) return {};
  return core::to_hex(md, len);
}

void walk(int dir_fd, const std::string& abs, int depth, size_t max_files, uint64_t& budget, std::vector<Artifact>& out) {
  DIR* d = ::fdopendir(dir_fd);
  if (d == nullptr) {
    ::close(dir_fd);
    return;
  }
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    if (out.size() >= max_files) break;
    struct stat st {};
    if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (S_ISDIR(st.st_mode) && depth < kMaxDepth) {
      const int sub = ::openat(::dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub >= 0) walk(sub, abs + "/" + name, depth + 1, max_files, budget, out);
    } else if (S_ISREG(st.st_mode)) {
      Artifact a{abs + "/" + name, static_cast<uint64_t>(st.st_size), {}};
      if (a.size <= budget) {
        const int f = ::openat(::dirfd(d), e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (f >= 0) {
          a.sha256 = sha256_of(f);
          ::close(f);
          budget -= a.size;
        }
      }
      out.push_back(std::move(a));
    }
  }
  ::closedir(d);
}

}  // namespace

std::vector<Artifact> scan_artifacts(const std::string& dir, size_t max_files, uint64_t hash_budget) {
  std::vector<Artifact> out;
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return out;
  walk(fd, dir, 0, max_files, hash_budget, out);
  std::sort(out.begin(), out.end(), [](const Artifact& a, const Artifact& b) { return a.path < b.path; });
  return out;
}

}  // namespace execd::invoke

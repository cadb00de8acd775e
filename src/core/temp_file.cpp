#include "core/temp_file.hpp"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdlib>

namespace execd::core {
namespace {

std::string temp_dir(const std::string& dir) {
  if (!dir.empty()) return dir;
  const char* t = std::getenv("TMPDIR");
  return (t != nullptr && *t != '\0') ? t : "/tmp";
}

}  // namespace

UniqueFd open_unlinked_temp(const std::string& dir_in) {
  const std::string dir = temp_dir(dir_in);
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::string tmpl = dir + "/execd-XXXXXX";
    fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
    if (fd >= 0) ::unlink(tmpl.c_str());
  }
  return UniqueFd(fd);
}

std::unique_ptr<ReopenableFile> ReopenableFile::create(const std::string& dir) {
  std::string path = temp_dir(dir) + "/execd-XXXXXX";
  const int fd = ::mkostemp(path.data(), O_CLOEXEC);  // 0600
  if (fd < 0) return nullptr;
  return std::unique_ptr<ReopenableFile>(new ReopenableFile(std::move(path), fd));
}

ReopenableFile::ReopenableFile(std::string path, int fd)
    : path_(std::move(path)), write_fd_(fd), open_(std::make_shared<const UniqueFd>(fd)) {}

ReopenableFile::~ReopenableFile() { ::unlink(path_.c_str()); }

void ReopenableFile::seal() {
  std::shared_ptr<const UniqueFd> last;
  {
    std::lock_guard<std::mutex> lock(mu_);
    last = std::move(open_);
    open_.reset();
    write_fd_ = -1;
  }
  // Closed here, or by the last reader still holding it.
}

std::shared_ptr<const UniqueFd> ReopenableFile::reader() const {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (open_) return open_;
  }
  UniqueFd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return nullptr;
  return std::make_shared<const UniqueFd>(std::move(fd));
}

}  // namespace execd::core

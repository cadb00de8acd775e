#include "process/reactor.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include <spdlog/spdlog.h>

namespace execd::process {

Reactor::Reactor()
    : epoll_fd_(epoll_create1(EPOLL_CLOEXEC)), wake_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = wake_fd_.get();
  epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, wake_fd_.get(), &ev);
  thread_ = std::thread([this] { run(); });
}

Reactor::~Reactor() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake();
  if (thread_.joinable()) thread_.join();
}

void Reactor::wake() {
  const uint64_t one = 1;
  ssize_t ignored = ::write(wake_fd_.get(), &one, sizeof one);
  (void)ignored;
}

void Reactor::watch(int fd, FdCallback cb) {
  std::lock_guard<std::mutex> lock(mu_);
  fds_[fd] = std::make_shared<FdCallback>(std::move(cb));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    spdlog::error("reactor: cannot watch fd {}: {}", fd, std::strerror(errno));
  }
}

void Reactor::unwatch(int fd) {
  std::lock_guard<std::mutex> lock(mu_);
  if (fds_.erase(fd) != 0) epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

Reactor::TimerId Reactor::after(std::chrono::milliseconds delay, std::function<void()> fn) {
  TimerId id = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = next_timer_++;
    timers_.emplace(std::chrono::steady_clock::now() + delay, std::make_pair(id, std::move(fn)));
  }
  wake();
  return id;
}

void Reactor::cancel(TimerId id) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = timers_.begin(); it != timers_.end(); ++it) {
    if (it->second.first == id) {
      timers_.erase(it);
      return;
    }
  }
}

void Reactor::run() {
  std::vector<epoll_event> events(64);
  for (;;) {
    int timeout_ms = -1;
    std::vector<std::function<void()>> due;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      const auto now = std::chrono::steady_clock::now();
      while (!timers_.empty() && timers_.begin()->first <= now) {
        due.push_back(std::move(timers_.begin()->second.second));
        timers_.erase(timers_.begin());
      }
      if (!timers_.empty()) {
        const auto wait = std::chrono::ceil<std::chrono::milliseconds>(timers_.begin()->first - now);
        timeout_ms = static_cast<int>(std::max<int64_t>(0, wait.count()));
      }
    }
    for (auto& fn : due) {
      try {
        fn();
      } catch (const std::exception& e) {
        spdlog::error("reactor: timer failed: {}", e.what());
      }
    }
    if (!due.empty()) continue;  // timers may have added work; recompute the wait

    const int n = epoll_wait(epoll_fd_.get(), events.data(), static_cast<int>(events.size()), timeout_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      spdlog::critical("reactor: epoll_wait failed: {}", std::strerror(errno));
      return;
    }
    for (int i = 0; i < n; ++i) {
      const int fd = events[static_cast<size_t>(i)].data.fd;
      if (fd == wake_fd_.get()) {
        uint64_t v = 0;
        ssize_t ignored = ::read(wake_fd_.get(), &v, sizeof v);
        (void)ignored;
        continue;
      }
      std::shared_ptr<FdCallback> cb;
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = fds_.find(fd);
        if (it != fds_.end()) cb = it->second;
      }
      if (!cb) continue;  // unwatched by an earlier callback in this batch
      try {
        (*cb)(events[static_cast<size_t>(i)].events);
      } catch (const std::exception& e) {
        spdlog::error("reactor: callback for fd {} failed: {}", fd, e.what());
      }
    }
  }
}

std::string_view Reactor::read_into_scratch(int fd, ssize_t& n) {
  n = ::read(fd, scratch_.data(), scratch_.size());
  return n > 0 ? std::string_view(scratch_.data(), static_cast<size_t>(n)) : std::string_view();
}

}  // namespace execd::process

#include "jupyter/kernel_client.hpp"

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <spdlog/spdlog.h>

#include "core/id.hpp"

namespace execd::jupyter {
namespace {

constexpr auto kHeartbeatEvery = std::chrono::seconds(1);
constexpr auto kHeartbeatTimeout = std::chrono::seconds(5);
constexpr int kMessagesPerRound = 256;

std::string endpoint(const ConnectionInfo& c, int port) {
  // jupyter_client's naming for ipc: the ports become suffixes of the path prefix.
  if (c.transport == "ipc") return "ipc://" + c.ip + "-" + std::to_string(port);
  return "tcp://" + c.ip + ":" + std::to_string(port);
}

}  // namespace

struct KernelClient::Impl {
  zmq::context_t ctx{1};
  zmq::socket_t shell{ctx, zmq::socket_type::dealer};
  zmq::socket_t control{ctx, zmq::socket_type::dealer};
  zmq::socket_t stdin_{ctx, zmq::socket_type::dealer};
  zmq::socket_t iopub{ctx, zmq::socket_type::sub};
  zmq::socket_t hb{ctx, zmq::socket_type::req};
  zmq::socket_t wake_rx{ctx, zmq::socket_type::pair};
  zmq::socket_t wake_tx{ctx, zmq::socket_type::pair};
};

KernelClient::KernelClient(ConnectionInfo info, int pidfd)
    : info_(std::move(info)), pidfd_(pidfd), signer_(info_.key), session_(core::new_uuid()), impl_(std::make_unique<Impl>()) {
  const std::string identity = core::new_uuid();
  for (zmq::socket_t* s : {&impl_->shell, &impl_->control, &impl_->stdin_}) {
    s->set(zmq::sockopt::routing_id, identity);
    s->set(zmq::sockopt::linger, 0);
  }
  impl_->iopub.set(zmq::sockopt::linger, 0);
  impl_->hb.set(zmq::sockopt::linger, 0);
  impl_->iopub.set(zmq::sockopt::subscribe, "");
  impl_->shell.connect(endpoint(info_, info_.shell_port));
  impl_->control.connect(endpoint(info_, info_.control_port));
  impl_->stdin_.connect(endpoint(info_, info_.stdin_port));
  impl_->iopub.connect(endpoint(info_, info_.iopub_port));
  impl_->hb.connect(endpoint(info_, info_.hb_port));
  const std::string wake = "inproc://wake-" + session_;
  impl_->wake_rx.bind(wake);
  impl_->wake_tx.connect(wake);
  thread_ = std::thread([this] { run(); });
}

KernelClient::~KernelClient() {
  stop_ = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    impl_->wake_tx.send(zmq::str_buffer("x"), zmq::send_flags::dontwait);
  }
  if (thread_.joinable()) thread_.join();
}

void KernelClient::send(Channel channel, Message m, Handler handler) {
  std::lock_guard<std::mutex> lock(mu_);
  if (handler) handlers_[m.id()] = std::move(handler);
  outbox_.emplace_back(channel, std::move(m));
  impl_->wake_tx.send(zmq::str_buffer("x"), zmq::send_flags::dontwait);
}

void KernelClient::forget(const std::string& msg_id) {
  std::lock_guard<std::mutex> lock(mu_);
  handlers_.erase(msg_id);
}

void KernelClient::watch_heartbeat() { heartbeat_watched_ = true; }

void KernelClient::on_dead(std::function<void(const std::string&)> callback) {
  std::lock_guard<std::mutex> lock(mu_);
  on_dead_ = std::move(callback);
}

void KernelClient::run() {
  // A ZeroMQ error must end this kernel's client, never the daemon.
  try {
    loop();
  } catch (const std::exception& e) {
    spdlog::error("kernel on port {}: client failed: {}", info_.shell_port, e.what());
    dead_ = true;
    std::function<void(const std::string&)> cb;
    {
      std::lock_guard<std::mutex> lock(mu_);
      cb = on_dead_;
    }
    if (cb) cb(std::string("kernel client failed: ") + e.what());
  }
}

void KernelClient::loop() {
  auto socket_of = [this](Channel c) -> zmq::socket_t& {
    switch (c) {
      case Channel::shell: return impl_->shell;
      case Channel::control: return impl_->control;
      case Channel::stdin_: return impl_->stdin_;
      case Channel::iopub: break;
    }
    return impl_->iopub;
  };
  auto die = [this](const std::string& why) {
    if (dead_.exchange(true)) return;
    std::function<void(const std::string&)> cb;
    {
      std::lock_guard<std::mutex> lock(mu_);
      cb = on_dead_;
    }
    spdlog::warn("kernel on port {} is dead: {}", info_.shell_port, why);
    if (cb) cb(why);
  };
  auto last_hb_sent = std::chrono::steady_clock::now() - kHeartbeatEvery;
  bool hb_outstanding = false;

  while (!stop_) {
    // Outgoing first: requests queued by other threads leave now.
    std::deque<std::pair<Channel, Message>> out;
    {
      std::lock_guard<std::mutex> lock(mu_);
      out.swap(outbox_);
    }
    for (auto& [channel, m] : out) {
      std::vector<std::string> frames = encode(m, signer_);
      std::vector<zmq::const_buffer> bufs;
      for (const auto& f : frames) bufs.emplace_back(f.data(), f.size());
      if (!zmq::send_multipart(socket_of(channel), bufs, zmq::send_flags::dontwait)) {
        spdlog::warn("kernel on port {}: a message could not be queued", info_.shell_port);
      }
    }
    const auto now = std::chrono::steady_clock::now();
    if (!hb_outstanding && now - last_hb_sent >= kHeartbeatEvery && !dead_) {
      impl_->hb.send(zmq::str_buffer("ping"), zmq::send_flags::dontwait);
      hb_outstanding = true;
      last_hb_sent = now;
    } else if (hb_outstanding && now - last_hb_sent > kHeartbeatTimeout && heartbeat_watched_) {
      die("no heartbeat for " + std::to_string(kHeartbeatTimeout.count()) + " s");
      hb_outstanding = false;  // the REQ socket is stuck now; the kernel is gone for us
      last_hb_sent = now + std::chrono::hours(24 * 365);
    }

    zmq::pollitem_t items[] = {
        {impl_->wake_rx.handle(), 0, ZMQ_POLLIN, 0}, {impl_->shell.handle(), 0, ZMQ_POLLIN, 0},
        {impl_->iopub.handle(), 0, ZMQ_POLLIN, 0},   {impl_->control.handle(), 0, ZMQ_POLLIN, 0},
        {impl_->stdin_.handle(), 0, ZMQ_POLLIN, 0},  {impl_->hb.handle(), 0, ZMQ_POLLIN, 0},
        {nullptr, pidfd_, ZMQ_POLLIN, 0},
    };
    const size_t n_items = pidfd_ >= 0 && !dead_ ? 7 : 6;
    try {
      zmq::poll(items, n_items, std::chrono::milliseconds(250));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      spdlog::error("kernel client poll failed: {}", e.what());
      break;
    }
    if ((items[0].revents & ZMQ_POLLIN) != 0) {
      zmq::message_t drop;
      while (impl_->wake_rx.recv(drop, zmq::recv_flags::dontwait)) {
      }
    }
    if ((items[5].revents & ZMQ_POLLIN) != 0) {
      // One reply per ping: a REQ socket refuses a second recv before the next send.
      zmq::message_t pong;
      if (impl_->hb.recv(pong, zmq::recv_flags::dontwait)) hb_outstanding = false;
    }
    if (n_items == 7 && (items[6].revents & ZMQ_POLLIN) != 0) die("the kernel process exited");
    const std::pair<int, Channel> inputs[] = {{1, Channel::shell}, {2, Channel::iopub}, {3, Channel::control}, {4, Channel::stdin_}};
    for (const auto& [index, channel] : inputs) {
      if ((items[index].revents & ZMQ_POLLIN) == 0) continue;
      zmq::socket_t& s = socket_of(channel);
      // A bounded batch per socket and round: a kernel flooding iopub must not keep
      // replies, heartbeats and queued requests waiting.
      for (int batch = 0; batch < kMessagesPerRound; ++batch) {
        std::vector<zmq::message_t> parts;
        auto got = zmq::recv_multipart(s, std::back_inserter(parts), zmq::recv_flags::dontwait);
        if (!got) break;
        // Views into ZeroMQ's own buffers: a 50 MB stream message is never copied here.
        std::vector<std::string_view> frames;
        frames.reserve(parts.size());
        for (auto& p : parts) frames.emplace_back(static_cast<const char*>(p.data()), p.size());
        auto m = decode_views(frames, signer_);
        if (!m) {
          spdlog::warn("kernel on port {}: dropped a message: {}", info_.shell_port, m.error().message);
          continue;
        }
        Handler h;
        {
          std::lock_guard<std::mutex> lock(mu_);
          auto it = handlers_.find(m->parent_id());
          if (it != handlers_.end()) h = it->second;
        }
        if (h) h(*m, channel);
      }
    }
  }
}

}  // namespace execd::jupyter

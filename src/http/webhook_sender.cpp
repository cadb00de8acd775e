#include "http/webhook_sender.hpp"

#include <algorithm>
#include <charconv>

#include <httplib.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <spdlog/spdlog.h>

#include "core/bytes.hpp"

namespace execd::http {

namespace {

using Clock = std::chrono::steady_clock;

bool retryable(int status) { return status >= 500 || status == 408 || status == 429; }

}  // namespace

struct WebhookSender::Delivery {
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  StateSink sink;
  int attempts = 0;
  Clock::time_point first_at{};
  Clock::time_point next_at{};
  std::chrono::milliseconds backoff{0};
};

WebhookSender::WebhookSender(Options options) : options_(std::move(options)) {}

WebhookSender::~WebhookSender() {
  std::vector<std::shared_ptr<Delivery>> abandoned;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    abandoned.swap(waiting_);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
  for (auto& d : abandoned) {
    d->sink({{"url", d->url}, {"state", "failed"}, {"attempts", d->attempts}, {"last_error", "the daemon stopped before delivery"}});
  }
}

core::Result<void> WebhookSender::check_url(std::string_view url, std::string_view field) {
  auto bad = [&](const std::string& why) {
    return core::make_error(core::Errc::invalid_argument, "field '" + std::string(field) + "' " + why);
  };
  std::string_view rest;
  if (url.substr(0, 7) == "http://") rest = url.substr(7);
  else if (url.substr(0, 8) == "https://") rest = url.substr(8);
  else return bad("must be an http:// or https:// URL");
  if (url.size() > 2048) return bad("is longer than 2048 characters");
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return bad("must not contain spaces or control characters");
  }
  const auto authority = rest.substr(0, rest.find_first_of("/?#"));
  if (authority.find('@') != std::string_view::npos) return bad("must not carry credentials (use callback_headers)");
  std::string_view host = authority;
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return bad("has an unclosed IPv6 address");
    host = authority.substr(0, close + 1);
    const auto after = authority.substr(close + 1);
    if (!after.empty() && after.front() != ':') return bad("has a malformed host");
    if (!after.empty()) {
      int port = 0;
      const auto p = after.substr(1);
      const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
      if (ec != std::errc() || end != p.data() + p.size() || port < 1 || port > 65535) return bad("has a bad port");
    }
  } else if (const auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    const auto p = authority.substr(colon + 1);
    int port = 0;
    const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
    if (ec != std::errc() || end != p.data() + p.size() || port < 1 || port > 65535) return bad("has a bad port");
  }
  if (host.empty()) return bad("has no host");
  return {};
}

std::string WebhookSender::signature(std::string_view secret, std::string_view body) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), reinterpret_cast<const unsigned char*>(body.data()),
       body.size(), digest, &len);
  return "sha256=" + core::to_hex(digest, len);
}

void WebhookSender::deliver(std::string url, std::vector<std::pair<std::string, std::string>> headers, std::string body,
                            StateSink sink) {
  auto d = std::make_shared<Delivery>();
  d->url = std::move(url);
  d->headers = std::move(headers);
  d->body = std::move(body);
  d->sink = std::move(sink);
  d->first_at = d->next_at = Clock::now();
  d->backoff = options_.first_backoff;
  d->sink({{"url", d->url}, {"state", "pending"}, {"attempts", 0}});
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    waiting_.push_back(std::move(d));
    // Threads start with the first delivery: a daemon nobody asks for callbacks keeps none.
    if (workers_.empty()) {
      const size_t n = std::max<size_t>(1, options_.max_in_flight);
      for (size_t i = 0; i < n; ++i) workers_.emplace_back([this] { run(); });
    }
  }
  cv_.notify_one();
}

void WebhookSender::run() {
  for (;;) {
    std::shared_ptr<Delivery> d;
    {
      std::unique_lock lock(mu_);
      for (;;) {
        if (stopping_) return;
        auto due = std::min_element(waiting_.begin(), waiting_.end(),
                                    [](const auto& a, const auto& b) { return a->next_at < b->next_at; });
        if (due != waiting_.end() && (*due)->next_at <= Clock::now()) {
          d = std::move(*due);
          waiting_.erase(due);
          break;
        }
        if (due == waiting_.end()) {
          cv_.wait(lock);
        } else {
          cv_.wait_until(lock, (*due)->next_at);
        }
      }
    }
    attempt(*d);
    if (d->next_at != Clock::time_point{}) {
      std::lock_guard lock(mu_);
      if (stopping_) {
        d->sink({{"url", d->url}, {"state", "failed"}, {"attempts", d->attempts}, {"last_error", "the daemon stopped before delivery"}});
        continue;
      }
      waiting_.push_back(std::move(d));
      cv_.notify_one();
    }
  }
}

void WebhookSender::attempt(Delivery& d) {
  ++d.attempts;
  // httplib's client takes "scheme://host:port"; the path and query go per request.
  const auto scheme_end = d.url.find("://") + 3;
  const auto path_at = d.url.find_first_of("/?#", scheme_end);
  const std::string origin = d.url.substr(0, path_at);
  std::string path = path_at == std::string::npos ? "/" : d.url.substr(path_at);
  if (const auto hash = path.find('#'); hash != std::string::npos) path.resize(hash);
  if (path.empty() || path.front() == '?') path = "/" + path;
  httplib::Client client(origin);
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(options_.timeout);
  const auto usecs = std::chrono::duration_cast<std::chrono::microseconds>(options_.timeout - secs);
  client.set_connection_timeout(secs.count(), usecs.count());
  client.set_read_timeout(secs.count(), usecs.count());
  client.set_write_timeout(secs.count(), usecs.count());
  httplib::Headers headers;
  for (const auto& [k, v] : d.headers) headers.emplace(k, v);
  if (!options_.secret.empty()) headers.emplace("X-Execd-Signature", signature(options_.secret, d.body));
  headers.emplace("X-Execd-Delivery-Attempt", std::to_string(d.attempts));
  auto res = client.Post(path.c_str(), headers, d.body, "application/json");
  std::string error;
  int status = 0;
  if (!res) {
    error = "cannot reach " + origin + ": " + httplib::to_string(res.error());
  } else {
    status = res->status;
    if (status >= 200 && status < 300) {
      d.next_at = {};
      d.sink({{"url", d.url}, {"state", "delivered"}, {"attempts", d.attempts}, {"status_code", status}});
      return;
    }
    error = "HTTP " + std::to_string(status);
  }
  const bool again = (status == 0 || retryable(status)) && Clock::now() + d.backoff - d.first_at <= options_.retry_for;
  nlohmann::json state = {{"url", d.url}, {"state", again ? "pending" : "failed"}, {"attempts", d.attempts}, {"last_error", error}};
  if (status != 0) state["status_code"] = status;
  if (!again) {
    spdlog::info("callback to {} failed after {} attempts: {}", d.url, d.attempts, error);
    d.next_at = {};
  } else {
    d.next_at = Clock::now() + d.backoff;
    d.backoff = std::min(d.backoff * 2, options_.max_backoff);
  }
  d.sink(state);
}

}  // namespace execd::http

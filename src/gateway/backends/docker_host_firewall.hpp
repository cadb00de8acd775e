#pragma once

#include <chrono>
#include <string>

#include "core/result.hpp"

namespace execd::gateway {

/// What keeps docker sandboxes away from the gateway's host. Docker's own iptables rules
/// (dockerd --iptables, its default) drop traffic between two bridge networks, so one
/// sandbox cannot reach another; but nothing of docker's stops a container from opening a
/// connection to the host itself: every address of the host (the bridge's gateway address
/// first) is a local destination, so any service listening on 0.0.0.0 is reachable.
///
/// The docker backend names every sandbox's bridge `exd<12 hex>` (sandbox_bridge_name), and
/// this rule, inserted once into the INPUT chain of the gateway's network namespace,
/// refuses every new connection that arrives from such a bridge:
///
///     iptables -w 5 -I INPUT -i exd+ -m conntrack --ctstate NEW -j REJECT
///
/// Replies to the gateway's own connections into the sandboxes (the proxy, /ping) are
/// ESTABLISHED and pass. The rule is shared by every gateway on the host and never removed
/// (a second install finds it with -C). IPv4 only: the backend's networks have no IPv6.
class DockerHostFirewall {
 public:
  static constexpr const char* kBridgePrefix = "exd";

  /// The bridge interface name for a sandbox's network: the prefix and 12 hex digits of
  /// the id's FNV-1a hash (Linux allows 15 characters).
  static std::string sandbox_bridge_name(const std::string& sandbox_id);

  /// Makes sure the rule is in place, running `iptables` (looked up in PATH) as the
  /// gateway's user; at most `timeout` in all. unavailable, naming the command and what it
  /// printed, when iptables is missing, refused (not root) or the rule cannot be inserted.
  static core::Result<void> ensure(const std::string& iptables = "iptables",
                                   std::chrono::milliseconds timeout = std::chrono::seconds(15));
};

}  // namespace execd::gateway

#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "core/result.hpp"
#include "gateway/sandbox.hpp"

namespace execd::gateway {

/// A Kubernetes resource quantity ("500m", "2", "0.5", "512Mi", "1G", "1e3") as an exact
/// number of thousandths: the grammar of k8s.io/apimachinery's Quantity (sign, decimal
/// number, one suffix: m, k, M, G, T, P, E, Ki..Ei, or an exponent e/E<int>), strictly:
/// no spaces, no empty parts, no negative values, nothing past 2^63 thousandths.
/// invalid_argument naming `field` and quoting `text` otherwise.
core::Result<uint64_t> parse_quantity_millis(std::string_view field, std::string_view text);

/// The Lifecycle API's `resourceLimits` object (string values) into ResourceLimits:
/// `cpu` (cores: "500m", "2"), `memory` and `disk` / `ephemeral-storage` (bytes: "512Mi",
/// "1G"), `pids` (a count). Memory and disk must be whole bytes, cpu at least 1m, pids
/// whole. Any other key is invalid_argument naming it (gpu is not served here).
core::Result<ResourceLimits> parse_resource_limits(const std::map<std::string, std::string>& fields);

/// ResourceLimits back into the API's strings (cpu in millicores "500m", bytes as a
/// plain number); zero fields are left out.
std::map<std::string, std::string> format_resource_limits(const ResourceLimits& limits);

}  // namespace execd::gateway

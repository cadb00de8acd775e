#include "gateway/backends/kubernetes_config.hpp"

#include <yaml.h>

#include <charconv>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace execd::gateway {
namespace {

using core::Errc;
using core::make_error;
using nlohmann::json;

// A plain (unquoted) scalar as YAML 1.2's core schema reads it: null, a boolean, an
// integer or a float; anything else, and every quoted scalar, is a string.
json plain_scalar(const std::string& text) {
  if (text.empty() || text == "~" || text == "null" || text == "Null" || text == "NULL") return nullptr;
  if (text == "true" || text == "True" || text == "TRUE") return true;
  if (text == "false" || text == "False" || text == "FALSE") return false;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  if (*begin == '+') ++begin;
  int64_t i = 0;
  if (auto [p, ec] = std::from_chars(begin, end, i); ec == std::errc() && p == end) return i;
  if (text.find_first_of("0123456789") != std::string::npos &&
      text.find_first_not_of("0123456789.eE+-") == std::string::npos) {
    double d = 0;
    if (auto [p, ec] = std::from_chars(begin, end, d); ec == std::errc() && p == end) return d;
  }
  return text;
}

// A YAML node as JSON.
json to_json(yaml_document_t* doc, yaml_node_t* node, int depth) {
  if (node == nullptr || depth > 64) return nullptr;
  switch (node->type) {
    case YAML_SCALAR_NODE: {
      std::string text(reinterpret_cast<const char*>(node->data.scalar.value), node->data.scalar.length);
      if (node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) return plain_scalar(text);
      return text;
    }
    case YAML_SEQUENCE_NODE: {
      json out = json::array();
      for (auto* item = node->data.sequence.items.start; item < node->data.sequence.items.top; ++item) {
        out.push_back(to_json(doc, yaml_document_get_node(doc, *item), depth + 1));
      }
      return out;
    }
    case YAML_MAPPING_NODE: {
      json out = json::object();
      for (auto* pair = node->data.mapping.pairs.start; pair < node->data.mapping.pairs.top; ++pair) {
        const json key = to_json(doc, yaml_document_get_node(doc, pair->key), depth + 1);
        if (!key.is_string()) continue;
        out[key.get<std::string>()] = to_json(doc, yaml_document_get_node(doc, pair->value), depth + 1);
      }
      return out;
    }
    default:
      return nullptr;
  }
}

}  // namespace

core::Result<json> parse_yaml_document(std::string_view text) {
  yaml_parser_t parser;
  if (yaml_parser_initialize(&parser) == 0) return make_error(Errc::internal, "libyaml: cannot initialise a parser");
  yaml_parser_set_input_string(&parser, reinterpret_cast<const unsigned char*>(text.data()), text.size());
  yaml_document_t doc;
  if (yaml_parser_load(&parser, &doc) == 0) {
    std::ostringstream why;
    why << (parser.problem != nullptr ? parser.problem : "parse error") << " at line " << parser.problem_mark.line + 1;
    yaml_parser_delete(&parser);
    return make_error(Errc::invalid_argument, "not valid YAML: " + why.str());
  }
  json out = to_json(&doc, yaml_document_get_root_node(&doc), 0);
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  return out;
}

namespace {

std::string str(const json& obj, const char* key) {
  if (!obj.is_object()) return {};
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return {};
  // An unquoted all-digit token or `true` was typed by the YAML reader; the field is text.
  return it->is_string() ? it->get<std::string>() : it->dump();
}

// The entry of a named list (clusters, contexts, users) called `name`, its inner object.
const json* find_named(const json& root, const char* list, const char* inner, const std::string& name) {
  const auto it = root.find(list);
  if (it == root.end() || !it->is_array()) return nullptr;
  for (const auto& entry : *it) {
    if (str(entry, "name") == name) {
      const auto in = entry.find(inner);
      return in != entry.end() && in->is_object() ? &*in : nullptr;
    }
  }
  return nullptr;
}

std::string resolve(const std::string& dir, const std::string& path) {
  if (path.empty() || path.front() == '/' || dir.empty()) return path;
  return (std::filesystem::path(dir) / path).string();
}

core::Result<std::string> read_whole(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(Errc::unavailable, std::string(what) + ": cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

core::Result<std::string> decode_base64(std::string_view text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  size_t padding = 0;
  for (const char c : text) {
    if (c == '\n' || c == '\r' || c == ' ') continue;
    if (c == '=') {
      ++padding;
      continue;
    }
    const int v = value(c);
    if (v < 0 || padding > 0) return make_error(Errc::invalid_argument, "not base64");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  if (padding > 2 || bits >= 6) return make_error(Errc::invalid_argument, "not base64");
  return out;
}

core::Result<void> parse_server_url(std::string_view url, KubeApiConfig& out) {
  if (url.rfind("https://", 0) != 0) {
    return make_error(Errc::invalid_argument, "the API server URL must be https:// (got '" + std::string(url) + "')");
  }
  std::string_view rest = url.substr(8);
  if (const auto slash = rest.find('/'); slash != std::string_view::npos) rest = rest.substr(0, slash);
  std::string_view host = rest;
  std::string_view port_text;
  if (!rest.empty() && rest.front() == '[') {
    const auto close = rest.find(']');
    if (close == std::string_view::npos)
      return make_error(Errc::invalid_argument, "bad API server URL '" + std::string(url) + "'");
    host = rest.substr(1, close - 1);
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':')
        return make_error(Errc::invalid_argument, "bad API server URL '" + std::string(url) + "'");
      port_text = rest.substr(close + 2);
    }
  } else if (const auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    port_text = rest.substr(colon + 1);
  }
  if (host.empty()) return make_error(Errc::invalid_argument, "no host in API server URL '" + std::string(url) + "'");
  int port = 443;
  if (!port_text.empty()) {
    const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || port < 1 || port > 65535) {
      return make_error(Errc::invalid_argument, "bad port in API server URL '" + std::string(url) + "'");
    }
  }
  out.host = std::string(host);
  out.port = port;
  return {};
}

core::Result<KubeApiConfig> parse_kubeconfig(std::string_view text, const std::string& dir) {
  auto root = parse_yaml_document(text);
  if (!root) return make_error(Errc::invalid_argument, "kubeconfig: " + root.error().message);
  if (!root->is_object()) return make_error(Errc::invalid_argument, "kubeconfig: not a mapping");
  const std::string context_name = str(*root, "current-context");
  if (context_name.empty()) return make_error(Errc::invalid_argument, "kubeconfig: no current-context");
  const json* context = find_named(*root, "contexts", "context", context_name);
  if (context == nullptr)
    return make_error(Errc::invalid_argument, "kubeconfig: context '" + context_name + "' is not defined");
  const std::string cluster_name = str(*context, "cluster");
  const json* cluster = find_named(*root, "clusters", "cluster", cluster_name);
  if (cluster == nullptr)
    return make_error(Errc::invalid_argument, "kubeconfig: cluster '" + cluster_name + "' is not defined");
  const std::string user_name = str(*context, "user");
  const json* user = user_name.empty() ? nullptr : find_named(*root, "users", "user", user_name);
  if (!user_name.empty() && user == nullptr) {
    return make_error(Errc::invalid_argument, "kubeconfig: user '" + user_name + "' is not defined");
  }

  KubeApiConfig c;
  c.source = "kubeconfig context " + context_name;
  if (auto r = parse_server_url(str(*cluster, "server"), c); !r) {
    return make_error(Errc::invalid_argument, "kubeconfig: cluster '" + cluster_name + "': " + r.error().message);
  }
  if (str(*cluster, "insecure-skip-tls-verify") == "true") {
    return make_error(Errc::invalid_argument,
                      "kubeconfig: cluster '" + cluster_name +
                          "' sets insecure-skip-tls-verify; the gateway always verifies the API server");
  }
  c.tls_server_name = str(*cluster, "tls-server-name");
  if (const auto data = str(*cluster, "certificate-authority-data"); !data.empty()) {
    auto pem = decode_base64(data);
    if (!pem)
      return make_error(Errc::invalid_argument,
                        "kubeconfig: cluster '" + cluster_name + "': certificate-authority-data is not base64");
    c.tls.ca_pem = std::move(*pem);
  } else if (const auto file = str(*cluster, "certificate-authority"); !file.empty()) {
    c.tls.ca_file = resolve(dir, file);
  } else {
    return make_error(Errc::invalid_argument, "kubeconfig: cluster '" + cluster_name +
                                                  "' names no certificate-authority(-data) to verify the server with");
  }
  if (const auto ns = str(*context, "namespace"); !ns.empty()) c.namespace_name = ns;

  if (user != nullptr) {
    for (const char* plugin : {"exec", "auth-provider"}) {
      if (user->contains(plugin)) {
        return make_error(Errc::invalid_argument,
                          "kubeconfig: user '" + user_name + "' authenticates through an " + plugin +
                              " plugin, which the gateway does not run; use a token or a client certificate");
      }
    }
    if (user->contains("username") || user->contains("password")) {
      return make_error(Errc::invalid_argument, "kubeconfig: user '" + user_name + "': basic auth is not supported");
    }
    c.token = str(*user, "token");
    c.token_file = resolve(dir, str(*user, "tokenFile"));
    auto pem_of = [&](const char* data_key, const char* file_key, std::string& out) -> core::Result<void> {
      if (const auto data = str(*user, data_key); !data.empty()) {
        auto pem = decode_base64(data);
        if (!pem)
          return make_error(Errc::invalid_argument,
                            "kubeconfig: user '" + user_name + "': " + data_key + " is not base64");
        out = std::move(*pem);
      } else if (const auto file = str(*user, file_key); !file.empty()) {
        auto text = read_whole(resolve(dir, file), "kubeconfig");
        if (!text) return text.error();
        out = std::move(*text);
      }
      return {};
    };
    if (auto r = pem_of("client-certificate-data", "client-certificate", c.tls.cert_pem); !r) return r.error();
    if (auto r = pem_of("client-key-data", "client-key", c.tls.key_pem); !r) return r.error();
  }
  if (c.token.empty() && c.token_file.empty() && c.tls.cert_pem.empty()) {
    return make_error(Errc::invalid_argument, "kubeconfig: context '" + context_name +
                                                  "' has no credentials (a token, tokenFile or client certificate)");
  }
  return c;
}

core::Result<KubeApiConfig> load_kubeconfig(const std::string& path) {
  auto text = read_whole(path, "kubeconfig");
  if (!text) return make_error(Errc::invalid_argument, text.error().message);
  auto c = parse_kubeconfig(*text, std::filesystem::path(path).parent_path().string());
  if (!c) return make_error(c.error().code, path + ": " + c.error().message);
  c->source = "kubeconfig " + path + " (" + c->source.substr(11) + ")";
  return c;
}

core::Result<KubeApiConfig> in_cluster_config(const std::map<std::string, std::string>& env,
                                              const std::string& account_dir) {
  const auto host = env.find("KUBERNETES_SERVICE_HOST");
  const auto port = env.find("KUBERNETES_SERVICE_PORT");
  if (host == env.end() || host->second.empty() || port == env.end() || port->second.empty()) {
    return make_error(
        Errc::unavailable,
        "not in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set (give --kubeconfig)");
  }
  KubeApiConfig c;
  const bool is_v6 = host->second.find(':') != std::string::npos;
  if (auto r = parse_server_url("https://" + (is_v6 ? "[" + host->second + "]" : host->second) + ":" + port->second, c);
      !r) {
    return make_error(Errc::unavailable, "in-cluster: " + r.error().message);
  }
  c.token_file = account_dir + "/token";
  c.tls.ca_file = account_dir + "/ca.crt";
  for (const auto& f : {c.token_file, c.tls.ca_file}) {
    if (!std::filesystem::exists(f)) return make_error(Errc::unavailable, "in-cluster: " + f + " is missing");
  }
  if (auto ns = read_whole(account_dir + "/namespace", "in-cluster"); ns && !ns->empty()) {
    while (!ns->empty() && (ns->back() == '\n' || ns->back() == ' ')) ns->pop_back();
    c.namespace_name = *ns;
  }
  // Verified by the service's ClusterIP, as client-go's rest.InClusterConfig does: the
  // API server's serving certificate carries that address as an IP SAN.
  c.source = "in-cluster service account";
  return c;
}

}  // namespace execd::gateway

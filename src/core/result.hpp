#pragma once

#include <string>
#include <utility>
#include <variant>

namespace execd::core {

/// Domain-level error kinds. Only http/error_mapping.cpp turns one into an HTTP status
/// and the contract's `{"code","message"}` body; domain code never names a status.
enum class Errc {
  invalid_argument,       ///< a request field is malformed or out of range
  missing_parameter,      ///< a required query parameter is absent
  not_found,              ///< an id (command, session, execution) is unknown
  file_not_found,         ///< a path does not exist
  context_not_found,      ///< a code context or session id is unknown
  invalid_file,           ///< upload: multipart shape is wrong
  invalid_file_metadata,  ///< upload: a metadata part is malformed
  invalid_file_content,   ///< upload: a file part is missing or cut off
  conflict,               ///< the target exists / is busy / is in the wrong state
  permission_denied,      ///< the OS or the files root refused
  forbidden,              ///< refused by policy (e.g. signalling pid 1)
  too_large,              ///< over a configured limit
  range_not_satisfiable,  ///< a Range header that cannot be served
  unauthorized,           ///< missing or wrong access token
  route_not_found,        ///< no such route
  method_not_allowed,     ///< route exists, method does not
  not_supported,          ///< a feature this build or platform lacks
  no_space,               ///< the disk is full
  unavailable,            ///< a dependency (kernel, spawn) cannot be had now
  capacity,               ///< the gateway or its engine is full (max sandboxes, memory, pids)
  kernel_dead,            ///< the kernel process died
  bad_gateway,            ///< a proxied upstream could not be reached or broke off
  internal,               ///< a bug or an unexpected OS failure
};

/// An error as a value: what kind, and a message that names the problem for a human.
struct Error {
  Errc code = Errc::internal;
  std::string message;
};

/// A value or an Error (C++20 has no std::expected). Check `ok()` before `value()`.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}           // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}       // NOLINT(google-explicit-constructor)

  [[nodiscard]] bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& operator*() & { return std::get<0>(v_); }

  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

/// Result of an operation that yields nothing but may fail.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT(google-explicit-constructor)

  [[nodiscard]] bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

inline Error make_error(Errc code, std::string message) { return Error{code, std::move(message)}; }

}  // namespace execd::core

// libzmq, loaded when the first ZeroMQ call is made instead of when the daemon starts
// (core::LazyLibrary says why). The binary does not link libzmq; it defines the C functions
// cppzmq calls, each forwarding to the real one. If the library cannot be loaded, calls
// fail as libzmq's own do (-1 or NULL, errno ENOTSUP), which cppzmq turns into
// zmq::error_t, and KernelClient into a clear error for the request.
#include <zmq.h>

#include <cerrno>
#include <cstring>

#include "core/lazy_library.hpp"

namespace {

execd::core::LazyLibrary& libzmq() {
  static execd::core::LazyLibrary lib("libzmq.so.5");  // process-wide, like the library itself
  return lib;
}

}  // namespace

extern "C" {

// errno and messages must work even when the library is missing.
int zmq_errno(void) {
  static const auto real = reinterpret_cast<decltype(&::zmq_errno)>(libzmq().symbol("zmq_errno"));
  return real != nullptr ? real() : errno;
}
const char* zmq_strerror(int e) {
  static const auto real = reinterpret_cast<decltype(&::zmq_strerror)>(libzmq().symbol("zmq_strerror"));
  return real != nullptr ? real(e) : std::strerror(e);
}

}  // extern "C"

EXECD_LAZY_FORWARD(libzmq(), void, (void)0, zmq_version, (int* major, int* minor, int* patch), (major, minor, patch))
EXECD_LAZY_FORWARD(libzmq(), void*, nullptr, zmq_ctx_new, (void), ())
EXECD_LAZY_FORWARD(libzmq(), int, -1, zmq_ctx_term, (void* c), (c))
EXECD_LAZY_FORWARD(libzmq(), int, -1, zmq_ctx_shutdown, (void* c), (c))
EXECD_LAZY_FORWARD(libzmq(), int, -1, zmq_ctx_set, (void* c, int o, int v), (c, o, v))
EXECD_LAZY_FORWARD(libzmq(), int, -1, zmq_ctx_get, (void* c, int o), (c, o))
EXECD_LAZY_FORWARD(libzmq(), int, -1, zmq_msg_init, (zmq_msg_t * m), (m))
EXECD_LAZY_FORWARD(libzmq(), int, -1, zmq_msg_init_size, (zmq_msg_t * m, size_t n), (m, n))
EXECD_LAZY_FORWARD(libzmq(), int, -1, zmq_msg_init_data, (zmq_msg_t * m, void* d, size_t n, zmq_free_fn* f, void* h),
                   (m, d, n, f, h))
EXECD_LAZY_FORWARD(libzmq(), int, -1, zmq_msg_send, (zmq_msg_t * m, void* s, int f), (m, s, f))
EXECD_LAZY_FORWARD(libzmq(), int, -1, zmq_msg_recv, (zmq_msg_t * m, void* s, int f), (m, s, f))
EXECD_LAZY_FORWARD(libzmq(), int, -1, zmq_msg_close, (zmq_msg_t * m), (m))
EXECD_LAZY_FORWARD(libzmq(), int, -1, zmq_msg_move, (zmq_msg_t * d, zmq_msg_t* s), (d, s))
EXECD_LAZY_FORWARD(libzmq(), int, -1, zmq_msg_copy, (zmq_msg_t * d, zmq_msg_t* s), (d, s))
EXECD_LAZY_FORWARD(libzmq(), void*, nullptr, zmq_msg_data, (zmq_msg_t * m), (m))
EXECD_LAZY_FORWARD(libzmq(), size_t, 0, zmq_msg_size, (const zmq_msg_t* m), (m))
EXECD_LAZY_FORWARD(libzmq(), int, 0, zmq_msg_more, (const zmq_msg_t* m), (m))
EXECD_LAZY_FORWARD(libzmq(), int, -1, zmq_msg_get, (const zmq_msg_t* m, int p), (m, p))
EXECD_LAZY_FORWARD(libzmq(), int, -1, zmq_msg_set, (zmq_msg_t * m, int p, int v), (m, p, v))
EXECD_LAZY_FORWARD(libzmq(), const char*, nullptr, zmq_msg_gets, (const zmq_msg_t* m, const char* p), (m, p))
EXECD_LAZY_FORWARD(libzmq(), void*, nullptr, zmq_socket, (void* c, int t), (c, t))
EXECD_LAZY_FORWARD(libzmq(), int, -1, zmq_close, (void* s), (s))
EXECD_LAZY_FORWARD(libzmq(), int, -1, zmq_setsockopt, (void* s, int o, const void* v, size_t n), (s, o, v, n))
EXECD_LAZY_FORWARD(libzmq(), int, -1, zmq_getsockopt, (void* s, int o, void* v, size_t* n), (s, o, v, n))
EXECD_LAZY_FORWARD(libzmq(), int, -1, zmq_bind, (void* s, const char* a), (s, a))
EXECD_LAZY_FORWARD(libzmq(), int, -1, zmq_connect, (void* s, const char* a), (s, a))
EXECD_LAZY_FORWARD(libzmq(), int, -1, zmq_unbind, (void* s, const char* a), (s, a))
EXECD_LAZY_FORWARD(libzmq(), int, -1, zmq_disconnect, (void* s, const char* a), (s, a))
EXECD_LAZY_FORWARD(libzmq(), int, -1, zmq_send, (void* s, const void* b, size_t n, int f), (s, b, n, f))
EXECD_LAZY_FORWARD(libzmq(), int, -1, zmq_recv, (void* s, void* b, size_t n, int f), (s, b, n, f))
EXECD_LAZY_FORWARD(libzmq(), int, -1, zmq_socket_monitor, (void* s, const char* a, int e), (s, a, e))
EXECD_LAZY_FORWARD(libzmq(), int, -1, zmq_poll, (zmq_pollitem_t * i, int n, long t), (i, n, t))

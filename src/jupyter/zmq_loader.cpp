// libzmq, loaded when the first ZeroMQ call is made instead of when the daemon starts.
//
// Why: Debian's libzmq pulls in krb5, gssapi, norm, pgm and sodium; mapping and relocating
// them at start cost ~1.4 MiB of an idle daemon's RSS, for a daemon that may never start a
// kernel. The binary does not link libzmq; it defines the C functions cppzmq calls, and each
// forwards to the real one, resolved from dlopen("libzmq.so.5") on first use. If the library
// cannot be loaded, calls fail as libzmq's own do (-1 or NULL, errno ENOTSUP), which cppzmq
// turns into zmq::error_t, and KernelClient into a clear error for the request.
#include <dlfcn.h>
#include <zmq.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

namespace {

#define EXECD_ZMQ_FUNCTIONS(X)                                                  \
  X(zmq_errno) X(zmq_strerror) X(zmq_version) X(zmq_ctx_new) X(zmq_ctx_term)     \
  X(zmq_ctx_shutdown) X(zmq_ctx_set) X(zmq_ctx_get) X(zmq_msg_init)             \
  X(zmq_msg_init_size) X(zmq_msg_init_data) X(zmq_msg_send) X(zmq_msg_recv)     \
  X(zmq_msg_close) X(zmq_msg_move) X(zmq_msg_copy) X(zmq_msg_data)              \
  X(zmq_msg_size) X(zmq_msg_more) X(zmq_msg_get) X(zmq_msg_set) X(zmq_msg_gets) \
  X(zmq_socket) X(zmq_close) X(zmq_setsockopt) X(zmq_getsockopt) X(zmq_bind)    \
  X(zmq_connect) X(zmq_unbind) X(zmq_disconnect) X(zmq_send) X(zmq_recv)        \
  X(zmq_socket_monitor) X(zmq_poll)

struct Library {
#define EXECD_ZMQ_POINTER(name) decltype(&::name) name = nullptr;
  EXECD_ZMQ_FUNCTIONS(EXECD_ZMQ_POINTER)
#undef EXECD_ZMQ_POINTER
  bool loaded = false;
};

Library load() {
  Library lib;
  void* handle = ::dlopen("libzmq.so.5", RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    spdlog::error("zmq: cannot load libzmq.so.5: {}", ::dlerror());
    return lib;
  }
  bool complete = true;
#define EXECD_ZMQ_RESOLVE(name)                                                  \
  lib.name = reinterpret_cast<decltype(&::name)>(::dlsym(handle, #name));      \
  if (lib.name == nullptr) {                                                    \
    spdlog::error("zmq: libzmq.so.5 has no {}", #name);                          \
    complete = false;                                                           \
  }
  EXECD_ZMQ_FUNCTIONS(EXECD_ZMQ_RESOLVE)
#undef EXECD_ZMQ_RESOLVE
  lib.loaded = complete;
  spdlog::debug("zmq: libzmq loaded on first use");
  return lib;  // the handle stays open for the daemon's life
}

const Library& library() {
  static const Library lib = load();  // thread-safe, once
  return lib;
}

template <typename R>
R unavailable(R value) {
  errno = ENOTSUP;
  return value;
}

}  // namespace

extern "C" {

int zmq_errno(void) { return library().loaded ? library().zmq_errno() : errno; }
const char* zmq_strerror(int e) { return library().loaded ? library().zmq_strerror(e) : std::strerror(e); }
void zmq_version(int* major, int* minor, int* patch) {
  if (library().loaded) {
    library().zmq_version(major, minor, patch);
  } else {
    *major = *minor = *patch = 0;
  }
}

#define EXECD_ZMQ_FORWARD(ret, fail, name, params, args) \
  ret name params { return library().loaded ? library().name args : unavailable<ret>(fail); }

EXECD_ZMQ_FORWARD(void*, nullptr, zmq_ctx_new, (void), ())
EXECD_ZMQ_FORWARD(int, -1, zmq_ctx_term, (void* c), (c))
EXECD_ZMQ_FORWARD(int, -1, zmq_ctx_shutdown, (void* c), (c))
EXECD_ZMQ_FORWARD(int, -1, zmq_ctx_set, (void* c, int o, int v), (c, o, v))
EXECD_ZMQ_FORWARD(int, -1, zmq_ctx_get, (void* c, int o), (c, o))
EXECD_ZMQ_FORWARD(int, -1, zmq_msg_init, (zmq_msg_t * m), (m))
EXECD_ZMQ_FORWARD(int, -1, zmq_msg_init_size, (zmq_msg_t * m, size_t n), (m, n))
EXECD_ZMQ_FORWARD(int, -1, zmq_msg_init_data, (zmq_msg_t * m, void* d, size_t n, zmq_free_fn* f, void* h),
                  (m, d, n, f, h))
EXECD_ZMQ_FORWARD(int, -1, zmq_msg_send, (zmq_msg_t * m, void* s, int f), (m, s, f))
EXECD_ZMQ_FORWARD(int, -1, zmq_msg_recv, (zmq_msg_t * m, void* s, int f), (m, s, f))
EXECD_ZMQ_FORWARD(int, -1, zmq_msg_close, (zmq_msg_t * m), (m))
EXECD_ZMQ_FORWARD(int, -1, zmq_msg_move, (zmq_msg_t * d, zmq_msg_t* s), (d, s))
EXECD_ZMQ_FORWARD(int, -1, zmq_msg_copy, (zmq_msg_t * d, zmq_msg_t* s), (d, s))
EXECD_ZMQ_FORWARD(void*, nullptr, zmq_msg_data, (zmq_msg_t * m), (m))
EXECD_ZMQ_FORWARD(size_t, 0, zmq_msg_size, (const zmq_msg_t* m), (m))
EXECD_ZMQ_FORWARD(int, 0, zmq_msg_more, (const zmq_msg_t* m), (m))
EXECD_ZMQ_FORWARD(int, -1, zmq_msg_get, (const zmq_msg_t* m, int p), (m, p))
EXECD_ZMQ_FORWARD(int, -1, zmq_msg_set, (zmq_msg_t * m, int p, int v), (m, p, v))
EXECD_ZMQ_FORWARD(const char*, nullptr, zmq_msg_gets, (const zmq_msg_t* m, const char* p), (m, p))
EXECD_ZMQ_FORWARD(void*, nullptr, zmq_socket, (void* c, int t), (c, t))
EXECD_ZMQ_FORWARD(int, -1, zmq_close, (void* s), (s))
EXECD_ZMQ_FORWARD(int, -1, zmq_setsockopt, (void* s, int o, const void* v, size_t n), (s, o, v, n))
EXECD_ZMQ_FORWARD(int, -1, zmq_getsockopt, (void* s, int o, void* v, size_t* n), (s, o, v, n))
EXECD_ZMQ_FORWARD(int, -1, zmq_bind, (void* s, const char* a), (s, a))
EXECD_ZMQ_FORWARD(int, -1, zmq_connect, (void* s, const char* a), (s, a))
EXECD_ZMQ_FORWARD(int, -1, zmq_unbind, (void* s, const char* a), (s, a))
EXECD_ZMQ_FORWARD(int, -1, zmq_disconnect, (void* s, const char* a), (s, a))
EXECD_ZMQ_FORWARD(int, -1, zmq_send, (void* s, const void* b, size_t n, int f), (s, b, n, f))
EXECD_ZMQ_FORWARD(int, -1, zmq_recv, (void* s, void* b, size_t n, int f), (s, b, n, f))
EXECD_ZMQ_FORWARD(int, -1, zmq_socket_monitor, (void* s, const char* a, int e), (s, a, e))
EXECD_ZMQ_FORWARD(int, -1, zmq_poll, (zmq_pollitem_t * i, int n, long t), (i, n, t))

#undef EXECD_ZMQ_FORWARD
}

// What replacing a 1 MiB file costs on this machine's filesystem, step by step: write it
// to a temp file, fsync, rename over the previous copy; with writeback started every
// 256 KiB (sync_file_range), and with the replaced file held open across the rename (as
// files::AtomicWriter does). Usage: build/bench/replace_cost DIR (a directory on the disk
// under test). Prints mean milliseconds of 50 rounds per variant.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::string tmp = std::string(argv[1]) + "/replace_cost.tmp";
  const std::string dst = std::string(argv[1]) + "/replace_cost.dst";
  std::vector<char> data(1 << 20);
  std::mt19937 rng(1);
  for (auto& c : data) c = static_cast<char>(rng());
  struct Variant {
    const char* name;
    bool fsync, early_writeback, hold_replaced;
  };
  for (const Variant v : {Variant{"no fsync", false, false, false}, Variant{"fsync", true, false, false},
                          Variant{"fsync + writeback every 256 KiB", true, true, false},
                          Variant{"fsync + writeback + replaced file held open", true, true, true}}) {
    double t_write = 0, t_sync = 0, t_rename = 0;
    constexpr int kRounds = 50;
    for (int i = 0; i < kRounds; ++i) {
      const double a = now_ms();
      const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      for (size_t off = 0; off < data.size(); off += 64 * 1024) {
        if (::write(fd, data.data() + off, 64 * 1024) != 64 * 1024) return 1;
        if (v.early_writeback && (off + 64 * 1024) % (256 * 1024) == 0) {
          ::sync_file_range(fd, static_cast<off_t>(off + 64 * 1024 - 256 * 1024), 256 * 1024, SYNC_FILE_RANGE_WRITE);
        }
      }
      const double b = now_ms();
      if (v.fsync) ::fsync(fd);
      const double c = now_ms();
      const int replaced = v.hold_replaced ? ::open(dst.c_str(), O_PATH | O_CLOEXEC) : -1;
      ::rename(tmp.c_str(), dst.c_str());
      ::close(fd);
      const double d = now_ms();
      if (replaced >= 0) ::close(replaced);  // AtomicWriter leaves this to a background thread
      t_write += b - a;
      t_sync += c - b;
      t_rename += d - c;
      ::usleep(2000);
    }
    std::printf("%-46s write %.3f  fsync %.3f  rename %.3f ms\n", v.name, t_write / kRounds, t_sync / kRounds,
                t_rename / kRounds);
  }
  ::unlink(dst.c_str());
  return 0;
}

// Shared pieces of the native addon: errno-carrying JS errors, the packed packet
// batch handed to JS once per wake-up, and a uv_poll watcher for a netlink fd.
#pragma once

#include <napi.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace kp {

// Throws a JS Error with `errno`, `code` and `syscall` set. Callers return right after.
void ThrowErrno(Napi::Env env, int err, const std::string& syscall, const std::string& message);

// True when the effective capability set holds CAP_NET_ADMIN.
bool HasNetAdmin();

// Operator-readable message for a failed NFQUEUE/NFLOG bind ("NFQUEUE 0 is already bound ...").
std::string BindErrorMessage(const std::string& what, unsigned number, int err);

// Sets a large receive buffer (SO_RCVBUFFORCE as root, SO_RCVBUF otherwise).
void SetReceiveBuffer(int fd, int bytes);

// One packet's metadata; field order is the layout of the Uint32Array given to JS.
struct PacketMeta {
  uint32_t id = 0;          // NFQUEUE packet id (verdict key) / NFLOG sequence number
  uint32_t wireLength = 0;  // length before the copy range truncated it
  uint32_t inIfindex = 0;
  uint32_t outIfindex = 0;
  uint32_t tsSec = 0;       // 0 when the kernel attached no timestamp
  uint32_t tsUsec = 0;
  uint32_t hwProtocol = 0;  // ethertype, host order (0x0800 IPv4, 0x86dd IPv6)
  uint32_t mark = 0;
};

// Packets received in one wake-up, packed so JS gets one Buffer and one Uint32Array.
class PacketBatch {
 public:
  // Uint32 fields per packet: id, offset, length, then PacketMeta's remaining fields.
  static constexpr size_t kFields = 10;

  void Add(const PacketMeta& meta, const uint8_t* payload, uint32_t length);
  size_t Count() const { return meta_.size() / kFields; }
  void Clear();
  // Calls `callback(data, meta, count)` and clears the batch. Returns false if JS threw.
  bool Deliver(Napi::Env env, Napi::FunctionReference& callback);

 private:
  std::vector<uint8_t> data_;
  std::vector<uint32_t> meta_;
};

// Receive-side counters shared by NFQUEUE and NFLOG.
struct ReceiveCounters {
  uint64_t received = 0, batches = 0, enobufs = 0, truncated = 0, receiveErrors = 0;

  // After a failed recv: true to read again (EINTR; ENOBUFS, counted: the kernel dropped
  // messages, later ones still come), false to stop until the next wake-up.
  bool RetryAfter(int err);
  // The counters as a JS object, for stats().
  Napi::Object ToObject(Napi::Env env) const;
};

// Sets a numeric property on a stats object.
void SetCount(Napi::Env env, Napi::Object& object, const char* name, uint64_t value);

// Level-triggered read watcher on an fd owned by someone else. Stop() closes the
// uv handle asynchronously; `onClosed` runs once libuv no longer uses the fd.
class FdPoller {
 public:
  FdPoller(Napi::Env env, int fd, std::function<void()> onReadable);
  ~FdPoller();
  FdPoller(const FdPoller&) = delete;
  FdPoller& operator=(const FdPoller&) = delete;

  bool Start(std::string* error);
  void Stop(std::function<void()> onClosed);

 private:
  struct Handle {
    uv_poll_t poll;
    std::function<void()> onReadable;
    std::function<void()> onClosed;
  };
  uv_loop_t* loop_ = nullptr;
  int fd_;
  Handle* handle_ = nullptr;
  std::function<void()> onReadable_;
};

// Reads an optional non-negative integer option from a JS object.
uint32_t OptionUint(const Napi::Object& options, const char* name, uint32_t fallback);

}  // namespace kp

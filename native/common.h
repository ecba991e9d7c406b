// Shared pieces of the native addon: errno-carrying JS errors, the packed packet
// batch handed to JS once per wake-up, and a uv_poll watcher for a netlink fd.
#pragma once

#include <napi.h>
#include <sys/socket.h>
#include <uv.h>

#include <cerrno>
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

// Messages one recvmmsg call can take.
constexpr unsigned kReceiveSlots = 32;
// Room for the netlink/nfnetlink headers and attributes around a copied payload.
constexpr size_t kMessageOverhead = 4096;

// Reads whole netlink messages in batches with recvmmsg (one syscall for up to `slots`
// messages), each into its own fixed-size slot.
class MessageReader {
 public:
  MessageReader(size_t slotSize, unsigned slots);

  // Reads until the socket is drained or `enough()`; calls onMessage(data, length) per
  // whole message. ENOBUFS (the kernel dropped messages) is counted and reading goes on.
  template <typename OnMessage, typename Enough>
  void Drain(int fd, ReceiveCounters& counters, OnMessage onMessage, Enough enough);

  char* Slot(unsigned index) { return buffer_.data() + index * slotSize_; }
  size_t SlotSize() const { return slotSize_; }

 private:
  size_t slotSize_;
  unsigned slots_;
  std::vector<char> buffer_;
  std::vector<iovec> iovecs_;
  std::vector<mmsghdr> messages_;
};

template <typename OnMessage, typename Enough>
void MessageReader::Drain(int fd, ReceiveCounters& counters, OnMessage onMessage, Enough enough) {
  while (!enough()) {
    for (unsigned i = 0; i < slots_; ++i) {
      iovecs_[i] = {Slot(i), slotSize_};
      messages_[i] = {};
      messages_[i].msg_hdr.msg_iov = &iovecs_[i];
      messages_[i].msg_hdr.msg_iovlen = 1;
    }
    const int n = recvmmsg(fd, messages_.data(), slots_, MSG_DONTWAIT, nullptr);
    if (n < 0) {
      if (counters.RetryAfter(errno)) continue;
      return;
    }
    for (int i = 0; i < n; ++i) {
      // A cut message cannot be parsed; the slots are sized so this does not happen.
      if (messages_[i].msg_hdr.msg_flags & MSG_TRUNC) {
        ++counters.truncated;
        continue;
      }
      onMessage(Slot(i), messages_[i].msg_len);
    }
    if (n < static_cast<int>(slots_)) return;  // drained
  }
}

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
  // Times the watcher was restarted after an error status (socket overruns).
  uint64_t Restarts() const;

 private:
  struct Handle {
    uv_poll_t poll;
    std::function<void()> onReadable;
    std::function<void()> onClosed;
    uint64_t restarts = 0;
  };
  static void OnEvent(uv_poll_t* poll, int status, int events);
  uv_loop_t* loop_ = nullptr;
  int fd_;
  Handle* handle_ = nullptr;
  std::function<void()> onReadable_;
};

// Reads an optional non-negative integer option from a JS object.
uint32_t OptionUint(const Napi::Object& options, const char* name, uint32_t fallback);

}  // namespace kp

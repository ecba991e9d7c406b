// Shared pieces of the native addon: the exported classes' constructors, errno-carrying JS errors,
// the packet batch handed to JS once per wake-up, batched netlink reads and a uv_poll watcher.
#pragma once

#include <napi.h>
#include <sys/socket.h>
#include <uv.h>

#include <cerrno>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

// libmnl's socket (libmnl/libmnl.h), named here for SendNewTable.
struct mnl_socket;

namespace kp {

// What addon.cc exports; each is defined in the file of the same name.
Napi::Function DefineNfQueue(Napi::Env env);
Napi::Function DefineNfLog(Napi::Env env);
Napi::Function DefineRawSender(Napi::Env env);
Napi::Function DefineNftContext(Napi::Env env);
Napi::Value FastOpenSocket(const Napi::CallbackInfo& info);
Napi::Value Notify(const Napi::CallbackInfo& info);
Napi::Function DefineXdp(Napi::Env env);

// Sends one nf_tables NEWTABLE (family NFPROTO_*, name, NFTA_TABLE_FLAGS) in a batch of its own
// through `socket` and waits for the kernel's answer: 0, or the errno it gave. With `commit`
// false the kernel only validates the batch and aborts it, as `nft -c` does (nft_table_owner.cc).
int SendNewTable(mnl_socket* socket, uint8_t family, const std::string& name, uint32_t flags, bool commit);

// Throws a JS Error with `errno`, `code` and `syscall` set. Callers return right after.
void ThrowErrno(Napi::Env env, int err, const std::string& syscall, const std::string& message);

// Operator-readable message for a failed NFQUEUE/NFLOG bind ("NFQUEUE 0 is already bound ...").
std::string BindErrorMessage(const std::string& what, unsigned number, int err);

// Before a bind: throws (and returns false) when the process lacks CAP_NET_ADMIN.
bool RequireNetAdmin(Napi::Env env, const std::string& what, unsigned number);

// Sets a large receive buffer (SO_RCVBUFFORCE as root, SO_RCVBUF otherwise).
void SetReceiveBuffer(int fd, int bytes);

// Reads an optional non-negative integer option from a JS object.
uint32_t OptionUint(const Napi::Object& options, const char* name, uint32_t fallback);

// Sets a numeric property on a stats object.
void SetCount(Napi::Env env, Napi::Object& object, const char* name, uint64_t value);

// Packets received in one wake-up, packed so JS gets one Buffer and one Uint32Array.
class PacketBatch {
 public:
  // Uint32 fields per packet: id (NFQUEUE packet id, the verdict key; 0 for NFLOG), offset, length.
  static constexpr size_t kFields = 3;

  void Add(uint32_t id, const uint8_t* payload, uint32_t length);
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
  uint64_t received = 0, batches = 0, enobufs = 0;

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

// Reads whole netlink messages in batches with recvmmsg (one syscall for up to kReceiveSlots
// messages), each into its own fixed-size slot.
class MessageReader {
 public:
  explicit MessageReader(size_t slotSize)
      : slotSize_(slotSize),
        buffer_(slotSize * kReceiveSlots),
        iovecs_(kReceiveSlots),
        messages_(kReceiveSlots) {}

  // Reads until the socket is drained or `enough()`; calls onMessage(data, length) per
  // whole message. ENOBUFS (the kernel dropped messages) is counted and reading goes on.
  template <typename OnMessage, typename Enough>
  void Drain(int fd, ReceiveCounters& counters, OnMessage onMessage, Enough enough) {
    while (!enough()) {
      for (unsigned i = 0; i < kReceiveSlots; ++i) {
        iovecs_[i] = {Slot(i), slotSize_};
        messages_[i] = {};
        messages_[i].msg_hdr.msg_iov = &iovecs_[i];
        messages_[i].msg_hdr.msg_iovlen = 1;
      }
      const int n = recvmmsg(fd, messages_.data(), kReceiveSlots, MSG_DONTWAIT, nullptr);
      if (n < 0) {
        if (counters.RetryAfter(errno)) continue;
        return;
      }
      for (int i = 0; i < n; ++i) {
        // A cut message cannot be parsed; the slots are sized so this does not happen.
        if (!(messages_[i].msg_hdr.msg_flags & MSG_TRUNC)) onMessage(Slot(i), messages_[i].msg_len);
      }
      if (n < static_cast<int>(kReceiveSlots)) return;  // drained
    }
  }

  char* Slot(unsigned index) { return buffer_.data() + index * slotSize_; }
  size_t SlotSize() const { return slotSize_; }

 private:
  size_t slotSize_;
  std::vector<char> buffer_;
  std::vector<iovec> iovecs_;
  std::vector<mmsghdr> messages_;
};

// Level-triggered read watcher on an fd owned by someone else. Stop() closes the uv handle
// asynchronously; libuv calls nothing more after it.
class FdPoller {
 public:
  FdPoller(Napi::Env env, int fd) : fd_(fd) { napi_get_uv_event_loop(env, &loop_); }
  ~FdPoller() { Stop(); }
  FdPoller(const FdPoller&) = delete;
  FdPoller& operator=(const FdPoller&) = delete;

  bool Start(std::function<void()> onReadable, std::string* error);
  void Stop();
  // Times the watcher was restarted after an error status (socket overruns).
  uint64_t Restarts() const { return handle_ ? handle_->restarts : 0; }

 private:
  struct Handle {
    uv_poll_t poll;
    std::function<void()> onReadable;
    uint64_t restarts = 0;
  };
  static void OnEvent(uv_poll_t* poll, int status, int events);
  uv_loop_t* loop_ = nullptr;
  int fd_;
  Handle* handle_ = nullptr;
};

}  // namespace kp

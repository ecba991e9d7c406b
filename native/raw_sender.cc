// Sends whole IPv4/IPv6 packets built in JS (SYN-ACKs, RSTs) through raw sockets whose packets
// carry a firewall mark, from a sender thread that keeps the kernel's transmit work off JS.
#include <netinet/in.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "common.h"

namespace kp {
namespace {

// Staged packets handed to the sender thread without waiting for flush() (a full batch).
constexpr size_t kMaxStaged = 256;
// Packets waiting for the sender thread; beyond this it is behind and new ones are dropped
// (counted as bufferFull, like a full socket buffer), so memory stays bounded under a flood.
constexpr size_t kMaxWaiting = 8192;

// The socket buffer is full (or the device queue): this packet is lost, later ones may pass.
bool BufferFull(int err) { return err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS; }

// Opens a raw socket for whole IP packets; returns -errno on failure.
int OpenRawSocket(int family, uint32_t mark) {
  const int fd = socket(family, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_RAW);
  if (fd < 0) return -errno;
  const int on = 1;
  // IPPROTO_RAW implies IP_HDRINCL for IPv4; set it anyway so the intent is explicit.
  if ((family == AF_INET && setsockopt(fd, IPPROTO_IP, IP_HDRINCL, &on, sizeof on) != 0) ||
      (mark != 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0)) {
    const int err = errno;
    close(fd);
    return -err;
  }
  return fd;
}

std::string OpenErrorMessage(int family, int err) {
  const std::string name = family == AF_INET ? "IPv4" : "IPv6";
  if (err == EPERM || err == EACCES) {
    return "cannot open the " + name + " raw socket: need CAP_NET_RAW and CAP_NET_ADMIN (run as root)";
  }
  return "cannot open the " + name + " raw socket: " + strerror(err);
}

// new RawSender({ mark, ipv6 }). stage() + flush() hand a batch's packets to a sender thread,
// which sends them with one sendmmsg per address family. The thread keeps the kernel's
// transmit work (routing, output rules, and on veth the receiver's whole input path) off JS.
class RawSender : public Napi::ObjectWrap<RawSender> {
 public:
  explicit RawSender(const Napi::CallbackInfo& info);
  ~RawSender() override { CloseSockets(); }

  Napi::Value Stage(const Napi::CallbackInfo& info);
  Napi::Value Flush(const Napi::CallbackInfo& info);

  // close(): sends what is staged or waiting, then closes the sockets.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    HandOff();
    CloseSockets();
    return info.Env().Undefined();
  }

 private:
  // A packet: where it goes (the socket of its IP version, its destination) and its bytes.
  struct Packet {
    int fd = -1;
    sockaddr_storage address{};
    socklen_t addressLength = 0;
    size_t offset = 0;
    size_t length = 0;
  };
  // Packets and their bytes, copied out of JS.
  struct Packets {
    std::vector<uint8_t> bytes;
    std::vector<Packet> list;
    void Clear() {
      bytes.clear();
      list.clear();
    }
  };

  void HandOff();
  void SenderLoop();
  void SendFamily(const Packets& packets, int fd);
  void CloseSockets();

  int fd4_ = -1;
  int fd6_ = -1;

  Packets staged_;                                                           // JS thread only
  uint64_t reportedSent_ = 0, reportedBufferFull_ = 0, reportedFailed_ = 0;  // JS thread only

  std::mutex mutex_;
  std::condition_variable wake_;
  Packets handedOff_;      // guarded by mutex_
  bool stopping_ = false;  // guarded by mutex_
  std::thread thread_;

  // Sender thread only.
  Packets sending_;
  std::vector<iovec> iovecs_;
  std::vector<mmsghdr> messages_;

  // What happened to the packets (written by the sender thread).
  std::atomic<uint64_t> sent_{0}, bufferFull_{0}, failed_{0};
  std::atomic<int> lastErrno_{0};
};

RawSender::RawSender(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RawSender>(info) {
  Napi::Env env = info.Env();
  Napi::Object options =
      info.Length() > 0 && info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
  const uint32_t mark = OptionUint(options, "mark", 0);
  const bool wantV6 = !options.Get("ipv6").IsBoolean() || options.Get("ipv6").As<Napi::Boolean>().Value();
  for (const auto& [family, wanted, target] : {std::tuple{AF_INET, true, &fd4_}, {AF_INET6, wantV6, &fd6_}}) {
    if (!wanted) continue;
    const int fd = OpenRawSocket(family, mark);
    if (fd < 0) {
      CloseSockets();
      ThrowErrno(env, -fd, "socket", OpenErrorMessage(family, -fd));
      return;
    }
    *target = fd;
  }
  thread_ = std::thread([this] { SenderLoop(); });
}

// stage(packet: Uint8Array): copies the packet for the sender thread, which gets it at the
// next flush() (or now, when kMaxStaged are waiting). The IP version and destination come
// from the packet itself. Failures show in flush()'s outcome.
Napi::Value RawSender::Stage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    Napi::TypeError::New(env, "expected a packet (Uint8Array)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Uint8Array packet = info[0].As<Napi::Uint8Array>();
  const uint8_t* bytes = packet.Data();
  Packet staged;
  staged.length = packet.ElementLength();
  const int version = staged.length > 0 ? bytes[0] >> 4 : 0;
  if (version == 4 && staged.length >= 20) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&staged.address);
    sin->sin_family = AF_INET;
    memcpy(&sin->sin_addr, bytes + 16, 4);
    staged.addressLength = sizeof *sin;
    staged.fd = fd4_;
  } else if (version == 6 && staged.length >= 40) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&staged.address);
    sin6->sin6_family = AF_INET6;
    memcpy(&sin6->sin6_addr, bytes + 24, 16);
    staged.addressLength = sizeof *sin6;
    staged.fd = fd6_;
  } else {
    Napi::RangeError::New(env, "not an IPv4 or IPv6 packet").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (staged.fd < 0) {
    Napi::Error::New(env, std::string("no IPv") + (version == 4 ? "4" : "6") + " raw socket is open")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!thread_.joinable()) {
    Napi::Error::New(env, "the raw sender is closed").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  staged.offset = staged_.bytes.size();
  staged_.bytes.insert(staged_.bytes.end(), bytes, bytes + staged.length);
  staged_.list.push_back(staged);
  if (staged_.list.size() >= kMaxStaged) HandOff();
  return env.Undefined();
}

// flush(): hands the staged packets to the sender thread and returns, as
// { sent, bufferFull, failed, errno, code }, what happened since the previous flush() to
// the packets the thread has finished with (so mostly the previous batches').
Napi::Value RawSender::Flush(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HandOff();
  const uint64_t sent = sent_, bufferFull = bufferFull_, failed = failed_;
  const int lastErrno = lastErrno_;
  Napi::Object result = Napi::Object::New(env);
  SetCount(env, result, "sent", sent - reportedSent_);
  SetCount(env, result, "bufferFull", bufferFull - reportedBufferFull_);
  SetCount(env, result, "failed", failed - reportedFailed_);
  SetCount(env, result, "errno", static_cast<uint64_t>(lastErrno));
  const char* code = lastErrno != 0 ? strerrorname_np(lastErrno) : "";
  result.Set("code", Napi::String::New(env, code ? code : "EUNKNOWN"));
  reportedSent_ = sent;
  reportedBufferFull_ = bufferFull;
  reportedFailed_ = failed;
  return result;
}

void RawSender::HandOff() {
  if (staged_.list.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (handedOff_.list.size() + staged_.list.size() > kMaxWaiting) {
      bufferFull_ += staged_.list.size();
    } else {
      const size_t base = handedOff_.bytes.size();
      handedOff_.bytes.insert(handedOff_.bytes.end(), staged_.bytes.begin(), staged_.bytes.end());
      for (Packet packet : staged_.list) {
        packet.offset += base;
        handedOff_.list.push_back(packet);
      }
    }
  }
  wake_.notify_one();
  staged_.Clear();
}

// Sends what is handed off until stopped; on stop, sends what is left first.
void RawSender::SenderLoop() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !handedOff_.list.empty(); });
    if (handedOff_.list.empty()) return;  // stopping, nothing left
    std::swap(sending_, handedOff_);
    lock.unlock();
    for (const int fd : {fd4_, fd6_}) {
      if (fd >= 0) SendFamily(sending_, fd);
    }
    sending_.Clear();
    lock.lock();
  }
}

// One sendmmsg for every packet of this socket; a packet that fails is counted and
// skipped (sendmmsg stops at the first failure), then the rest go on.
void RawSender::SendFamily(const Packets& packets, int fd) {
  iovecs_.clear();
  messages_.clear();
  for (const Packet& packet : packets.list) {
    if (packet.fd != fd) continue;
    iovecs_.push_back({const_cast<uint8_t*>(packets.bytes.data()) + packet.offset, packet.length});
    mmsghdr message{};
    message.msg_hdr.msg_name = const_cast<sockaddr_storage*>(&packet.address);
    message.msg_hdr.msg_namelen = packet.addressLength;
    messages_.push_back(message);
  }
  for (size_t i = 0; i < messages_.size(); ++i) {
    messages_[i].msg_hdr.msg_iov = &iovecs_[i];
    messages_[i].msg_hdr.msg_iovlen = 1;
  }
  size_t next = 0;
  while (next < messages_.size()) {
    const int n = sendmmsg(fd, messages_.data() + next, static_cast<unsigned>(messages_.size() - next), 0);
    if (n > 0) {
      next += n;
      sent_ += n;
      continue;
    }
    const int err = errno;
    if (err == EINTR) continue;
    if (BufferFull(err)) {
      ++bufferFull_;
    } else {
      ++failed_;
      lastErrno_ = err;
    }
    ++next;
  }
}

void RawSender::CloseSockets() {
  if (thread_.joinable()) {  // the thread uses the sockets until it ends
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_one();
    thread_.join();
  }
  if (fd4_ >= 0) close(fd4_);
  if (fd6_ >= 0) close(fd6_);
  fd4_ = fd6_ = -1;
  staged_.Clear();
}

}  // namespace

Napi::Function DefineRawSender(Napi::Env env) {
  return RawSender::DefineClass(env, "RawSender",
                                {RawSender::InstanceMethod("stage", &RawSender::Stage),
                                 RawSender::InstanceMethod("flush", &RawSender::Flush),
                                 RawSender::InstanceMethod("close", &RawSender::Close)});
}

}  // namespace kp

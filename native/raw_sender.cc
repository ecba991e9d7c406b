#include "raw_sender.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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
  if (family == AF_INET && setsockopt(fd, IPPROTO_IP, IP_HDRINCL, &on, sizeof on) != 0) {
    const int err = errno;
    close(fd);
    return -err;
  }
  if (mark != 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) {
    const int err = errno;
    close(fd);
    return -err;
  }
  return fd;
}

std::string OpenErrorMessage(int family, int err) {
  const char* name = family == AF_INET ? "IPv4" : "IPv6";
  if (err == EPERM || err == EACCES) {
    return std::string("cannot open the ") + name + " raw socket: need CAP_NET_RAW and CAP_NET_ADMIN (run as root)";
  }
  return std::string("cannot open the ") + name + " raw socket: " + strerror(err);
}

}  // namespace

Napi::Function RawSender::Define(Napi::Env env) {
  return DefineClass(env, "RawSender",
                     {InstanceMethod("send", &RawSender::Send), InstanceMethod("stage", &RawSender::Stage),
                      InstanceMethod("flush", &RawSender::Flush), InstanceMethod("close", &RawSender::Close)});
}

// new RawSender({ mark, ipv4, ipv6 })
RawSender::RawSender(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RawSender>(info) {
  Napi::Env env = info.Env();
  Napi::Object options = info.Length() > 0 && info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
  const uint32_t mark = OptionUint(options, "mark", 0);
  const bool wantV4 = !options.Get("ipv4").IsBoolean() || options.Get("ipv4").As<Napi::Boolean>().Value();
  const bool wantV6 = !options.Get("ipv6").IsBoolean() || options.Get("ipv6").As<Napi::Boolean>().Value();
  for (const auto& [family, wanted, target] : {std::tuple{AF_INET, wantV4, &fd4_}, std::tuple{AF_INET6, wantV6, &fd6_}}) {
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

RawSender::~RawSender() { CloseSockets(); }

bool RawSender::ReadPacket(const Napi::CallbackInfo& info, Napi::Uint8Array* packet, Target* target) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    Napi::TypeError::New(env, "expected a packet (Uint8Array)").ThrowAsJavaScriptException();
    return false;
  }
  *packet = info[0].As<Napi::Uint8Array>();
  const uint8_t* bytes = packet->Data();
  const size_t length = packet->ElementLength();
  const int version = length > 0 ? bytes[0] >> 4 : 0;
  if (version == 4 && length >= 20) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&target->address);
    sin->sin_family = AF_INET;
    memcpy(&sin->sin_addr, bytes + 16, 4);
    target->addressLength = sizeof *sin;
    target->fd = fd4_;
  } else if (version == 6 && length >= 40) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&target->address);
    sin6->sin6_family = AF_INET6;
    memcpy(&sin6->sin6_addr, bytes + 24, 16);
    target->addressLength = sizeof *sin6;
    target->fd = fd6_;
  } else {
    Napi::RangeError::New(env, "not an IPv4 or IPv6 packet").ThrowAsJavaScriptException();
    return false;
  }
  if (target->fd < 0) {
    Napi::Error::New(env, std::string("no IPv") + (version == 4 ? "4" : "6") + " raw socket is open").ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

// send(packet: Uint8Array): the IP version and destination come from the packet itself.
// Returns false when the socket buffer is full (the packet is not sent).
Napi::Value RawSender::Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array packet;
  Target target;
  if (!ReadPacket(info, &packet, &target)) return env.Undefined();
  const ssize_t sent = sendto(target.fd, packet.Data(), packet.ElementLength(), 0,
                              reinterpret_cast<sockaddr*>(&target.address), target.addressLength);
  if (sent < 0) {
    if (BufferFull(errno)) return Napi::Boolean::New(env, false);
    const int err = errno;
    ThrowErrno(env, err, "sendto", std::string("raw send failed: ") + strerror(err));
    return env.Undefined();
  }
  return Napi::Boolean::New(env, true);
}

// stage(packet: Uint8Array): copies the packet for the sender thread, which gets it at the
// next flush() (or now, when kMaxStaged are waiting). Failures show in flush()'s outcome.
Napi::Value RawSender::Stage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Uint8Array packet;
  Packet staged;
  if (!ReadPacket(info, &packet, &staged.target)) return env.Undefined();
  if (!thread_.joinable()) {
    Napi::Error::New(env, "the raw sender is closed").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  staged.offset = staged_.bytes.size();
  staged.length = packet.ElementLength();
  staged_.bytes.insert(staged_.bytes.end(), packet.Data(), packet.Data() + staged.length);
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
  const uint64_t sent = outcome_.sent, bufferFull = outcome_.bufferFull, failed = outcome_.failed;
  const int lastErrno = outcome_.lastErrno;
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
      outcome_.bufferFull += staged_.list.size();
    } else {
      handedOff_.Append(staged_);
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
    if (packet.target.fd != fd) continue;
    iovecs_.push_back({const_cast<uint8_t*>(packets.bytes.data()) + packet.offset, packet.length});
    mmsghdr message{};
    message.msg_hdr.msg_name = const_cast<sockaddr_storage*>(&packet.target.address);
    message.msg_hdr.msg_namelen = packet.target.addressLength;
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
      outcome_.sent += n;
      continue;
    }
    const int err = errno;
    if (err == EINTR) continue;
    if (BufferFull(err)) {
      ++outcome_.bufferFull;
    } else {
      ++outcome_.failed;
      outcome_.lastErrno = err;
    }
    ++next;
  }
}

void RawSender::Packets::Append(const Packets& other) {
  const size_t base = bytes.size();
  bytes.insert(bytes.end(), other.bytes.begin(), other.bytes.end());
  for (Packet packet : other.list) {
    packet.offset += base;
    list.push_back(packet);
  }
}

void RawSender::Packets::Clear() {
  bytes.clear();
  list.clear();
}

// close(): sends what is staged or waiting, then closes the sockets.
Napi::Value RawSender::Close(const Napi::CallbackInfo& info) {
  HandOff();
  CloseSockets();
  return info.Env().Undefined();
}

void RawSender::StopThread() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void RawSender::CloseSockets() {
  StopThread();  // the thread uses the sockets until it ends
  if (fd4_ >= 0) close(fd4_);
  if (fd6_ >= 0) close(fd6_);
  fd4_ = fd6_ = -1;
  staged_.Clear();
}

}  // namespace kp

#include "raw_sender.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kp {
namespace {

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
  return DefineClass(env, "RawSender", {InstanceMethod("send", &RawSender::Send), InstanceMethod("close", &RawSender::Close)});
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
}

RawSender::~RawSender() { CloseSockets(); }

// send(packet: Uint8Array): the IP version and destination come from the packet itself.
// Returns false when the socket buffer is full (the packet is not sent).
Napi::Value RawSender::Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    Napi::TypeError::New(env, "send(packet: Uint8Array)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Uint8Array packet = info[0].As<Napi::Uint8Array>();
  const uint8_t* bytes = packet.Data();
  const size_t length = packet.ElementLength();
  const int version = length > 0 ? bytes[0] >> 4 : 0;

  sockaddr_storage destination{};
  socklen_t destinationLength = 0;
  int fd = -1;
  if (version == 4 && length >= 20) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&destination);
    sin->sin_family = AF_INET;
    memcpy(&sin->sin_addr, bytes + 16, 4);
    destinationLength = sizeof *sin;
    fd = fd4_;
  } else if (version == 6 && length >= 40) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&destination);
    sin6->sin6_family = AF_INET6;
    memcpy(&sin6->sin6_addr, bytes + 24, 16);
    destinationLength = sizeof *sin6;
    fd = fd6_;
  } else {
    Napi::RangeError::New(env, "not an IPv4 or IPv6 packet").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (fd < 0) {
    Napi::Error::New(env, std::string("no IPv") + (version == 4 ? "4" : "6") + " raw socket is open")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const ssize_t sent = sendto(fd, bytes, length, 0, reinterpret_cast<sockaddr*>(&destination), destinationLength);
  if (sent < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) return Napi::Boolean::New(env, false);
    const int err = errno;
    ThrowErrno(env, err, "sendto", std::string("raw send failed: ") + strerror(err));
    return env.Undefined();
  }
  return Napi::Boolean::New(env, true);
}

Napi::Value RawSender::Close(const Napi::CallbackInfo& info) {
  CloseSockets();
  return info.Env().Undefined();
}

void RawSender::CloseSockets() {
  if (fd4_ >= 0) close(fd4_);
  if (fd6_ >= 0) close(fd6_);
  fd4_ = fd6_ = -1;
}

}  // namespace kp

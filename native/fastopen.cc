// fastOpenSocket(family: 4 | 6): a client TCP socket that sends its first write inside the SYN
// (TCP Fast Open without a cookie), for knocking on a gateway that never answers SYNs.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "common.h"

#ifndef TCP_FASTOPEN_CONNECT
#define TCP_FASTOPEN_CONNECT 30
#endif
#ifndef TCP_FASTOPEN_NO_COOKIE
#define TCP_FASTOPEN_NO_COOKIE 34
#endif

namespace kp {

// A non-blocking TCP socket fd with TCP_FASTOPEN_CONNECT and TCP_FASTOPEN_NO_COOKIE set; the
// caller owns it. Throws an errno-carrying error (EOPNOTSUPP: client Fast Open disabled by
// net.ipv4.tcp_fastopen; ENOPROTOOPT: a kernel older than 4.15).
Napi::Value FastOpenSocket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "fastOpenSocket(family): family must be 4 or 6").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const int family = info[0].As<Napi::Number>().Int32Value();
  if (family != 4 && family != 6) {
    Napi::TypeError::New(env, "fastOpenSocket(family): family must be 4 or 6").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const int fd =
      socket(family == 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (fd < 0) {
    ThrowErrno(env, errno, "socket", "cannot open a TCP socket");
    return env.Undefined();
  }
  // connect() only records the peer; the first write then goes out inside the SYN. Without
  // NO_COOKIE the kernel would send a bare SYN asking for a cookie, since none is cached.
  const int on = 1;
  const struct {
    int option;
    const char* name;
  } options[] = {{TCP_FASTOPEN_CONNECT, "setsockopt TCP_FASTOPEN_CONNECT"},
                 {TCP_FASTOPEN_NO_COOKIE, "setsockopt TCP_FASTOPEN_NO_COOKIE"}};
  for (const auto& option : options) {
    if (setsockopt(fd, IPPROTO_TCP, option.option, &on, sizeof on) != 0) {
      const int err = errno;
      close(fd);
      ThrowErrno(env, err, option.name, "cannot enable TCP Fast Open on the socket");
      return env.Undefined();
    }
  }
  return Napi::Number::New(env, fd);
}

}  // namespace kp

// notify(socketPath, message): one sd_notify datagram ("READY=1", "WATCHDOG=1", ...) to the
// systemd notification socket in $NOTIFY_SOCKET. Node has no unix datagram sockets.
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

#include "common.h"

namespace kp {

// Sends `message` as one datagram to `socketPath`: a filesystem path, or an abstract socket
// when it starts with '@'. Returns undefined; throws an errno-carrying error when the send fails
// (ENOENT/ECONNREFUSED: nobody listens there; EAGAIN: the receiver is not reading).
Napi::Value Notify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    Napi::TypeError::New(env, "notify(socketPath, message): both must be strings")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const std::string path = info[0].As<Napi::String>().Utf8Value();
  const std::string message = info[1].As<Napi::String>().Utf8Value();
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() < 2 || (path[0] != '/' && path[0] != '@') || path.size() >= sizeof address.sun_path) {
    ThrowErrno(env, EINVAL, "sendto",
               "the notification socket path must be absolute or abstract (@...) and fit sun_path");
    return env.Undefined();
  }
  std::memcpy(address.sun_path, path.data(), path.size());
  if (path[0] == '@') address.sun_path[0] = '\0';
  // An abstract address is exactly as long as its name; a path ends with its NUL.
  const socklen_t length =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (path[0] == '@' ? 0 : 1));

  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ThrowErrno(env, errno, "socket", "cannot open a unix datagram socket");
    return env.Undefined();
  }
  // systemd reads its socket promptly; a stuck receiver must not hold the event loop for long.
  const timeval timeout{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  ssize_t sent;
  do {
    sent = sendto(fd, message.data(), message.size(), MSG_NOSIGNAL,
                  reinterpret_cast<const sockaddr*>(&address), length);
  } while (sent < 0 && errno == EINTR);
  const int err = errno;
  close(fd);
  if (sent < 0) {
    ThrowErrno(env, err, "sendto", "cannot send to the notification socket " + path);
    return env.Undefined();
  }
  return env.Undefined();
}

}  // namespace kp

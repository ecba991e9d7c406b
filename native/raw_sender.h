#pragma once

#include "common.h"

namespace kp {

// Sends whole IPv4/IPv6 packets built in JS (header included) through raw sockets
// whose packets carry a firewall mark.
class RawSender : public Napi::ObjectWrap<RawSender> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit RawSender(const Napi::CallbackInfo& info);
  ~RawSender() override;

 private:
  Napi::Value Send(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  void CloseSockets();

  int fd4_ = -1;
  int fd6_ = -1;
};

}  // namespace kp

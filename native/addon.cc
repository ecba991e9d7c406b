// knock-port's native addon: thin I/O only (NFQUEUE, NFLOG, raw sockets, libnftables, the
// client's Fast Open socket, sd_notify datagrams, the step-1 XDP program's
// loading, attaching and maps). Every decision about the packets is made in
// TypeScript.
#include <napi.h>

#include "common.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("abiVersion", Napi::Number::New(env, 5));
  exports.Set("NfQueue", kp::DefineNfQueue(env));
  exports.Set("NfLog", kp::DefineNfLog(env));
  exports.Set("RawSender", kp::DefineRawSender(env));
  exports.Set("NftContext", kp::DefineNftContext(env));
  exports.Set("fastOpenSocket", Napi::Function::New(env, kp::FastOpenSocket, "fastOpenSocket"));
  exports.Set("notify", Napi::Function::New(env, kp::Notify, "notify"));
  exports.Set("Xdp", kp::DefineXdp(env));
  return exports;
}

NODE_API_MODULE(knockport_native, Init)

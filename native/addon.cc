// knock-port's native addon: thin I/O only (NFQUEUE, NFLOG, raw sockets, libnftables,
// the client's Fast Open socket). Every decision about the packets is made in TypeScript.
#include <napi.h>

#include "fastopen.h"
#include "nfqueue.h"
#include "nflog.h"
#include "nft_context.h"
#include "raw_sender.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("abiVersion", Napi::Number::New(env, 3));
  exports.Set("NfQueue", kp::NfQueue::Define(env));
  exports.Set("NfLog", kp::NfLog::Define(env));
  exports.Set("RawSender", kp::RawSender::Define(env));
  exports.Set("NftContext", kp::NftContext::Define(env));
  exports.Set("fastOpenSocket", Napi::Function::New(env, kp::FastOpenSocket, "fastOpenSocket"));
  return exports;
}

NODE_API_MODULE(knockport_native, Init)

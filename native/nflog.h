#pragma once

#include <memory>
#include <vector>

#include "common.h"

struct nflog_handle;
struct nflog_g_handle;
struct nflog_data;
struct nfgenmsg;

namespace kp {

class NfLog : public Napi::ObjectWrap<NfLog> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit NfLog(const Napi::CallbackInfo& info);
  ~NfLog() override;

 private:
  int Configure(uint32_t copyRange, uint32_t flushTimeout, uint32_t bufferSize);
  static int OnPacket(nflog_g_handle* group, nfgenmsg* message, nflog_data* data, void* self);
  void OnReadable();
  void Release();

  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  Napi::Env env_;
  Napi::FunctionReference callback_;
  nflog_handle* handle_ = nullptr;
  nflog_g_handle* group_ = nullptr;
  std::unique_ptr<FdPoller> poller_;
  bool open_ = false;
  uint32_t groupNumber_ = 0;
  uint32_t maxBatch_ = 0;
  std::unique_ptr<MessageReader> reader_;
  PacketBatch batch_;
  ReceiveCounters counters_;
};

}  // namespace kp

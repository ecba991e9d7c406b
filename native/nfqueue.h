#pragma once

#include <sys/socket.h>

#include <memory>
#include <vector>

#include "common.h"

struct mnl_socket;
struct nlmsghdr;

namespace kp {

class NfQueue : public Napi::ObjectWrap<NfQueue> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit NfQueue(const Napi::CallbackInfo& info);
  ~NfQueue() override;

 private:
  int Configure();
  static int OnMessage(const nlmsghdr* nlh, void* data);
  void OnReadable();
  void OnNetlinkMessage(const char* data, size_t length);
  void Deliver();
  int SendBatchVerdict(uint32_t highestId, uint32_t verdict);
  template <typename VerdictAt>
  int SendVerdicts(const Napi::Uint32Array& ids, size_t count, VerdictAt verdictAt);
  void CloseSocket();

  Napi::Value Verdict(const Napi::CallbackInfo& info);
  Napi::Value Flush(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  Napi::Env env_;
  Napi::FunctionReference callback_;
  mnl_socket* nl_ = nullptr;
  std::unique_ptr<FdPoller> poller_;
  bool open_ = false;
  uint32_t queueNumber_ = 0;
  uint32_t portid_ = 0;
  uint32_t copyRange_ = 0;
  uint32_t maxLen_ = 0;
  uint32_t maxBatch_ = 0;

  std::unique_ptr<MessageReader> reader_;
  std::vector<char> verdictBuffer_;
  PacketBatch batch_;

  ReceiveCounters counters_;
  uint64_t verdicts_ = 0, verdictMessages_ = 0, batchVerdicts_ = 0, kernelErrors_ = 0;
  int lastKernelErrno_ = 0;
  uint64_t outstanding_ = 0;
};

}  // namespace kp

#pragma once

#include "common.h"

struct nft_ctx;

namespace kp {

// One libnftables context: runs nft command text in-process, in this process's
// network namespace, with output and error text captured.
class NftContext : public Napi::ObjectWrap<NftContext> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit NftContext(const Napi::CallbackInfo& info);
  ~NftContext() override;

 private:
  Napi::Value Run(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  nft_ctx* ctx_ = nullptr;
};

}  // namespace kp

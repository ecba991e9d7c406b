// One libnftables context: runs nft command text in-process, in this process's network
// namespace, with output and error text captured. The firewall's nft runner uses it.
#include <nftables/libnftables.h>

#include "common.h"

namespace kp {
namespace {

class NftContext : public Napi::ObjectWrap<NftContext> {
 public:
  explicit NftContext(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NftContext>(info) {
    ctx_ = nft_ctx_new(NFT_CTX_DEFAULT);
    if (!ctx_ || nft_ctx_buffer_output(ctx_) != 0 || nft_ctx_buffer_error(ctx_) != 0) {
      Free();
      Napi::Error::New(info.Env(), "cannot create a libnftables context").ThrowAsJavaScriptException();
    }
  }
  ~NftContext() override { Free(); }

  // run(script, { json, dryRun }) -> { status, output, error }
  Napi::Value Run(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ctx_) {
      Napi::Error::New(env, "the libnftables context is closed").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (info.Length() < 1 || !info[0].IsString()) {
      Napi::TypeError::New(env, "run(script: string, options?)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    const std::string script = info[0].As<Napi::String>().Utf8Value();
    bool json = false;
    bool dryRun = false;
    if (info.Length() > 1 && info[1].IsObject()) {
      Napi::Object options = info[1].As<Napi::Object>();
      json = options.Get("json").ToBoolean().Value();
      dryRun = options.Get("dryRun").ToBoolean().Value();
    }
    unsigned flags = nft_ctx_output_get_flags(ctx_);
    flags = json ? (flags | NFT_CTX_OUTPUT_JSON) : (flags & ~static_cast<unsigned>(NFT_CTX_OUTPUT_JSON));
    nft_ctx_output_set_flags(ctx_, flags);
    nft_ctx_set_dry_run(ctx_, dryRun);

    const int status = nft_run_cmd_from_buffer(ctx_, script.c_str());
    Napi::Object result = Napi::Object::New(env);
    result.Set("status", Napi::Number::New(env, status));
    // The getters return the text gathered since the previous call and reset the buffer.
    const char* output = nft_ctx_get_output_buffer(ctx_);
    const char* error = nft_ctx_get_error_buffer(ctx_);
    result.Set("output", Napi::String::New(env, output ? output : ""));
    result.Set("error", Napi::String::New(env, error ? error : ""));
    return result;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Free();
    return info.Env().Undefined();
  }

 private:
  void Free() {
    if (ctx_) nft_ctx_free(ctx_);
    ctx_ = nullptr;
  }

  nft_ctx* ctx_ = nullptr;
};

}  // namespace

Napi::Function DefineNftContext(Napi::Env env) {
  return NftContext::DefineClass(env, "NftContext",
                                 {NftContext::InstanceMethod("run", &NftContext::Run),
                                  NftContext::InstanceMethod("close", &NftContext::Close)});
}

}  // namespace kp

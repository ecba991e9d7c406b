#include "nft_context.h"

#include <nftables/libnftables.h>

namespace kp {

Napi::Function NftContext::Define(Napi::Env env) {
  return DefineClass(env, "NftContext", {InstanceMethod("run", &NftContext::Run), InstanceMethod("close", &NftContext::Close)});
}

NftContext::NftContext(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NftContext>(info) {
  ctx_ = nft_ctx_new(NFT_CTX_DEFAULT);
  if (!ctx_ || nft_ctx_buffer_output(ctx_) != 0 || nft_ctx_buffer_error(ctx_) != 0) {
    if (ctx_) nft_ctx_free(ctx_);
    ctx_ = nullptr;
    Napi::Error::New(info.Env(), "cannot create a libnftables context").ThrowAsJavaScriptException();
  }
}

NftContext::~NftContext() {
  if (ctx_) nft_ctx_free(ctx_);
}

// run(script, { json, dryRun }) -> { status, output, error }
Napi::Value NftContext::Run(const Napi::CallbackInfo& info) {
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

Napi::Value NftContext::Close(const Napi::CallbackInfo& info) {
  if (ctx_) nft_ctx_free(ctx_);
  ctx_ = nullptr;
  return info.Env().Undefined();
}

}  // namespace kp

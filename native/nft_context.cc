// One libnftables context: runs nft command text in-process, in this process's network
// namespace, with output and error text captured. The firewall's nft runner uses it.
//
// Table ownership (kernel 6.9+): a table created with the flags `owner` and `persist` belongs to
// the netlink socket that sent them. No other socket can delete it, flush it (`nft flush ruleset`
// skips it) or change it; when the socket closes the table stays, orphaned, until a socket adopts
// it by sending the owner flag again. libnftables 1.0.6 cannot say `persist`, so ownTable() sends
// that one message itself, through the context's own socket: every later change the context
// makes then comes from the owner.
#include <libmnl/libmnl.h>
#include <linux/netfilter/nf_tables.h>
#include <nftables/libnftables.h>
#include <sys/socket.h>

#include "common.h"

namespace kp {
namespace {

// NFT_TABLE_F_OWNER, and NFT_TABLE_F_PERSIST (kernel 6.9; not in Debian 12's headers).
constexpr uint32_t kTableOwner = 0x2;
constexpr uint32_t kTablePersist = 0x4;
// The table name the support probe validates; the probe never commits, so it is never created.
constexpr const char* kProbeTable = "knockport_owner_probe";

// The context's netlink socket: libnftables keeps it open from nft_ctx_new to nft_ctx_free, as the
// first member of its (private) struct nft_ctx, in every release since 0.9. Checked before use: a
// layout that moved it fails the check, and ownership is then not used.
mnl_socket* ContextSocket(nft_ctx* ctx) {
  mnl_socket* socket = *reinterpret_cast<mnl_socket**>(ctx);
  if (!socket) return nullptr;
  const int fd = mnl_socket_get_fd(socket);
  int domain = 0, protocol = 0;
  socklen_t size = sizeof domain;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &size) != 0 || domain != AF_NETLINK) return nullptr;
  size = sizeof protocol;
  if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &size) != 0 || protocol != NETLINK_NETFILTER)
    return nullptr;
  return socket;
}

// NFPROTO_INET, _IPV4, _IPV6 (linux/netfilter.h, whose linux/in.h clashes with netinet/in.h).
constexpr int kFamilyInet = 1, kFamilyIpv4 = 2, kFamilyIpv6 = 10;

// The NFPROTO_* number of an nft table family name, or -1.
int TableFamily(const std::string& family) {
  if (family == "inet") return kFamilyInet;
  if (family == "ip") return kFamilyIpv4;
  if (family == "ip6") return kFamilyIpv6;
  return -1;
}

class NftContext : public Napi::ObjectWrap<NftContext> {
 public:
  explicit NftContext(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NftContext>(info), env_(info.Env()) {
    ctx_ = nft_ctx_new(NFT_CTX_DEFAULT);
    if (!ctx_ || nft_ctx_buffer_output(ctx_) != 0 || nft_ctx_buffer_error(ctx_) != 0) {
      Free();
      Napi::Error::New(info.Env(), "cannot create a libnftables context").ThrowAsJavaScriptException();
      return;
    }
    // The socket must close when a worker thread ends, even if the wrapper is never collected: an
    // owned table stays bound to an open socket, and nothing else could change it.
    napi_add_env_cleanup_hook(env_, &NftContext::OnEnvCleanup, this);
  }
  ~NftContext() override {
    napi_remove_env_cleanup_hook(env_, &NftContext::OnEnvCleanup, this);
    Free();
  }

  // NftContext.probeTableOwnership() -> errno: 0 when the kernel accepts a table with the flags
  // owner and persist. A batch of its own, validated and aborted, on a socket of its own.
  static Napi::Value ProbeTableOwnership(const Napi::CallbackInfo& info) {
    mnl_socket* socket = mnl_socket_open(NETLINK_NETFILTER);
    if (!socket) return Napi::Number::New(info.Env(), errno);
    int err = mnl_socket_bind(socket, 0, MNL_SOCKET_AUTOPID) == 0 ? 0 : errno;
    if (err == 0) err = SendNewTable(socket, kFamilyInet, kProbeTable, kTableOwner | kTablePersist, false);
    mnl_socket_close(socket);
    return Napi::Number::New(info.Env(), err);
  }

  // ownTable(family, name) -> errno: sends the flags owner and persist for the table through this
  // context's socket. 0: the table is now this context's (created, adopted from a closed owner,
  // or already its own). EPERM: another open socket owns it. EOPNOTSUPP: it exists without
  // `persist` (which the kernel never adds to an existing table), or the kernel lacks it.
  Napi::Value OwnTable(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ctx_) {
      Napi::Error::New(env, "the libnftables context is closed").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
      Napi::TypeError::New(env, "ownTable(family: string, name: string)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    const int family = TableFamily(info[0].As<Napi::String>().Utf8Value());
    if (family < 0) {
      Napi::TypeError::New(env, "ownTable: family must be inet, ip or ip6").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    mnl_socket* socket = ContextSocket(ctx_);
    if (!socket) {
      Napi::Error::New(env, "this libnftables keeps its netlink socket where knock-port does not look for it")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    const std::string name = info[1].As<Napi::String>().Utf8Value();
    return Napi::Number::New(
        env, SendNewTable(socket, static_cast<uint8_t>(family), name, kTableOwner | kTablePersist, true));
  }

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
  static void OnEnvCleanup(void* self) { static_cast<NftContext*>(self)->Free(); }

  void Free() {
    if (ctx_) nft_ctx_free(ctx_);
    ctx_ = nullptr;
  }

  napi_env env_;
  nft_ctx* ctx_ = nullptr;
};

}  // namespace

Napi::Function DefineNftContext(Napi::Env env) {
  return NftContext::DefineClass(
      env, "NftContext",
      {NftContext::InstanceMethod("run", &NftContext::Run),
       NftContext::InstanceMethod("ownTable", &NftContext::OwnTable),
       NftContext::InstanceMethod("close", &NftContext::Close),
       NftContext::StaticMethod("probeTableOwnership", &NftContext::ProbeTableOwnership)});
}

}  // namespace kp

// NFLOG through libnetfilter_log: the kernel drops the packet itself and sends a copy
// here. Copies are delivered to JS in batches, like NFQUEUE, but without verdicts.
#include <fcntl.h>

extern "C" {
#include <libnetfilter_log/libnetfilter_log.h>
}

#include <cstring>
#include <memory>

#include "common.h"

namespace kp {
namespace {

constexpr uint32_t kDefaultCopyRange = 0xffff;
constexpr uint32_t kDefaultReceiveBuffer = 8 << 20;
constexpr uint32_t kMaxBatch = 256;

// new NfLog(group, { copyRange, receiveBuffer }, onBatch)
class NfLog : public Napi::ObjectWrap<NfLog> {
 public:
  explicit NfLog(const Napi::CallbackInfo& info);
  ~NfLog() override { Release(); }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Object stats = counters_.ToObject(info.Env());
    SetCount(info.Env(), stats, "pollRestarts", poller_ ? poller_->Restarts() : 0);
    return stats;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (open_) {
      open_ = false;
      Release();
      batch_.Clear();
      Unref();
    }
    return info.Env().Undefined();
  }

 private:
  int Configure(uint32_t copyRange);
  static int OnPacket(nflog_g_handle* group, nfgenmsg* message, nflog_data* data, void* self);
  void OnReadable();
  void Release();

  Napi::Env env_;
  Napi::FunctionReference callback_;
  nflog_handle* handle_ = nullptr;
  nflog_g_handle* group_ = nullptr;
  std::unique_ptr<FdPoller> poller_;
  bool open_ = false;
  uint32_t groupNumber_ = 0;
  std::unique_ptr<MessageReader> reader_;
  PacketBatch batch_;
  ReceiveCounters counters_;
};

NfLog::NfLog(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NfLog>(info), env_(info.Env()) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsObject() || !info[2].IsFunction()) {
    Napi::TypeError::New(env, "NfLog(group, options, onBatch)").ThrowAsJavaScriptException();
    return;
  }
  groupNumber_ = info[0].As<Napi::Number>().Uint32Value();
  if (groupNumber_ > 0xffff) {
    Napi::RangeError::New(env, "NFLOG group must be 0..65535").ThrowAsJavaScriptException();
    return;
  }
  Napi::Object options = info[1].As<Napi::Object>();
  const uint32_t copyRange = OptionUint(options, "copyRange", kDefaultCopyRange);
  const uint32_t receiveBuffer = OptionUint(options, "receiveBuffer", kDefaultReceiveBuffer);
  callback_ = Napi::Persistent(info[2].As<Napi::Function>());
  if (!RequireNetAdmin(env, "NFLOG group", groupNumber_)) return;

  handle_ = nflog_open();
  if (!handle_) {
    const int err = errno;
    ThrowErrno(env, err, "socket", std::string("cannot open a netfilter netlink socket: ") + strerror(err));
    return;
  }
  // Close-on-exec: a child the daemon spawns must not keep the group bound after close().
  fcntl(nflog_fd(handle_), F_SETFD, FD_CLOEXEC);
  const int err = Configure(copyRange);
  if (err != 0) {
    Release();
    ThrowErrno(env, err, "bind", BindErrorMessage("NFLOG group", groupNumber_, err));
    return;
  }
  const int fd = nflog_fd(handle_);
  SetReceiveBuffer(fd, static_cast<int>(receiveBuffer));
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  reader_ = std::make_unique<MessageReader>(copyRange + 2 * kMessageOverhead);

  poller_ = std::make_unique<FdPoller>(env, fd);
  std::string pollError;
  if (!poller_->Start([this] { OnReadable(); }, &pollError)) {
    Release();
    Napi::Error::New(env, "cannot watch the NFLOG socket: " + pollError).ThrowAsJavaScriptException();
    return;
  }
  Ref();
  open_ = true;
}

int NfLog::Configure(uint32_t copyRange) {
  group_ = nflog_bind_group(handle_, static_cast<uint16_t>(groupNumber_));
  if (!group_) return errno ? errno : EINVAL;
  if (nflog_callback_register(group_, &NfLog::OnPacket, this) < 0) return errno;
  // Copy the packet, and flush every packet at once (queue threshold 1, timeout 1/100 s):
  // the kernel's default batching delays a SYN by about a second, and the SYN-ACK with it.
  // The kernel's message buffer stays at its default (about a page): it is allocated per message.
  if (nflog_set_mode(group_, NFULNL_COPY_PACKET, copyRange) < 0) return errno;
  if (nflog_set_qthresh(group_, 1) < 0) return errno;
  if (nflog_set_timeout(group_, 1) < 0) return errno;
  return 0;
}

int NfLog::OnPacket(nflog_g_handle*, nfgenmsg*, nflog_data* data, void* opaque) {
  auto* self = static_cast<NfLog*>(opaque);
  char* payload = nullptr;
  const int length = nflog_get_payload(data, &payload);
  self->batch_.Add(0, reinterpret_cast<const uint8_t*>(payload),
                   length > 0 ? static_cast<uint32_t>(length) : 0);
  ++self->counters_.received;
  return 0;
}

// Drains the socket (recvmmsg until EAGAIN or a full batch), then calls JS once.
void NfLog::OnReadable() {
  reader_->Drain(
      nflog_fd(handle_), counters_,
      [this](const char* data, size_t length) {
        nflog_handle_packet(handle_, const_cast<char*>(data), static_cast<int>(length));
      },
      [this] { return !open_ || batch_.Count() >= kMaxBatch; });
  if (batch_.Count() == 0) return;
  ++counters_.batches;
  batch_.Deliver(env_, callback_);
}

void NfLog::Release() {
  poller_.reset();
  if (group_) {
    // The unbind waits for the kernel's ack (and frees the group handle only then).
    const int fd = nflog_fd(handle_);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    nflog_unbind_group(group_);
  }
  group_ = nullptr;
  if (handle_) nflog_close(handle_);
  handle_ = nullptr;
}

}  // namespace

Napi::Function DefineNfLog(Napi::Env env) {
  return NfLog::DefineClass(
      env, "NfLog",
      {NfLog::InstanceMethod("stats", &NfLog::Stats), NfLog::InstanceMethod("close", &NfLog::Close)});
}

}  // namespace kp

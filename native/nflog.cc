// NFLOG through libnetfilter_log: the kernel drops the packet itself and sends a copy
// here. Copies are delivered to JS in batches, like NFQUEUE, but without verdicts.
#include "nflog.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/time.h>

extern "C" {
#include <libnetfilter_log/libnetfilter_log.h>
}

#include <cerrno>
#include <cstring>

namespace kp {
namespace {

constexpr uint32_t kDefaultCopyRange = 0xffff;
// In 1/100 s. The kernel flushes at once anyway with a queue threshold of 1; the
// timeout only bounds the wait if a threshold above 1 is ever used.
constexpr uint32_t kDefaultFlushTimeout = 1;
constexpr uint32_t kDefaultReceiveBuffer = 8 << 20;
// 0 keeps the kernel's default (about a page). The kernel allocates this much for every
// message, and with a queue threshold of 1 each message holds one packet: a large buffer
// only costs a high-order allocation and a trim per packet.
constexpr uint32_t kDefaultKernelBuffer = 0;
constexpr uint32_t kDefaultMaxBatch = 256;

}  // namespace

Napi::Function NfLog::Define(Napi::Env env) {
  return DefineClass(env, "NfLog", {InstanceMethod("stats", &NfLog::Stats), InstanceMethod("close", &NfLog::Close)});
}

// new NfLog(group, { copyRange, flushTimeout, kernelBuffer, receiveBuffer, maxBatch }, onBatch)
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
  const uint32_t flushTimeout = OptionUint(options, "flushTimeout", kDefaultFlushTimeout);
  const uint32_t kernelBuffer = OptionUint(options, "kernelBuffer", kDefaultKernelBuffer);
  const uint32_t receiveBuffer = OptionUint(options, "receiveBuffer", kDefaultReceiveBuffer);
  maxBatch_ = std::max<uint32_t>(1, OptionUint(options, "maxBatch", kDefaultMaxBatch));
  callback_ = Napi::Persistent(info[2].As<Napi::Function>());

  if (!HasNetAdmin()) {
    ThrowErrno(env, EPERM, "bind", "cannot bind NFLOG group " + std::to_string(groupNumber_) +
                                       ": need CAP_NET_ADMIN (run as root)");
    return;
  }
  handle_ = nflog_open();
  if (!handle_) {
    const int err = errno;
    ThrowErrno(env, err, "socket", std::string("cannot open a netfilter netlink socket: ") + strerror(err));
    return;
  }
  // Close-on-exec: a child the daemon spawns must not keep the group bound after close().
  fcntl(nflog_fd(handle_), F_SETFD, FD_CLOEXEC);
  const int err = Configure(copyRange, flushTimeout, kernelBuffer);
  if (err != 0) {
    Release();
    ThrowErrno(env, err, "bind", BindErrorMessage("NFLOG group", groupNumber_, err));
    return;
  }
  const int fd = nflog_fd(handle_);
  SetReceiveBuffer(fd, static_cast<int>(receiveBuffer));
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  reader_ = std::make_unique<MessageReader>(std::max<size_t>(kernelBuffer, copyRange + kMessageOverhead) + kMessageOverhead,
                                            kReceiveSlots);

  poller_ = std::make_unique<FdPoller>(env, fd, [this] { OnReadable(); });
  std::string pollError;
  if (!poller_->Start(&pollError)) {
    poller_.reset();
    Release();
    Napi::Error::New(env, "cannot watch the NFLOG socket: " + pollError).ThrowAsJavaScriptException();
    return;
  }
  Ref();
  open_ = true;
}

NfLog::~NfLog() {
  if (poller_) poller_->Stop(nullptr);
  Release();
}

int NfLog::Configure(uint32_t copyRange, uint32_t flushTimeout, uint32_t kernelBuffer) {
  group_ = nflog_bind_group(handle_, static_cast<uint16_t>(groupNumber_));
  if (!group_) return errno ? errno : EINVAL;
  if (nflog_callback_register(group_, &NfLog::OnPacket, this) < 0) return errno;
  // Copy the packet, and flush every packet at once: the kernel's default batching
  // delays a SYN by about a second, and the SYN-ACK with it.
  if (nflog_set_mode(group_, NFULNL_COPY_PACKET, copyRange) < 0) return errno;
  if (nflog_set_qthresh(group_, 1) < 0) return errno;
  if (nflog_set_timeout(group_, flushTimeout) < 0) return errno;
  if (kernelBuffer > 0 && nflog_set_nlbufsiz(group_, kernelBuffer) < 0) return errno;
  if (nflog_set_flags(group_, NFULNL_CFG_F_SEQ) < 0) return errno;
  return 0;
}

int NfLog::OnPacket(nflog_g_handle*, nfgenmsg*, nflog_data* data, void* opaque) {
  auto* self = static_cast<NfLog*>(opaque);
  PacketMeta meta;
  uint32_t seq = 0;
  if (nflog_get_seq(data, &seq) == 0) meta.id = seq;
  if (nfulnl_msg_packet_hdr* header = nflog_get_msg_packet_hdr(data)) meta.hwProtocol = ntohs(header->hw_protocol);
  meta.inIfindex = nflog_get_indev(data);
  meta.outIfindex = nflog_get_outdev(data);
  meta.mark = nflog_get_nfmark(data);
  timeval tv{};
  if (nflog_get_timestamp(data, &tv) == 0) {
    meta.tsSec = static_cast<uint32_t>(tv.tv_sec);
    meta.tsUsec = static_cast<uint32_t>(tv.tv_usec);
  }
  char* payload = nullptr;
  const int length = nflog_get_payload(data, &payload);
  const uint32_t copied = length > 0 ? static_cast<uint32_t>(length) : 0;
  meta.wireLength = copied;
  self->batch_.Add(meta, reinterpret_cast<const uint8_t*>(payload), copied);
  ++self->counters_.received;
  return 0;
}

// Drains the socket (recvmmsg until EAGAIN or a full batch), then calls JS once.
void NfLog::OnReadable() {
  reader_->Drain(
      nflog_fd(handle_), counters_,
      [this](const char* data, size_t length) { nflog_handle_packet(handle_, const_cast<char*>(data), static_cast<int>(length)); },
      [this] { return !open_ || batch_.Count() >= maxBatch_; });
  if (batch_.Count() == 0) return;
  ++counters_.batches;
  batch_.Deliver(env_, callback_);
}

Napi::Value NfLog::Stats(const Napi::CallbackInfo& info) {
  Napi::Object stats = counters_.ToObject(info.Env());
  SetCount(info.Env(), stats, "pollRestarts", poller_ ? poller_->Restarts() : 0);
  return stats;
}

Napi::Value NfLog::Close(const Napi::CallbackInfo& info) {
  if (open_) {
    open_ = false;
    poller_->Stop(nullptr);
    poller_.reset();
    Release();
    batch_.Clear();
    Unref();
  }
  return info.Env().Undefined();
}

void NfLog::Release() {
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

}  // namespace kp

// NFQUEUE through the libmnl-based libnetfilter_queue API: bind one queue, receive packets in
// batches on the libuv loop, hand each batch to JS in one call, and drop them on JS's word.
#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <time.h>

#include <libnetfilter_queue/libnetfilter_queue.h>

#include <cstring>
#include <memory>

#include "common.h"

namespace kp {
namespace {

constexpr uint32_t kDefaultCopyRange = 0xffff;
constexpr uint32_t kDefaultMaxLen = 1024;
constexpr uint32_t kDefaultReceiveBuffer = 8 << 20;
constexpr uint32_t kDefaultMaxBatch = 256;
constexpr size_t kVerdictChunk = 64 * 1024;

bool After(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) > 0; }

// new NfQueue(queueNumber, { copyRange, maxLen, receiveBuffer, maxBatch }, onBatch). The only
// verdict it gives is drop: step 1 inspects a packet and never lets it through.
class NfQueue : public Napi::ObjectWrap<NfQueue> {
 public:
  explicit NfQueue(const Napi::CallbackInfo& info);
  ~NfQueue() override { Release(); }

  Napi::Value Drop(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);

  // Delivers packets that arrived while the queue was being bound.
  Napi::Value Flush(const Napi::CallbackInfo& info) {
    if (open_) Deliver();
    return info.Env().Undefined();
  }

  // Closing the socket unbinds the queue; the kernel drops packets still waiting for a verdict.
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
  int Configure();
  static int OnMessage(const nlmsghdr* nlh, void* data);
  void OnReadable();
  void Deliver();
  int SendBatchVerdict(uint32_t highestId);
  int SendVerdicts(const Napi::Uint32Array& ids, size_t count);
  void Release() {
    poller_.reset();
    if (nl_) mnl_socket_close(nl_);
    nl_ = nullptr;
  }

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
  uint64_t outstanding_ = 0;  // packets handed to JS and not yet dropped
};

NfQueue::NfQueue(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NfQueue>(info), env_(info.Env()) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsObject() || !info[2].IsFunction()) {
    Napi::TypeError::New(env, "NfQueue(queueNumber, options, onBatch)").ThrowAsJavaScriptException();
    return;
  }
  queueNumber_ = info[0].As<Napi::Number>().Uint32Value();
  Napi::Object options = info[1].As<Napi::Object>();
  copyRange_ = OptionUint(options, "copyRange", kDefaultCopyRange);
  maxLen_ = OptionUint(options, "maxLen", kDefaultMaxLen);
  maxBatch_ = std::max<uint32_t>(1, OptionUint(options, "maxBatch", kDefaultMaxBatch));
  const uint32_t receiveBuffer = OptionUint(options, "receiveBuffer", kDefaultReceiveBuffer);
  callback_ = Napi::Persistent(info[2].As<Napi::Function>());
  if (!RequireNetAdmin(env, "NFQUEUE", queueNumber_)) return;

  // Close-on-exec: a child the daemon spawns (an ipset session, nft) must not inherit the socket,
  // or the queue would stay bound to it after close() and could not be bound again.
  nl_ = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
  if (!nl_ || mnl_socket_bind(nl_, 0, MNL_SOCKET_AUTOPID) < 0) {
    const int err = errno;
    Release();
    ThrowErrno(env, err, "socket", std::string("cannot open a netfilter netlink socket: ") + strerror(err));
    return;
  }
  portid_ = mnl_socket_get_portid(nl_);
  // ENOBUFS stays reported (NETLINK_NO_ENOBUFS off): each overrun is counted, then reading goes on.
  SetReceiveBuffer(mnl_socket_get_fd(nl_), static_cast<int>(receiveBuffer));
  reader_ = std::make_unique<MessageReader>(std::max<size_t>(copyRange_, 1500) + kMessageOverhead);

  const int err = Configure();
  if (err != 0) {
    Release();
    ThrowErrno(env, err, "bind", BindErrorMessage("NFQUEUE", queueNumber_, err));
    return;
  }
  poller_ = std::make_unique<FdPoller>(env, mnl_socket_get_fd(nl_));
  std::string pollError;
  if (!poller_->Start([this] { OnReadable(); }, &pollError)) {
    Release();
    Napi::Error::New(env, "cannot watch the NFQUEUE socket: " + pollError).ThrowAsJavaScriptException();
    return;
  }
  Ref();  // stays alive while the socket is open, even with no JS reference left
  open_ = true;
}

// Binds the queue and sets copy mode, copy range, queue length and flags in one message.
int NfQueue::Configure() {
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  nlmsghdr* nlh = nfq_nlmsg_put(buf.data(), NFQNL_MSG_CONFIG, queueNumber_);
  nlh->nlmsg_flags |= NLM_F_ACK;
  const uint32_t seq = static_cast<uint32_t>(time(nullptr));
  nlh->nlmsg_seq = seq;
  nfq_nlmsg_cfg_put_cmd(nlh, AF_UNSPEC, NFQNL_CFG_CMD_BIND);
  nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, static_cast<int>(copyRange_));
  nfq_nlmsg_cfg_put_qmaxlen(nlh, maxLen_);
  // Deliberately no fail-open (a full queue drops) and no GSO (one segment per packet).
  mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO));
  mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(0));
  if (mnl_socket_sendto(nl_, nlh, nlh->nlmsg_len) < 0) return errno;

  // Packets may already arrive before the ack; they are kept for Flush().
  for (;;) {
    const ssize_t n = mnl_socket_recvfrom(nl_, reader_->Slot(0), reader_->SlotSize());
    if (n < 0) {
      if (counters_.RetryAfter(errno)) continue;
      return errno;
    }
    const int rc = mnl_cb_run(reader_->Slot(0), n, seq, portid_, &NfQueue::OnMessage, this);
    if (rc == MNL_CB_ERROR) return errno;
    if (rc == MNL_CB_STOP) return 0;
  }
}

int NfQueue::OnMessage(const nlmsghdr* nlh, void* data) {
  auto* self = static_cast<NfQueue*>(data);
  nlattr* attr[NFQA_MAX + 1] = {};
  if (nfq_nlmsg_parse(nlh, attr) < 0 || !attr[NFQA_PACKET_HDR]) return MNL_CB_OK;
  auto* header = static_cast<nfqnl_msg_packet_hdr*>(mnl_attr_get_payload(attr[NFQA_PACKET_HDR]));
  const uint8_t* payload = nullptr;
  uint32_t length = 0;
  if (attr[NFQA_PAYLOAD]) {
    payload = static_cast<const uint8_t*>(mnl_attr_get_payload(attr[NFQA_PAYLOAD]));
    length = mnl_attr_get_payload_len(attr[NFQA_PAYLOAD]);
  }
  self->batch_.Add(ntohl(header->packet_id), payload, length);
  ++self->counters_.received;
  return MNL_CB_OK;
}

// Drains the socket (recvmmsg until EAGAIN or a full batch), then calls JS once.
void NfQueue::OnReadable() {
  reader_->Drain(
      mnl_socket_get_fd(nl_), counters_,
      [this](const char* data, size_t length) {
        // Verdicts are sent without ACK, so an error message here is a rejected verdict.
        if (mnl_cb_run(data, length, 0, portid_, &NfQueue::OnMessage, this) == MNL_CB_ERROR) ++kernelErrors_;
      },
      [this] { return !open_ || batch_.Count() >= maxBatch_; });
  Deliver();
}

void NfQueue::Deliver() {
  if (batch_.Count() == 0) return;
  ++counters_.batches;
  outstanding_ += batch_.Count();
  batch_.Deliver(env_, callback_);
}

// drop(ids: Uint32Array, count?: number)
Napi::Value NfQueue::Drop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!open_) {
    Napi::Error::New(env, "NFQUEUE " + std::to_string(queueNumber_) + " is closed")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (info.Length() < 1 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
    Napi::TypeError::New(env, "drop(ids: Uint32Array, count?)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Uint32Array ids = info[0].As<Napi::Uint32Array>();
  size_t count = ids.ElementLength();
  if (info.Length() > 1 && info[1].IsNumber()) {
    count = std::min<size_t>(count, info[1].As<Napi::Number>().Uint32Value());
  }
  if (count == 0) return env.Undefined();

  // A batch verdict covers every queued id up to the highest one, so it is only
  // correct when these ids are all the packets JS still holds.
  int err = 0;
  if (count >= outstanding_) {
    uint32_t highest = ids[0];
    for (size_t i = 1; i < count; ++i) {
      if (After(ids[i], highest)) highest = ids[i];
    }
    err = SendBatchVerdict(highest);
  } else {
    err = SendVerdicts(ids, count);
  }
  outstanding_ = count >= outstanding_ ? 0 : outstanding_ - count;
  verdicts_ += count;
  if (err != 0) ThrowErrno(env, err, "sendto", std::string("cannot send NFQUEUE verdicts: ") + strerror(err));
  return env.Undefined();
}

int NfQueue::SendBatchVerdict(uint32_t highestId) {
  char buf[256];
  nlmsghdr* nlh = nfq_nlmsg_put(buf, NFQNL_MSG_VERDICT_BATCH, queueNumber_);
  nfq_nlmsg_verdict_put(nlh, static_cast<int>(highestId), NF_DROP);
  ++verdictMessages_;
  ++batchVerdicts_;
  return mnl_socket_sendto(nl_, nlh, nlh->nlmsg_len) < 0 ? errno : 0;
}

// One verdict message per packet, packed into as few sendto calls as fit.
int NfQueue::SendVerdicts(const Napi::Uint32Array& ids, size_t count) {
  verdictBuffer_.resize(kVerdictChunk);
  size_t used = 0;
  for (size_t i = 0; i < count; ++i) {
    if (used + 256 > verdictBuffer_.size()) {
      if (mnl_socket_sendto(nl_, verdictBuffer_.data(), used) < 0) return errno;
      used = 0;
    }
    nlmsghdr* nlh = nfq_nlmsg_put(verdictBuffer_.data() + used, NFQNL_MSG_VERDICT, queueNumber_);
    nfq_nlmsg_verdict_put(nlh, static_cast<int>(ids[i]), NF_DROP);
    used += NLMSG_ALIGN(nlh->nlmsg_len);
    ++verdictMessages_;
  }
  if (used > 0 && mnl_socket_sendto(nl_, verdictBuffer_.data(), used) < 0) return errno;
  return 0;
}

Napi::Value NfQueue::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object stats = counters_.ToObject(env);
  SetCount(env, stats, "verdicts", verdicts_);
  SetCount(env, stats, "verdictMessages", verdictMessages_);
  SetCount(env, stats, "batchVerdicts", batchVerdicts_);
  SetCount(env, stats, "kernelErrors", kernelErrors_);
  SetCount(env, stats, "pollRestarts", poller_ ? poller_->Restarts() : 0);
  return stats;
}

}  // namespace

Napi::Function DefineNfQueue(Napi::Env env) {
  return NfQueue::DefineClass(
      env, "NfQueue",
      {NfQueue::InstanceMethod("drop", &NfQueue::Drop), NfQueue::InstanceMethod("flush", &NfQueue::Flush),
       NfQueue::InstanceMethod("stats", &NfQueue::Stats), NfQueue::InstanceMethod("close", &NfQueue::Close)});
}

}  // namespace kp

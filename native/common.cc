#include "common.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace kp {

void ThrowErrno(Napi::Env env, int err, const std::string& syscall, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("errno", Napi::Number::New(env, err));
  const char* code = strerrorname_np(err);
  error.Set("code", Napi::String::New(env, code ? code : "EUNKNOWN"));
  error.Set("syscall", Napi::String::New(env, syscall));
  error.ThrowAsJavaScriptException();
}

bool HasNetAdmin() {
  FILE* status = fopen("/proc/self/status", "r");
  if (!status) return false;
  char line[256];
  unsigned long long effective = 0;
  while (fgets(line, sizeof line, status)) {
    if (sscanf(line, "CapEff: %llx", &effective) == 1) break;
  }
  fclose(status);
  constexpr int kCapNetAdmin = 12;
  return (effective >> kCapNetAdmin) & 1;
}

std::string BindErrorMessage(const std::string& what, unsigned number, int err) {
  const std::string name = what + " " + std::to_string(number);
  // The kernel answers EPERM both without CAP_NET_ADMIN and when another socket owns the
  // queue/group; with the capability in hand only the second remains.
  if ((err == EPERM && HasNetAdmin()) || err == EBUSY) return name + " is already bound by another process";
  if (err == EPERM) return "cannot bind " + name + ": need CAP_NET_ADMIN (run as root)";
  return "cannot bind " + name + ": " + strerror(err);
}

void SetReceiveBuffer(int fd, int bytes) {
  if (bytes <= 0) return;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
  }
}

void PacketBatch::Add(const PacketMeta& meta, const uint8_t* payload, uint32_t length) {
  const uint32_t offset = static_cast<uint32_t>(data_.size());
  data_.insert(data_.end(), payload, payload + length);
  meta_.insert(meta_.end(), {meta.id, offset, length, meta.wireLength, meta.inIfindex, meta.outIfindex,
                             meta.tsSec, meta.tsUsec, meta.hwProtocol, meta.mark});
}

void PacketBatch::Clear() {
  data_.clear();
  meta_.clear();
}

bool PacketBatch::Deliver(Napi::Env env, Napi::FunctionReference& callback) {
  Napi::HandleScope scope(env);
  const size_t count = Count();
  Napi::Buffer<uint8_t> data = Napi::Buffer<uint8_t>::Copy(env, data_.data(), data_.size());
  Napi::ArrayBuffer metaBytes = Napi::ArrayBuffer::New(env, meta_.size() * sizeof(uint32_t));
  if (!meta_.empty()) memcpy(metaBytes.Data(), meta_.data(), meta_.size() * sizeof(uint32_t));
  Napi::Uint32Array meta = Napi::Uint32Array::New(env, meta_.size(), metaBytes, 0);
  Clear();
  callback.MakeCallback(env.Global(), {data, meta, Napi::Number::New(env, static_cast<double>(count))});
  if (env.IsExceptionPending()) {
    // No JS frame to return to from a libuv callback: report it as an uncaught exception.
    Napi::Error error = env.GetAndClearPendingException();
    napi_fatal_exception(env, error.Value());
    return false;
  }
  return true;
}

FdPoller::FdPoller(Napi::Env env, int fd, std::function<void()> onReadable)
    : fd_(fd), onReadable_(std::move(onReadable)) {
  napi_get_uv_event_loop(env, &loop_);
}

FdPoller::~FdPoller() {
  if (handle_) Stop(nullptr);
}

bool FdPoller::Start(std::string* error) {
  handle_ = new Handle();
  handle_->onReadable = onReadable_;
  handle_->poll.data = handle_;
  int rc = uv_poll_init(loop_, &handle_->poll, fd_);
  if (rc != 0) {
    delete handle_;
    handle_ = nullptr;
    *error = uv_strerror(rc);
    return false;
  }
  rc = uv_poll_start(&handle_->poll, UV_READABLE, &FdPoller::OnEvent);
  if (rc != 0) {
    Stop(nullptr);
    *error = uv_strerror(rc);
    return false;
  }
  return true;
}

// A netlink socket whose receive buffer overflowed reports POLLERR until the next read
// returns ENOBUFS. libuv then stops the watcher and passes an error status; ignoring it
// would stop capture for good. So read anyway (the reader counts the ENOBUFS and goes on
// with the messages still queued) and watch again, unless the callback closed the poller.
void FdPoller::OnEvent(uv_poll_t* poll, int status, int) {
  auto* handle = static_cast<Handle*>(poll->data);
  if (handle->onReadable) handle->onReadable();
  if (status < 0 && !uv_is_closing(reinterpret_cast<uv_handle_t*>(poll))) {
    ++handle->restarts;
    uv_poll_start(poll, UV_READABLE, &FdPoller::OnEvent);
  }
}

uint64_t FdPoller::Restarts() const { return handle_ ? handle_->restarts : 0; }

void FdPoller::Stop(std::function<void()> onClosed) {
  if (!handle_) {
    if (onClosed) onClosed();
    return;
  }
  Handle* handle = handle_;
  handle_ = nullptr;
  // onReadable may be the caller (close() from inside a batch callback): it stays alive
  // until the handle is freed; libuv calls nothing more after uv_poll_stop.
  handle->onClosed = std::move(onClosed);
  uv_poll_stop(&handle->poll);
  uv_close(reinterpret_cast<uv_handle_t*>(&handle->poll), [](uv_handle_t* h) {
    auto* closed = static_cast<Handle*>(reinterpret_cast<uv_poll_t*>(h)->data);
    if (closed->onClosed) closed->onClosed();
    delete closed;
  });
}

bool ReceiveCounters::RetryAfter(int err) {
  if (err == EINTR) return true;
  if (err == ENOBUFS) {
    ++enobufs;
    return true;
  }
  if (err != EAGAIN && err != EWOULDBLOCK) ++receiveErrors;
  return false;
}

Napi::Object ReceiveCounters::ToObject(Napi::Env env) const {
  Napi::Object stats = Napi::Object::New(env);
  SetCount(env, stats, "received", received);
  SetCount(env, stats, "batches", batches);
  SetCount(env, stats, "enobufs", enobufs);
  SetCount(env, stats, "truncated", truncated);
  SetCount(env, stats, "receiveErrors", receiveErrors);
  return stats;
}

MessageReader::MessageReader(size_t slotSize, unsigned slots)
    : slotSize_(slotSize), slots_(slots), buffer_(slotSize * slots), iovecs_(slots), messages_(slots) {}

void SetCount(Napi::Env env, Napi::Object& object, const char* name, uint64_t value) {
  object.Set(name, Napi::Number::New(env, static_cast<double>(value)));
}

uint32_t OptionUint(const Napi::Object& options, const char* name, uint32_t fallback) {
  Napi::Value value = options.Get(name);
  if (!value.IsNumber()) return fallback;
  const double number = value.As<Napi::Number>().DoubleValue();
  return number >= 0 ? static_cast<uint32_t>(number) : fallback;
}

}  // namespace kp

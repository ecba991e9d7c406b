// Shared pieces of the native addon (see common.h): errors, bind messages, packet batches,
// receive counters and the uv_poll watcher.
#include "common.h"

#include <cstdio>
#include <cstring>

namespace kp {
namespace {

// True when the effective capability set holds CAP_NET_ADMIN.
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

}  // namespace

void ThrowErrno(Napi::Env env, int err, const std::string& syscall, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("errno", Napi::Number::New(env, err));
  const char* code = strerrorname_np(err);
  error.Set("code", Napi::String::New(env, code ? code : "EUNKNOWN"));
  error.Set("syscall", Napi::String::New(env, syscall));
  error.ThrowAsJavaScriptException();
}

std::string BindErrorMessage(const std::string& what, unsigned number, int err) {
  const std::string name = what + " " + std::to_string(number);
  // The kernel answers EPERM both without CAP_NET_ADMIN and when another socket owns the
  // queue/group; with the capability in hand only the second remains.
  if ((err == EPERM && HasNetAdmin()) || err == EBUSY) return name + " is already bound by another process";
  if (err == EPERM) return "cannot bind " + name + ": need CAP_NET_ADMIN (run as root)";
  return "cannot bind " + name + ": " + strerror(err);
}

bool RequireNetAdmin(Napi::Env env, const std::string& what, unsigned number) {
  if (HasNetAdmin()) return true;
  ThrowErrno(env, EPERM, "bind", BindErrorMessage(what, number, EPERM));
  return false;
}

void SetReceiveBuffer(int fd, int bytes) {
  if (bytes <= 0) return;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
  }
}

uint32_t OptionUint(const Napi::Object& options, const char* name, uint32_t fallback) {
  Napi::Value value = options.Get(name);
  if (!value.IsNumber()) return fallback;
  const double number = value.As<Napi::Number>().DoubleValue();
  return number >= 0 ? static_cast<uint32_t>(number) : fallback;
}

void SetCount(Napi::Env env, Napi::Object& object, const char* name, uint64_t value) {
  object.Set(name, Napi::Number::New(env, static_cast<double>(value)));
}

void PacketBatch::Add(uint32_t id, const uint8_t* payload, uint32_t length) {
  meta_.insert(meta_.end(), {id, static_cast<uint32_t>(data_.size()), length});
  data_.insert(data_.end(), payload, payload + length);
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

bool ReceiveCounters::RetryAfter(int err) {
  if (err == ENOBUFS) ++enobufs;
  return err == EINTR || err == ENOBUFS;
}

Napi::Object ReceiveCounters::ToObject(Napi::Env env) const {
  Napi::Object stats = Napi::Object::New(env);
  SetCount(env, stats, "received", received);
  SetCount(env, stats, "batches", batches);
  SetCount(env, stats, "enobufs", enobufs);
  return stats;
}

bool FdPoller::Start(std::function<void()> onReadable, std::string* error) {
  handle_ = new Handle();
  handle_->onReadable = std::move(onReadable);
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
    Stop();
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

void FdPoller::Stop() {
  if (!handle_) return;
  // onReadable may be the caller (close() from inside a batch callback): it stays alive
  // until the handle is freed; libuv calls nothing more after uv_poll_stop.
  uv_poll_stop(&handle_->poll);
  uv_close(reinterpret_cast<uv_handle_t*>(&handle_->poll),
           [](uv_handle_t* h) { delete static_cast<Handle*>(reinterpret_cast<uv_poll_t*>(h)->data); });
  handle_ = nullptr;
}

}  // namespace kp

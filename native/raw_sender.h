#pragma once

#include <sys/socket.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "common.h"

namespace kp {

// Sends whole IPv4/IPv6 packets built in JS (header included) through raw sockets
// whose packets carry a firewall mark. send() sends one packet now; stage() + flush()
// hand a batch's packets to a sender thread, which sends them with one sendmmsg per
// address family. The thread keeps the kernel's transmit work (routing, output rules,
// and on veth the receiver's whole input path) off the JS thread.
class RawSender : public Napi::ObjectWrap<RawSender> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit RawSender(const Napi::CallbackInfo& info);
  ~RawSender() override;

 private:
  // Where a packet goes: the socket of its IP version and its destination address.
  struct Target {
    int fd = -1;
    sockaddr_storage address{};
    socklen_t addressLength = 0;
  };
  struct Packet {
    Target target;
    size_t offset = 0;
    size_t length = 0;
  };
  // Packets and their bytes, copied out of JS.
  struct Packets {
    std::vector<uint8_t> bytes;
    std::vector<Packet> list;
    void Append(const Packets& other);
    void Clear();
  };
  // What happened to the packets (written by the sender thread).
  struct Outcome {
    std::atomic<uint64_t> sent{0}, bufferFull{0}, failed{0};
    std::atomic<int> lastErrno{0};
  };

  // Reads the packet argument and its target; throws (and returns false) when unusable.
  bool ReadPacket(const Napi::CallbackInfo& info, Napi::Uint8Array* packet, Target* target);
  void HandOff();
  void SenderLoop();
  void SendFamily(const Packets& packets, int fd);
  void StopThread();

  Napi::Value Send(const Napi::CallbackInfo& info);
  Napi::Value Stage(const Napi::CallbackInfo& info);
  Napi::Value Flush(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  void CloseSockets();

  int fd4_ = -1;
  int fd6_ = -1;

  Packets staged_;  // JS thread only
  uint64_t reportedSent_ = 0, reportedBufferFull_ = 0, reportedFailed_ = 0;  // JS thread only

  std::mutex mutex_;
  std::condition_variable wake_;
  Packets handedOff_;  // guarded by mutex_
  bool stopping_ = false;  // guarded by mutex_
  std::thread thread_;

  // Sender thread only.
  Packets sending_;
  std::vector<iovec> iovecs_;
  std::vector<mmsghdr> messages_;

  Outcome outcome_;
};

}  // namespace kp

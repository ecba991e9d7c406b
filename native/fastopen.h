// A client TCP socket that sends its first write inside the SYN (TCP Fast Open without a
// cookie), for knocking on a gateway that never answers SYNs (step1_handshake: none).
#pragma once

#include <napi.h>

#include "common.h"

namespace kp {

// fastOpenSocket(family: 4 | 6): number. A non-blocking TCP socket fd with
// TCP_FASTOPEN_CONNECT and TCP_FASTOPEN_NO_COOKIE set; the caller owns it. Throws an
// errno-carrying error (EOPNOTSUPP: client Fast Open disabled by net.ipv4.tcp_fastopen;
// ENOPROTOOPT: a kernel older than 4.15).
Napi::Value FastOpenSocket(const Napi::CallbackInfo& info);

}  // namespace kp

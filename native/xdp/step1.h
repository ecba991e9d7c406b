// What the step-1 XDP program (step1.bpf.c) and the addon (xdp.cc) share: the layout of its
// configuration map's one value and the order of its per-CPU counters. The TypeScript side
// (src/capture/xdp.ts) writes the same layout; the addon exports its size, checked there.
#pragma once

#include <linux/types.h>

// The longest request-line prefix compared in XDP; a longer one is compared on this many bytes
// (the kernel prefilter and the daemon compare the rest).
#define KP_XDP_MAX_PREFIX 256
// The most bytes of options a TCP header holds (data offset 15 words).
#define KP_XDP_MAX_TCP_OPTIONS 40

// kp_xdp_config.flags
#define KP_XDP_ON 0x1      // answer and filter; otherwise every packet passes
#define KP_XDP_COOKIE 0x2  // step1_handshake: cookie (else none)
#define KP_XDP_RESET 0x4   // step1_reply: reset (data segments all go to the daemon)
#define KP_XDP_IPV6 0x8    // ipv6: true (else IPv6 is left to the kernel's rules)

struct kp_xdp_config {
  __u64 key0;             // SipHash-2-4 key: the cookie secret's bytes 0-7, little-endian
  __u64 key1;             // bytes 8-15
  __s64 clock_offset_ns;  // CLOCK_REALTIME - CLOCK_MONOTONIC: bpf_ktime_get_ns() + this = wall time
  __u32 flags;
  __u16 port;        // the step-1 port, host order
  __u16 prefix_len;  // bytes of prefix used (at most KP_XDP_MAX_PREFIX)
  __u8 prefix[KP_XDP_MAX_PREFIX];
};

// Per-CPU counters, in this order.
enum kp_xdp_counter {
  KP_XDP_SYN_ANSWERED = 0,  // SYN-ACK sent with XDP_TX
  KP_XDP_BAD_COOKIE,        // data segment dropped: its ACK is no cookie of ours
  KP_XDP_BAD_PREFIX,        // data segment dropped: payload does not start with the prefix
  KP_XDP_SYN_DROPPED,       // SYN without data dropped (step1_handshake: none never answers)
  KP_XDP_PASSED_KNOCK,      // data segment with a valid cookie and prefix: to the kernel's rules
  KP_XDP_PASSED_OTHER,      // to the step-1 port, but left to the kernel's rules untouched
  KP_XDP_BAD_OPTIONS,       // segment dropped: TCP options the daemon's decoder refuses
  KP_XDP_COUNTERS
};

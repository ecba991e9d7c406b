// SPDX-License-Identifier: CC0-1.0
// knock-port's step-1 XDP front, on interface_ext. It answers a SYN to the step-1 port of one of
// this host's addresses with XDP_TX, with exactly the SYN-ACK the daemon would send (the same
// SipHash-2-4 cookie, keyed from the config map the daemon fills); it drops data segments whose
// ACK is no cookie of ours or whose payload does not begin with `POST <path> HTTP/1.`, counting
// them; everything else passes untouched to the kernel's rules, which still drop all that is not
// handed to the daemon, and the daemon checks every knock again. An accelerator, never a gate.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>

// libbpf's headers use the kernel's types: after the kernel's headers.
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "step1.h"

#define COOKIE_SLOT_NS 64000000000ULL
#define SLOT_BITS_MASK 0x3u
#define SYN_ACK_WINDOW 64240
#define ADVERTISED_MSS_V4 1460
#define ADVERTISED_MSS_V6 1440
#define HOP_LIMIT 64
#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct kp_xdp_config);
} config SEC(".maps");

// This host's addresses (IPv4 as ::ffff:a.b.c.d): the rules' `fib daddr type local`.
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1024);
  __type(key, __u8[16]);
  __type(value, __u8);
} local_addresses SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, KP_XDP_COUNTERS);
  __type(key, __u32);
  __type(value, __u64);
} counters SEC(".maps");

// A big-endian 16-bit field read byte by byte: the result's bounds stay known to the verifier,
// which loses them after a byte swap before Linux 6.3 (and refuses it in packet arithmetic).
static __always_inline __u32 load_be16(const void* field) {
  const __u8* p = field;
  return ((__u32)p[0] << 8) | p[1];
}

// An upper bound the verifier sees: Linux 6.1's loses the bounds of a value assembled from bytes,
// and refuses it in packet pointer arithmetic. The empty asm keeps the compiler from dropping it.
#define BOUND_OR_PASS(var, max)         \
  do {                                  \
    asm volatile("" : "+r"(var));       \
    if ((var) > (max)) return XDP_PASS; \
  } while (0)

static __always_inline int count(__u32 which, int action) {
  __u64* value = bpf_map_lookup_elem(&counters, &which);
  if (value) *value += 1;
  return action;
}

// ---- SipHash-2-4, as src/step1/siphash.ts ----------------------------------------------------

#define ROTL(x, b) (__u64)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND       \
  do {                 \
    v0 += v1;          \
    v1 = ROTL(v1, 13); \
    v1 ^= v0;          \
    v0 = ROTL(v0, 32); \
    v2 += v3;          \
    v3 = ROTL(v3, 16); \
    v3 ^= v2;          \
    v0 += v3;          \
    v3 = ROTL(v3, 21); \
    v3 ^= v0;          \
    v2 += v1;          \
    v1 = ROTL(v1, 17); \
    v1 ^= v2;          \
    v2 = ROTL(v2, 32); \
  } while (0)

// The cookie message: source, destination (4 or 16 bytes each), ports, the client's ISN and the
// slot, all big-endian: 20 bytes for IPv4, 44 for IPv6. Room for 6 words.
struct message {
  __u8 bytes[48];
};

// Low 32 bits of SipHash-2-4 of the first `length` bytes (a constant at each call: unrolled).
static __always_inline __u32 siphash(const struct kp_xdp_config* cfg, const struct message* m,
                                     const int length) {
  __u64 v0 = cfg->key0 ^ 0x736f6d6570736575ULL;
  __u64 v1 = cfg->key1 ^ 0x646f72616e646f6dULL;
  __u64 v2 = cfg->key0 ^ 0x6c7967656e657261ULL;
  __u64 v3 = cfg->key1 ^ 0x7465646279746573ULL;
  const int whole = length - (length % 8);
#pragma unroll
  for (int i = 0; i < 40; i += 8) {
    if (i < whole) {
      __u64 word;
      __builtin_memcpy(&word, &m->bytes[i], 8);  // little-endian, as the reference
      v3 ^= word;
      SIPROUND;
      SIPROUND;
      v0 ^= word;
    }
  }
  __u64 last = (__u64)(length & 0xff) << 56;
#pragma unroll
  for (int i = 0; i < 7; i++) {
    if (whole + i < length) last |= (__u64)m->bytes[whole + i] << (8 * i);
  }
  v3 ^= last;
  SIPROUND;
  SIPROUND;
  v0 ^= last;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return (__u32)(v0 ^ v1 ^ v2 ^ v3);
}

// One side of a connection, as the cookie sees it (network byte order as on the wire).
struct flow {
  const __u8* saddr;
  const __u8* daddr;
  __u16 sport;  // network order
  __u16 dport;
};

static __always_inline __u32 cookie_for(const struct kp_xdp_config* cfg, const struct flow* f, int ipv6,
                                        __u32 client_isn, __u32 slot) {
  struct message m = {};
  const int address_length = ipv6 ? 16 : 4;
  int o = 2 * address_length;
  if (ipv6) {
    __builtin_memcpy(&m.bytes[0], f->saddr, 16);
    __builtin_memcpy(&m.bytes[16], f->daddr, 16);
  } else {
    __builtin_memcpy(&m.bytes[0], f->saddr, 4);
    __builtin_memcpy(&m.bytes[4], f->daddr, 4);
  }
  __builtin_memcpy(&m.bytes[o], &f->sport, 2);
  __builtin_memcpy(&m.bytes[o + 2], &f->dport, 2);
  __u32 isn_be = bpf_htonl(client_isn);
  __u32 slot_be = bpf_htonl(slot);
  __builtin_memcpy(&m.bytes[o + 4], &isn_be, 4);
  __builtin_memcpy(&m.bytes[o + 8], &slot_be, 4);
  __u32 mac = ipv6 ? siphash(cfg, &m, 44) : siphash(cfg, &m, 20);
  return (mac & ~SLOT_BITS_MASK) | (slot & SLOT_BITS_MASK);
}

static __always_inline __u32 current_slot(const struct kp_xdp_config* cfg) {
  return (__u32)((bpf_ktime_get_ns() + cfg->clock_offset_ns) / COOKIE_SLOT_NS);
}

// As KeyedCookieSource.verify: `ack - 1` must be our cookie for this flow and `seq - 1`, in the
// slot its low bits name, which must be the current or the previous one.
static __always_inline int cookie_valid(const struct kp_xdp_config* cfg, const struct flow* f, int ipv6,
                                        const struct tcphdr* tcp) {
  __u32 presented = bpf_ntohl(tcp->ack_seq) - 1;
  __u32 client_isn = bpf_ntohl(tcp->seq) - 1;
  __u32 current = current_slot(cfg);
  __u32 bits = presented & SLOT_BITS_MASK;
  __u32 slot;
  if ((current & SLOT_BITS_MASK) == bits)
    slot = current;
  else if (((current - 1) & SLOT_BITS_MASK) == bits)
    slot = current - 1;
  else
    return 0;
  return cookie_for(cfg, f, ipv6, client_isn, slot) == presented;
}

// ---- checks the daemon's decoder makes (src/packet/decode.ts) --------------------------------

// Whether the segment's payload [payload, payload + length) begins with the configured prefix.
static __attribute__((noinline)) int starts_with_prefix(const struct kp_xdp_config* cfg, const __u8* payload,
                                                        __u32 length, const void* data_end) {
  __u32 prefix_len = cfg->prefix_len;
  if (prefix_len > KP_XDP_MAX_PREFIX || prefix_len == 0) return 0;
  if (length < prefix_len) return 0;
#pragma clang loop unroll(disable)
  for (__u32 i = 0; i < KP_XDP_MAX_PREFIX; i++) {
    if (i >= prefix_len) return 1;
    const __u8* p = payload + i;
    if ((const void*)(p + 1) > data_end) return 0;
    if (*p != cfg->prefix[i]) return 0;
  }
  return 1;
}

// Whether the TCP options [options, options + length) are well formed as the daemon's decoder
// requires (optionsWellFormed, src/packet/decode.ts): 0 ends the list, 1 is a one-byte no-op,
// every other option has a length of at least 2 that fits, and MSS (kind 2) is exactly 4 bytes.
// The walk goes byte by byte, skipping to where the next option begins: the offset into the
// packet is then the loop counter, so the verifier sees one state per byte and not one per path
// through the options (which exceeded its limit).
static __attribute__((noinline)) int tcp_options_valid(const __u8* options, __u32 length,
                                                       const void* data_end) {
  if (length > KP_XDP_MAX_TCP_OPTIONS) return 0;
  __u32 next = 0;  // where the next option begins
#pragma clang loop unroll(disable)
  for (__u32 at = 0; at < KP_XDP_MAX_TCP_OPTIONS; at++) {
    if (at >= length) return 1;
    if (at < next) continue;
    const __u8* p = options + at;
    if ((const void*)(p + 1) > data_end) return 0;
    __u8 kind = p[0];
    if (kind == 0) return 1;
    if (kind == 1) {
      next = at + 1;
      continue;
    }
    if (at + 1 >= length || (const void*)(p + 2) > data_end) return 0;
    __u32 option_length = p[1];
    if (option_length < 2 || at + option_length > length) return 0;
    if (kind == 2 && option_length != 4) return 0;
    next = at + option_length;
  }
  return 1;
}

// ---- the SYN-ACK, as buildSynAck (src/packet/build.ts) ---------------------------------------

static __always_inline __u32 add_words(const void* start, int length, __u32 sum) {
  const __u16* words = start;
#pragma unroll
  for (int i = 0; i < length / 2; i++) sum += bpf_ntohs(words[i]);
  return sum;
}

static __always_inline __u16 finish_checksum(__u32 sum) {
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return bpf_htons((__u16)~sum);
}

struct syn {
  __u8 saddr[16];
  __u8 daddr[16];
  __u16 sport;  // network order
  __u16 dport;
  __u32 seq;  // host order
};

// Rewrites the frame at ctx into the SYN-ACK answering `s`, MAC addresses swapped.
static __always_inline int answer_syn(struct xdp_md* ctx, const struct kp_xdp_config* cfg,
                                      const struct syn* s, int ipv6) {
  const int ip_length = ipv6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr);
  const int tcp_length = 24;
  const int frame_length = sizeof(struct ethhdr) + ip_length + tcp_length;
  const int delta = frame_length - (int)bpf_xdp_get_buff_len(ctx);
  if (delta != 0 && bpf_xdp_adjust_tail(ctx, delta) != 0) return -1;

  void* data = (void*)(long)ctx->data;
  void* data_end = (void*)(long)ctx->data_end;
  if (data + sizeof(struct ethhdr) + (ipv6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr)) + 24 > data_end)
    return -1;
  struct ethhdr* eth = data;
  __u8 mac[ETH_ALEN];
  __builtin_memcpy(mac, eth->h_source, ETH_ALEN);
  __builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
  __builtin_memcpy(eth->h_dest, mac, ETH_ALEN);

  struct flow f = {.saddr = s->saddr, .daddr = s->daddr, .sport = s->sport, .dport = s->dport};
  __u32 cookie = cookie_for(cfg, &f, ipv6, s->seq, current_slot(cfg));

  struct tcphdr* tcp;
  __u32 sum;
  if (ipv6) {
    struct ipv6hdr* ip6 = (void*)(eth + 1);
    __u32 first = bpf_htonl(0x60000000);
    __builtin_memcpy(ip6, &first, 4);
    ip6->payload_len = bpf_htons(tcp_length);
    ip6->nexthdr = IPPROTO_TCP;
    ip6->hop_limit = HOP_LIMIT;
    __builtin_memcpy(&ip6->saddr, s->daddr, 16);
    __builtin_memcpy(&ip6->daddr, s->saddr, 16);
    tcp = (void*)(ip6 + 1);
    sum = add_words(&ip6->saddr, 32, IPPROTO_TCP + tcp_length);
  } else {
    struct iphdr* ip = (void*)(eth + 1);
    ip->version = 4;
    ip->ihl = 5;
    ip->tos = 0;
    ip->tot_len = bpf_htons(sizeof(struct iphdr) + tcp_length);
    ip->id = 0;
    ip->frag_off = bpf_htons(0x4000);  // don't fragment
    ip->ttl = HOP_LIMIT;
    ip->protocol = IPPROTO_TCP;
    ip->check = 0;
    __builtin_memcpy(&ip->saddr, s->daddr, 4);
    __builtin_memcpy(&ip->daddr, s->saddr, 4);
    ip->check = finish_checksum(add_words(ip, sizeof(struct iphdr), 0));
    tcp = (void*)(ip + 1);
    sum = add_words(&ip->saddr, 8, IPPROTO_TCP + tcp_length);
  }
  __u16* words = (__u16*)tcp;
  words[0] = s->dport;
  words[1] = s->sport;
  tcp->seq = bpf_htonl(cookie);
  tcp->ack_seq = bpf_htonl(s->seq + 1);
  words[6] = bpf_htons((6 << 12) | TCP_FLAG_SYN | TCP_FLAG_ACK);  // data offset 6 words, flags
  tcp->window = bpf_htons(SYN_ACK_WINDOW);
  tcp->check = 0;
  tcp->urg_ptr = 0;
  __u8* option = (__u8*)(tcp + 1);
  option[0] = 2;  // MSS
  option[1] = 4;
  __u16 mss = bpf_htons(ipv6 ? ADVERTISED_MSS_V6 : ADVERTISED_MSS_V4);
  __builtin_memcpy(&option[2], &mss, 2);
  tcp->check = finish_checksum(add_words(tcp, tcp_length, sum));
  return 0;
}

// ---- the program -----------------------------------------------------------------------------

// One parsed step-1 segment: where its TCP header and payload are, and what the decisions need.
struct segment {
  struct tcphdr* tcp;
  const __u8* payload;
  __u32 payload_length;
  int ipv6;
  struct syn s;
};

static __always_inline int decide(struct xdp_md* ctx, const struct kp_xdp_config* cfg, struct segment* seg) {
  const struct tcphdr* tcp = seg->tcp;
  __u8 flags = ((const __u8*)tcp)[13];
  const void* data_end = (void*)(long)ctx->data_end;
  int syn = (flags & (TCP_FLAG_FIN | TCP_FLAG_SYN | TCP_FLAG_RST | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
  int data =
      (flags & (TCP_FLAG_SYN | TCP_FLAG_RST | TCP_FLAG_ACK)) == TCP_FLAG_ACK && seg->payload_length > 0;
  if (syn && (cfg->flags & KP_XDP_COOKIE)) {
    if (answer_syn(ctx, cfg, &seg->s, seg->ipv6) != 0) return count(KP_XDP_PASSED_OTHER, XDP_PASS);
    return count(KP_XDP_SYN_ANSWERED, XDP_TX);
  }
  if (syn) {
    // No handshake: a SYN is a knock only when it carries the request (TCP Fast Open).
    if (seg->payload_length == 0) return count(KP_XDP_SYN_DROPPED, XDP_DROP);
    if (!starts_with_prefix(cfg, seg->payload, seg->payload_length, data_end))
      return count(KP_XDP_BAD_PREFIX, XDP_DROP);
    return count(KP_XDP_PASSED_KNOCK, XDP_PASS);
  }
  // With step1_reply: reset every data segment gets the daemon's RST, whatever it holds.
  if (!data || (cfg->flags & KP_XDP_RESET)) return count(KP_XDP_PASSED_OTHER, XDP_PASS);
  if (!(cfg->flags & KP_XDP_COOKIE)) return count(KP_XDP_BAD_COOKIE, XDP_DROP);
  if (!starts_with_prefix(cfg, seg->payload, seg->payload_length, data_end))
    return count(KP_XDP_BAD_PREFIX, XDP_DROP);
  struct flow f = {
      .saddr = seg->s.saddr, .daddr = seg->s.daddr, .sport = seg->s.sport, .dport = seg->s.dport};
  if (!cookie_valid(cfg, &f, seg->ipv6, tcp)) return count(KP_XDP_BAD_COOKIE, XDP_DROP);
  return count(KP_XDP_PASSED_KNOCK, XDP_PASS);
}

// Fills the TCP part of `seg`; 0 when the segment is one the daemon's decoder accepts, -2 when
// its options are malformed, -1 when something else is (left to the kernel's rules).
static __always_inline int parse_tcp(struct segment* seg, void* tcp_start, __u32 segment_length,
                                     void* data_end) {
  struct tcphdr* tcp = tcp_start;
  if ((void*)(tcp + 1) > data_end || segment_length < sizeof(struct tcphdr)) return -1;
  __u32 header_length = tcp->doff * 4;
  if (header_length < sizeof(struct tcphdr) || header_length > segment_length) return -1;
  // The daemon refuses any segment whose options are malformed, without a reply: so does this.
  if (!tcp_options_valid((const __u8*)(tcp + 1), header_length - sizeof(struct tcphdr), data_end)) return -2;
  seg->tcp = tcp;
  seg->payload = (const __u8*)tcp + header_length;
  seg->payload_length = segment_length - header_length;
  seg->s.sport = tcp->source;
  seg->s.dport = tcp->dest;
  seg->s.seq = bpf_ntohl(tcp->seq);
  return 0;
}

static __always_inline int is_local(const __u8* address, int ipv6) {
  __u8 key[16] = {};
  if (ipv6) {
    __builtin_memcpy(key, address, 16);
  } else {
    key[10] = 0xff;
    key[11] = 0xff;
    __builtin_memcpy(&key[12], address, 4);
  }
  return bpf_map_lookup_elem(&local_addresses, key) != NULL;
}

static __always_inline int ipv4_header_valid(struct iphdr* ip) {
  return add_words(ip, sizeof(struct iphdr), 0) % 0xffff == 0;
}

SEC("xdp")
int knockport_step1(struct xdp_md* ctx) {
  __u32 zero = 0;
  const struct kp_xdp_config* cfg = bpf_map_lookup_elem(&config, &zero);
  if (!cfg || !(cfg->flags & KP_XDP_ON)) return XDP_PASS;
  void* data = (void*)(long)ctx->data;
  void* data_end = (void*)(long)ctx->data_end;
  struct ethhdr* eth = data;
  if ((void*)(eth + 1) > data_end) return XDP_PASS;
  struct segment seg = {};
  int parsed;
  __u16 port = bpf_htons(cfg->port);

  if (eth->h_proto == bpf_htons(ETH_P_IP)) {
    struct iphdr* ip = (void*)(eth + 1);
    // Options, fragments, other protocols: left to the kernel's rules.
    if ((void*)(ip + 1) > data_end || ip->version != 4 || ip->ihl != 5 || ip->protocol != IPPROTO_TCP)
      return XDP_PASS;
    if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)) return XDP_PASS;
    __u32 total = load_be16(&ip->tot_len);
    BOUND_OR_PASS(total, 0xffff);
    if (total < sizeof(struct iphdr) || (void*)ip + total > data_end) return XDP_PASS;
    struct tcphdr* tcp = (void*)(ip + 1);
    if ((void*)(tcp + 1) > data_end || tcp->dest != port) return XDP_PASS;
    // The stack drops a bad header checksum before any rule: so does this.
    if (!ipv4_header_valid(ip) || !is_local((const __u8*)&ip->daddr, 0)) return XDP_PASS;
    __builtin_memcpy(seg.s.saddr, &ip->saddr, 4);
    __builtin_memcpy(seg.s.daddr, &ip->daddr, 4);
    parsed = parse_tcp(&seg, tcp, total - sizeof(struct iphdr), data_end);
  } else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
    if (!(cfg->flags & KP_XDP_IPV6)) return XDP_PASS;
    struct ipv6hdr* ip6 = (void*)(eth + 1);
    // Extension headers: left to the kernel's rules (and the daemon's decoder).
    if ((void*)(ip6 + 1) > data_end || ip6->version != 6 || ip6->nexthdr != IPPROTO_TCP) return XDP_PASS;
    __u32 length = load_be16(&ip6->payload_len);
    BOUND_OR_PASS(length, 0xffff);
    if (length == 0 || (void*)(ip6 + 1) + length > data_end) return XDP_PASS;
    struct tcphdr* tcp = (void*)(ip6 + 1);
    if ((void*)(tcp + 1) > data_end || tcp->dest != port) return XDP_PASS;
    if (!is_local((const __u8*)&ip6->daddr, 1)) return XDP_PASS;
    __builtin_memcpy(seg.s.saddr, &ip6->saddr, 16);
    __builtin_memcpy(seg.s.daddr, &ip6->daddr, 16);
    seg.ipv6 = 1;
    parsed = parse_tcp(&seg, tcp, length, data_end);
  } else {
    return XDP_PASS;  // VLAN tags and everything else
  }
  if (parsed == -2) return count(KP_XDP_BAD_OPTIONS, XDP_DROP);
  if (parsed != 0) return count(KP_XDP_PASSED_OTHER, XDP_PASS);
  return decide(ctx, cfg, &seg);
}

// No GPL-only helper is called, so the project's own licence is declared.
char LICENSE[] SEC("license") = "CC0-1.0";

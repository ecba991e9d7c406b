/*
 * The bench's flood sender: sends prebuilt Ethernet frames out of one interface, round after
 * round, as fast as the kernel takes them (or at a given rate), for at most a given time.
 *
 *   flood-sender IFNAME FRAMES_FILE MAX_SECONDS [RATE_PPS]
 *
 * FRAMES_FILE: frames one after another, each a 16-bit little-endian length then the frame.
 * Ends on SIGINT/SIGTERM or after MAX_SECONDS; prints one JSON line with what it handed to the
 * kernel (the bench counts what was sent from the interface's own counters, not from this).
 *
 * A raw AF_PACKET socket with PACKET_QDISC_BYPASS, frames handed over by sendmmsg() in
 * batches. A frame sent into a veth stays charged to its socket's send buffer until the
 * receiving namespace frees it (the veth does not orphan it): while the gateway holds it (in a
 * receive backlog on another core, in an NFQUEUE queue until the daemon's verdict, or turned
 * into an XDP_TX reply that crosses back to the client), the sender cannot reuse that room. A
 * real flood's packets are not held back by what the target does with them, so the buffer is
 * set (SO_SNDBUFFORCE, which needs CAP_NET_ADMIN only) far above what the gateway's queues can
 * hold, and the gateway's own limits (full queues, backlog overflow) drop what it cannot take.
 * Why not trafgen: on that same full buffer its non-blocking ring flush gets EAGAIN and it ends
 * ("Flushing TX_RING failed"), unless it may raise net.core.wmem_default, which a container
 * does not allow. Here the socket blocks until room comes back (bounded by SO_SNDTIMEO so that
 * the time limit holds).
 *
 * Built on demand by the bench with the system's C compiler (bench/lib/flood.js).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
/* Above what the gateway's queues hold: NFQUEUE queues, NFLOG buffers, receive backlogs. */
#define SEND_BUFFER (256 << 20)

static volatile sig_atomic_t stopping;

static void on_signal(int sig) {
  (void)sig;
  stopping = 1;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char* what) {
  fprintf(stderr, "flood-sender: %s: %s\n", what, strerror(errno));
  exit(1);
}

struct frames {
  struct iovec* iov;
  size_t count;
};

static struct frames read_frames(const char* path) {
  FILE* f = fopen(path, "rb");
  if (!f) die(path);
  if (fseek(f, 0, SEEK_END) != 0) die(path);
  long size = ftell(f);
  rewind(f);
  uint8_t* data = malloc(size > 0 ? (size_t)size : 1);
  if (!data || fread(data, 1, (size_t)size, f) != (size_t)size) die(path);
  fclose(f);
  size_t count = 0;
  for (long at = 0; at + 2 <= size; count++) at += 2 + (data[at] | data[at + 1] << 8);
  struct frames out = {calloc(count ? count : 1, sizeof(struct iovec)), count};
  if (!out.iov) die("memory");
  long at = 0;
  for (size_t i = 0; i < count; i++) {
    size_t len = data[at] | data[at + 1] << 8;
    if (at + 2 + (long)len > size) {
      fprintf(stderr, "flood-sender: %s: truncated frame %zu\n", path, i);
      exit(1);
    }
    out.iov[i].iov_base = data + at + 2;
    out.iov[i].iov_len = len;
    at += 2 + (long)len;
  }
  if (count == 0) {
    fprintf(stderr, "flood-sender: %s: no frames\n", path);
    exit(1);
  }
  return out;
}

static int open_socket(const char* ifname) {
  int fd = socket(AF_PACKET, SOCK_RAW, 0);
  if (fd < 0) die("socket(AF_PACKET)");
  int one = 1;
  // Not fatal: without it frames go through the interface's queueing discipline (a veth has none).
  setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
  int buffer = SEND_BUFFER;
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &buffer, sizeof buffer) != 0) die("SO_SNDBUFFORCE");
  struct timeval timeout = {0, 100000};
  if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout) != 0) die("SO_SNDTIMEO");
  struct sockaddr_ll addr = {
      .sll_family = AF_PACKET, .sll_protocol = 0, .sll_ifindex = (int)if_nametoindex(ifname)};
  if (addr.sll_ifindex == 0) die(ifname);
  if (bind(fd, (struct sockaddr*)&addr, sizeof addr) != 0) die("bind");
  return fd;
}

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: flood-sender IFNAME FRAMES_FILE MAX_SECONDS [RATE_PPS]\n");
    return 2;
  }
  struct frames frames = read_frames(argv[2]);
  double max_seconds = atof(argv[3]);
  double rate = argc > 4 ? atof(argv[4]) : 0;
  int fd = open_socket(argv[1]);

  struct sigaction sa = {.sa_handler = on_signal};  // no SA_RESTART: a blocked send returns
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  // Rate-limited floods send small batches so that a burst lasts at most ~0.5 ms.
  unsigned batch = BATCH;
  if (rate > 0 && rate / 2000 < BATCH) batch = rate / 2000 < 1 ? 1 : (unsigned)(rate / 2000);

  struct mmsghdr msgs[BATCH];
  memset(msgs, 0, sizeof msgs);
  uint64_t sent = 0, would_block = 0, no_buffers = 0;
  size_t next = 0;
  const double started = now_seconds();
  double elapsed = 0;
  while (!stopping && (elapsed = now_seconds() - started) < max_seconds) {
    if (rate > 0) {
      double due = started + sent / rate;
      double ahead = due - now_seconds();
      if (ahead > 0) {
        struct timespec pause = {(time_t)ahead, (long)((ahead - (time_t)ahead) * 1e9)};
        nanosleep(&pause, NULL);
        continue;
      }
    }
    for (unsigned i = 0; i < batch; i++) {
      msgs[i].msg_hdr.msg_iov = &frames.iov[(next + i) % frames.count];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int n = sendmmsg(fd, msgs, batch, 0);
    if (n > 0) {
      sent += (unsigned)n;
      next = (next + (unsigned)n) % frames.count;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
      would_block++;
    } else if (errno == ENOBUFS || errno == ENETDOWN) {
      // The interface refused the frame (its queue stopped): give the receiver a moment.
      no_buffers++;
      sched_yield();
    } else {
      die("sendmmsg");
    }
  }
  elapsed = now_seconds() - started;
  printf("{\"sent\":%llu,\"seconds\":%.3f,\"wouldBlock\":%llu,\"noBuffers\":%llu,\"frames\":%zu}\n",
         (unsigned long long)sent, elapsed, (unsigned long long)would_block, (unsigned long long)no_buffers,
         frames.count);
  return 0;
}

// One NEWTABLE message through a given netlink socket, for what libnftables 1.0.6 cannot say:
// the table flags `owner` and `persist` (kernel 6.9+). See nft_context.cc for why the socket
// matters: the kernel binds an owned table to the socket that created or adopted it.
#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <poll.h>

#include <cstring>

#include "common.h"

namespace kp {
namespace {

// How long the kernel may take to answer one small batch.
constexpr int kAnswerTimeoutMs = 5000;
// Messages read while waiting for the answer before giving up (only ours are expected).
constexpr int kMaxReads = 64;
// Sequence numbers of these batches: far from libnftables' own (it starts at the time of day).
constexpr uint32_t kFirstSeq = 0x4b500000;

nlmsghdr* PutMessage(char* at, uint16_t type, uint16_t flags, uint8_t family, uint16_t resId, uint32_t seq) {
  nlmsghdr* header = mnl_nlmsg_put_header(at);
  header->nlmsg_type = type;
  header->nlmsg_flags = NLM_F_REQUEST | flags;
  header->nlmsg_seq = seq;
  auto* nf = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(header, sizeof(nfgenmsg)));
  nf->nfgen_family = family;
  nf->version = NFNETLINK_V0;
  nf->res_id = htons(resId);
  return header;
}

// Reads until the kernel answered a message of this batch (seq in [first, last]): its errno, 0 for the ack.
int AwaitAnswer(mnl_socket* socket, uint32_t first, uint32_t last) {
  std::vector<char> buffer(MNL_SOCKET_BUFFER_SIZE);
  for (int reads = 0; reads < kMaxReads; ++reads) {
    pollfd watch{mnl_socket_get_fd(socket), POLLIN, 0};
    const int ready = poll(&watch, 1, kAnswerTimeoutMs);
    if (ready == 0) return ETIMEDOUT;
    if (ready < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    int length = static_cast<int>(mnl_socket_recvfrom(socket, buffer.data(), buffer.size()));
    if (length < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return errno;
    }
    for (auto* message = reinterpret_cast<const nlmsghdr*>(buffer.data()); mnl_nlmsg_ok(message, length);
         message = mnl_nlmsg_next(message, &length)) {
      if (message->nlmsg_type != NLMSG_ERROR || message->nlmsg_seq < first || message->nlmsg_seq > last)
        continue;
      const auto* answer = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(message));
      return -answer->error;
    }
  }
  return EPROTO;
}

}  // namespace

int SendNewTable(mnl_socket* socket, uint8_t family, const std::string& name, uint32_t flags, bool commit) {
  if (name.empty() || name.size() >= NFT_TABLE_MAXNAMELEN) return EINVAL;
  char batch[512];
  size_t length = 0;
  uint32_t seq = kFirstSeq;
  const uint32_t first = seq;
  length += PutMessage(batch, NFNL_MSG_BATCH_BEGIN, 0, AF_UNSPEC, NFNL_SUBSYS_NFTABLES, seq++)->nlmsg_len;
  // NLM_F_ACK: an answer even on success. NLM_F_CREATE without NLM_F_EXCL: creates the table, or
  // updates the flags of an existing one (which is how an orphaned table is adopted).
  nlmsghdr* table = PutMessage(batch + length, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE,
                               NLM_F_CREATE | NLM_F_ACK, family, 0, seq++);
  mnl_attr_put_strz(table, NFTA_TABLE_NAME, name.c_str());
  mnl_attr_put_u32(table, NFTA_TABLE_FLAGS, htonl(flags));
  length += table->nlmsg_len;
  // Without the end message the kernel validates the batch, answers and aborts it.
  if (commit)
    length +=
        PutMessage(batch + length, NFNL_MSG_BATCH_END, 0, AF_UNSPEC, NFNL_SUBSYS_NFTABLES, seq++)->nlmsg_len;
  if (mnl_socket_sendto(socket, batch, length) < 0) return errno;
  return AwaitAnswer(socket, first, seq - 1);
}

}  // namespace kp

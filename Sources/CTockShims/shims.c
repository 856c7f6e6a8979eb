#define _GNU_SOURCE
#include <fcntl.h>
#include <unistd.h>
#include "CTockShims.h"
#include <errno.h>
#include <sys/timex.h>
#include <netinet/in.h>

#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <linux/errqueue.h>
#include <linux/net_tstamp.h>

_Static_assert(sizeof(tock_mmsghdr) == sizeof(struct mmsghdr), "mmsghdr layout");
_Static_assert(sizeof(tock_in6_pktinfo) == sizeof(struct in6_pktinfo), "in6_pktinfo layout");
_Static_assert(sizeof(tock_sock_extended_err) == sizeof(struct sock_extended_err), "sock_extended_err layout");
_Static_assert(offsetof(tock_sock_extended_err, ee_data) == offsetof(struct sock_extended_err, ee_data), "sock_extended_err layout");
_Static_assert(sizeof(tock_scm_timestamping) == sizeof(struct scm_timestamping), "scm_timestamping layout");

int tock_recvmmsg(int fd, tock_mmsghdr *msgs, unsigned int count, int flags) {
    return recvmmsg(fd, (struct mmsghdr *)msgs, count, flags, NULL);
}

int tock_sendmmsg(int fd, tock_mmsghdr *msgs, unsigned int count, int flags) {
    return sendmmsg(fd, (struct mmsghdr *)msgs, count, flags);
}

void tock_set_thread_name(const char *name) {
    char buffer[16];
    strncpy(buffer, name, sizeof buffer - 1);
    buffer[sizeof buffer - 1] = 0;
    pthread_setname_np(pthread_self(), buffer);
}

tock_kernel_clock tock_read_kernel_clock(void) {
    struct timex tx = {0};
    tock_kernel_clock out = {0};
    out.state = adjtimex(&tx);
    if (out.state == -1) {
        out.error_number = errno;
        return out;
    }
    out.status = tx.status;
    out.maxerror = tx.maxerror;
    out.esterror = tx.esterror;
    return out;
}

int tock_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

struct cmsghdr *tock_cmsg_firsthdr(struct msghdr *msg) { return CMSG_FIRSTHDR(msg); }
struct cmsghdr *tock_cmsg_nxthdr(struct msghdr *msg, struct cmsghdr *cmsg) { return CMSG_NXTHDR(msg, cmsg); }
unsigned char *tock_cmsg_data(struct cmsghdr *cmsg) { return CMSG_DATA(cmsg); }
size_t tock_cmsg_space(size_t len) { return CMSG_SPACE(len); }
size_t tock_cmsg_len(size_t len) { return CMSG_LEN(len); }

const int tock_SO_TIMESTAMPNS = SO_TIMESTAMPNS;
const int tock_SCM_TIMESTAMPNS = SCM_TIMESTAMPNS;
const int tock_IP_PKTINFO = IP_PKTINFO;
const int tock_IPV6_RECVPKTINFO = IPV6_RECVPKTINFO;
const int tock_IPV6_PKTINFO = IPV6_PKTINFO;
const int tock_SO_REUSEPORT = SO_REUSEPORT;
const int tock_IPV6_V6ONLY = IPV6_V6ONLY;
const int tock_MSG_WAITFORONE = MSG_WAITFORONE;
const int tock_MSG_TRUNC = MSG_TRUNC;
const int tock_MSG_CTRUNC = MSG_CTRUNC;
const int tock_SO_TIMESTAMPING = SO_TIMESTAMPING;
const int tock_SCM_TIMESTAMPING = SCM_TIMESTAMPING;
const int tock_TX_TIMESTAMPING_FLAGS = SOF_TIMESTAMPING_SOFTWARE | SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_OPT_ID | SOF_TIMESTAMPING_OPT_TSONLY;
const int tock_TX_TIMESTAMPING_FLAGS_NO_ID = SOF_TIMESTAMPING_SOFTWARE | SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_OPT_TSONLY;
const uint32_t tock_SOF_TIMESTAMPING_TX_SOFTWARE = SOF_TIMESTAMPING_TX_SOFTWARE;
const int tock_MSG_ERRQUEUE = MSG_ERRQUEUE;
const int tock_MSG_DONTWAIT = MSG_DONTWAIT;
const int tock_SOL_IP = SOL_IP;
const int tock_SOL_IPV6 = SOL_IPV6;
const int tock_IP_RECVERR = IP_RECVERR;
const int tock_IPV6_RECVERR = IPV6_RECVERR;
const int tock_SO_EE_ORIGIN_TIMESTAMPING = SO_EE_ORIGIN_TIMESTAMPING;
const int tock_ENOMSG = ENOMSG;

int tock_affinity_cpu_count(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return -1;
    return CPU_COUNT(&set);
}

// Thin C shims for Linux socket and clock interfaces that Swift cannot import directly:
// GNU-only functions (recvmmsg, sendmmsg, adjtimex) and the CMSG_* macros.
#ifndef CTOCKSHIMS_H
#define CTOCKSHIMS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/// `struct mmsghdr`, which glibc declares only under _GNU_SOURCE; same layout.
typedef struct tock_mmsghdr {
    struct msghdr msg_hdr;
    unsigned int msg_len;
} tock_mmsghdr;

/// `struct in6_pktinfo` (RFC 3542), likewise hidden behind _GNU_SOURCE; same layout.
typedef struct tock_in6_pktinfo {
    struct in6_addr ipi6_addr;
    unsigned int ipi6_ifindex;
} tock_in6_pktinfo;

/// recvmmsg(2), with the timeout always NULL.
int tock_recvmmsg(int fd, tock_mmsghdr *msgs, unsigned int count, int flags);
/// sendmmsg(2).
int tock_sendmmsg(int fd, tock_mmsghdr *msgs, unsigned int count, int flags);
/// pipe2(2) with O_CLOEXEC: both ends close-on-exec from the start, so a child another thread
/// spawns at the same moment cannot inherit them.
int tock_pipe_cloexec(int fds[2]);
/// Names the calling thread (pthread_setname_np); the name is cut to 15 bytes.
void tock_set_thread_name(const char *name);
/// The number of CPUs in the calling thread's affinity mask (sched_getaffinity(2), GNU-only),
/// or -1 if it cannot be read.
int tock_affinity_cpu_count(void);

/// The fields of adjtimex(2) (mode 0: read only) that describe synchronisation.
typedef struct {
    int state;            // return value: TIME_OK ... TIME_ERROR, or -1
    int status;           // STA_* bits
    long maxerror;        // microseconds
    long esterror;        // microseconds
    int error_number;     // errno when state == -1
} tock_kernel_clock;

/// Reads the kernel clock's synchronisation state without changing it.
tock_kernel_clock tock_read_kernel_clock(void);

/// Walks control messages: the first header, or NULL.
struct cmsghdr *tock_cmsg_firsthdr(struct msghdr *msg);
/// The next header after `cmsg`, or NULL.
struct cmsghdr *tock_cmsg_nxthdr(struct msghdr *msg, struct cmsghdr *cmsg);
/// The payload of a control message.
unsigned char *tock_cmsg_data(struct cmsghdr *cmsg);
/// CMSG_SPACE(len).
size_t tock_cmsg_space(size_t len);
/// CMSG_LEN(len).
size_t tock_cmsg_len(size_t len);

/// Socket option and control-message constants, spelled once for Swift.
extern const int tock_SO_TIMESTAMPNS;
extern const int tock_SCM_TIMESTAMPNS;
extern const int tock_IP_PKTINFO;
extern const int tock_IPV6_RECVPKTINFO;
extern const int tock_IPV6_PKTINFO;
extern const int tock_SO_REUSEPORT;
extern const int tock_IPV6_V6ONLY;
extern const int tock_MSG_WAITFORONE;
extern const int tock_MSG_TRUNC;
extern const int tock_MSG_CTRUNC;

#ifdef __cplusplus
}
#endif
#endif

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

/// Kernel transmit timestamps (Documentation/networking/timestamping.rst): the option, its
/// control message, the flags tock sets, and how a timestamp comes back on the error queue.
extern const int tock_SO_TIMESTAMPING;
extern const int tock_SCM_TIMESTAMPING;
/// SOF_TIMESTAMPING_SOFTWARE | SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_OPT_ID |
/// SOF_TIMESTAMPING_OPT_TSONLY: report software timestamps (receive timestamps in every
/// datagram's SCM_TIMESTAMPING, ts[0]; transmit timestamps tagged with the socket's counter of
/// timestamped datagrams, without the datagram's bytes). No datagram is timestamped on its way
/// out unless its sendmsg asks with a control message (SCM_TIMESTAMPING carrying
/// `tock_SOF_TIMESTAMPING_TX_SOFTWARE`, §1.3.3).
extern const int tock_TX_TIMESTAMPING_FLAGS;
/// The same without SOF_TIMESTAMPING_OPT_ID: setting it and then the flags again resets the
/// socket's counter to 0.
extern const int tock_TX_TIMESTAMPING_FLAGS_NO_ID;
/// SOF_TIMESTAMPING_TX_SOFTWARE: the per-datagram request for a software transmit timestamp.
extern const uint32_t tock_SOF_TIMESTAMPING_TX_SOFTWARE;
extern const int tock_MSG_ERRQUEUE;
extern const int tock_MSG_DONTWAIT;
extern const int tock_SOL_IP;
extern const int tock_SOL_IPV6;
extern const int tock_IP_RECVERR;
extern const int tock_IPV6_RECVERR;
extern const int tock_SO_EE_ORIGIN_TIMESTAMPING;
/// ENOMSG: the ee_errno of a timestamp on the error queue.
extern const int tock_ENOMSG;

/// `struct sock_extended_err` (<linux/errqueue.h>), same layout; for a timestamp, ee_origin is
/// SO_EE_ORIGIN_TIMESTAMPING and ee_data the datagram's SOF_TIMESTAMPING_OPT_ID counter.
typedef struct tock_sock_extended_err {
    uint32_t ee_errno;
    uint8_t ee_origin;
    uint8_t ee_type;
    uint8_t ee_code;
    uint8_t ee_pad;
    uint32_t ee_info;
    uint32_t ee_data;
} tock_sock_extended_err;

/// `struct scm_timestamping` (<linux/errqueue.h>): ts[0] is the software timestamp.
typedef struct tock_scm_timestamping {
    struct timespec ts[3];
} tock_scm_timestamping;

/// SCM_TIMESTAMPING_PKTINFO: with a hardware receive timestamp, the interface that took it and
/// the frame's length at layer 2 (`struct scm_ts_pktinfo`).
extern const int tock_SCM_TIMESTAMPING_PKTINFO;
typedef struct tock_scm_ts_pktinfo {
    uint32_t if_index;
    uint32_t pkt_length;
    uint32_t reserved[2];
} tock_scm_ts_pktinfo;
/// The socket flags that add raw hardware timestamps to the software ones:
/// SOF_TIMESTAMPING_RAW_HARDWARE | RX_HARDWARE | OPT_PKTINFO | OPT_TX_SWHW. No TX flag: a
/// socket-level TX flag would timestamp (and number, with OPT_ID) every datagram sent without a
/// control message of its own; transmit timestamps are asked per datagram. OPT_TX_SWHW: the
/// software transmit report is made even while the card's is pending (without it the kernel
/// skips it, and a card that drops its timestamp would leave the datagram with none).
extern const int tock_HW_TIMESTAMPING_FLAGS;
/// SOF_TIMESTAMPING_TX_HARDWARE: the per-datagram request for a hardware transmit timestamp.
extern const uint32_t tock_SOF_TIMESTAMPING_TX_HARDWARE;

/// What ETHTOOL_GET_TS_INFO says about an interface's timestamping, decoded into flags.
typedef struct tock_interface_timestamping {
    int phc_index;            // -1: no hardware clock
    int raw_hardware;         // SOF_TIMESTAMPING_RAW_HARDWARE reported
    int receive_hardware;     // SOF_TIMESTAMPING_RX_HARDWARE
    int transmit_hardware;    // SOF_TIMESTAMPING_TX_HARDWARE
    int transmit_on;          // HWTSTAMP_TX_ON among tx_types
    int filter_all;           // HWTSTAMP_FILTER_ALL among rx_filters
    int filter_ntp;           // HWTSTAMP_FILTER_NTP_ALL among rx_filters
    int link_speed_mbps;      // ETHTOOL_GSET's speed, 0 when unknown
} tock_interface_timestamping;

/// ETHTOOL_GET_TS_INFO (and ETHTOOL_GSET for the link speed) on interface `name`: 0, or -errno.
int tock_interface_timestamping_info(const char *name, tock_interface_timestamping *out);
/// SIOCGHWTSTAMP: the interface's current hardware timestamping (tx_type, rx_filter): 0, or -errno.
int tock_get_hardware_timestamping(const char *name, int *tx_type, int *rx_filter);
/// SIOCSHWTSTAMP with `tx_type` and `rx_filter`; `rx_filter` receives what the driver chose
/// (it may widen the filter): 0, or -errno.
int tock_set_hardware_timestamping(const char *name, int tx_type, int *rx_filter);
extern const int tock_HWTSTAMP_TX_OFF;
extern const int tock_HWTSTAMP_TX_ON;
extern const int tock_HWTSTAMP_FILTER_NONE;
extern const int tock_HWTSTAMP_FILTER_ALL;
extern const int tock_HWTSTAMP_FILTER_NTP_ALL;

/// One reading of a PTP hardware clock between two system clock readings, nanoseconds since
/// the epoch of each clock.
typedef struct tock_phc_reading {
    int64_t system_before;
    int64_t hardware;
    int64_t system_after;
} tock_phc_reading;

/// Up to `count` (at most 25) readings of the PHC open as `fd` (PTP_SYS_OFFSET_EXTENDED, or
/// PTP_SYS_OFFSET on drivers without it): the number read, or -errno.
int tock_phc_readings(int fd, tock_phc_reading *out, int count);

#ifdef __cplusplus
}
#endif
#endif

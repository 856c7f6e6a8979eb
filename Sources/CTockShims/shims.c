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
#include <linux/ethtool.h>
#include <linux/ptp_clock.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>

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

const int tock_SCM_TIMESTAMPING_PKTINFO = SCM_TIMESTAMPING_PKTINFO;
const int tock_HW_TIMESTAMPING_FLAGS = SOF_TIMESTAMPING_RAW_HARDWARE | SOF_TIMESTAMPING_RX_HARDWARE | SOF_TIMESTAMPING_OPT_PKTINFO | SOF_TIMESTAMPING_OPT_TX_SWHW;
const uint32_t tock_SOF_TIMESTAMPING_TX_HARDWARE = SOF_TIMESTAMPING_TX_HARDWARE;
const int tock_HWTSTAMP_TX_OFF = HWTSTAMP_TX_OFF;
const int tock_HWTSTAMP_TX_ON = HWTSTAMP_TX_ON;
const int tock_HWTSTAMP_FILTER_NONE = HWTSTAMP_FILTER_NONE;
const int tock_HWTSTAMP_FILTER_ALL = HWTSTAMP_FILTER_ALL;
const int tock_HWTSTAMP_FILTER_NTP_ALL = HWTSTAMP_FILTER_NTP_ALL;

static int interface_request(const char *name, struct ifreq *req) {
    if (strlen(name) >= IFNAMSIZ) return -ENODEV;
    memset(req, 0, sizeof(*req));
    strncpy(req->ifr_name, name, IFNAMSIZ - 1);
    return 0;
}

static int interface_ioctl(const char *name, unsigned long request, void *data) {
    struct ifreq req;
    int rc = interface_request(name, &req);
    if (rc != 0) return rc;
    req.ifr_data = data;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    rc = ioctl(fd, request, &req) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

int tock_interface_timestamping_info(const char *name, tock_interface_timestamping *out) {
    memset(out, 0, sizeof(*out));
    out->phc_index = -1;
    if (if_nametoindex(name) == 0) return -ENODEV;
    struct ethtool_ts_info info;
    memset(&info, 0, sizeof(info));
    info.cmd = ETHTOOL_GET_TS_INFO;
    int rc = interface_ioctl(name, SIOCETHTOOL, &info);
    if (rc != 0) return rc;
    out->phc_index = info.phc_index;
    out->raw_hardware = (info.so_timestamping & SOF_TIMESTAMPING_RAW_HARDWARE) != 0;
    out->receive_hardware = (info.so_timestamping & SOF_TIMESTAMPING_RX_HARDWARE) != 0;
    out->transmit_hardware = (info.so_timestamping & SOF_TIMESTAMPING_TX_HARDWARE) != 0;
    out->transmit_on = (info.tx_types & (1u << HWTSTAMP_TX_ON)) != 0;
    out->filter_all = (info.rx_filters & (1u << HWTSTAMP_FILTER_ALL)) != 0;
    out->filter_ntp = (info.rx_filters & (1u << HWTSTAMP_FILTER_NTP_ALL)) != 0;
    struct ethtool_cmd link;
    memset(&link, 0, sizeof(link));
    link.cmd = ETHTOOL_GSET;
    if (interface_ioctl(name, SIOCETHTOOL, &link) == 0) {
        uint32_t speed = ethtool_cmd_speed(&link);
        out->link_speed_mbps = (speed == 0 || speed == (uint32_t)SPEED_UNKNOWN) ? 0 : (int)speed;
    }
    return 0;
}

int tock_get_hardware_timestamping(const char *name, int *tx_type, int *rx_filter) {
    struct hwtstamp_config config;
    memset(&config, 0, sizeof(config));
    int rc = interface_ioctl(name, SIOCGHWTSTAMP, &config);
    if (rc != 0) return rc;
    *tx_type = config.tx_type;
    *rx_filter = config.rx_filter;
    return 0;
}

int tock_set_hardware_timestamping(const char *name, int tx_type, int *rx_filter) {
    struct hwtstamp_config config;
    memset(&config, 0, sizeof(config));
    config.tx_type = tx_type;
    config.rx_filter = *rx_filter;
    int rc = interface_ioctl(name, SIOCSHWTSTAMP, &config);
    if (rc != 0) return rc;
    *rx_filter = config.rx_filter;
    return 0;
}

static int64_t clock_time_ns(const struct ptp_clock_time *t) {
    return (int64_t)t->sec * 1000000000 + t->nsec;
}

int tock_phc_readings(int fd, tock_phc_reading *out, int count) {
    if (count < 1) return -EINVAL;
    if (count > PTP_MAX_SAMPLES) count = PTP_MAX_SAMPLES;
    struct ptp_sys_offset_extended extended;
    memset(&extended, 0, sizeof(extended));
    extended.n_samples = count;
    if (ioctl(fd, PTP_SYS_OFFSET_EXTENDED, &extended) == 0) {
        for (int i = 0; i < count; i++) {
            out[i].system_before = clock_time_ns(&extended.ts[i][0]);
            out[i].hardware = clock_time_ns(&extended.ts[i][1]);
            out[i].system_after = clock_time_ns(&extended.ts[i][2]);
        }
        return count;
    }
    if (errno != EOPNOTSUPP && errno != ENOTTY) return -errno;
    // Older drivers: system and PHC readings alternate, system first and last.
    struct ptp_sys_offset plain;
    memset(&plain, 0, sizeof(plain));
    plain.n_samples = count;
    if (ioctl(fd, PTP_SYS_OFFSET, &plain) != 0) return -errno;
    for (int i = 0; i < count; i++) {
        out[i].system_before = clock_time_ns(&plain.ts[2 * i]);
        out[i].hardware = clock_time_ns(&plain.ts[2 * i + 1]);
        out[i].system_after = clock_time_ns(&plain.ts[2 * i + 2]);
    }
    return count;
}

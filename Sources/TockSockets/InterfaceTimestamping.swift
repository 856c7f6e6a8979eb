import CTockShims
import Glibc
import TockProtocol

/// Hardware timestamping on a network interface, through the kernel's interfaces for it
/// (Documentation/networking/timestamping.rst §3): what the interface can do
/// (ETHTOOL_GET_TS_INFO), turning it on and back (SIOCSHWTSTAMP / SIOCGHWTSTAMP, which need
/// CAP_NET_ADMIN), and the interface's PTP hardware clock (`HardwareClockDevice`). The
/// decisions are `HardwareTimestampingSupport.plan`'s.
package enum InterfaceTimestamping {
    /// The interface's index, or nil when there is no such interface.
    package static func index(of name: String) -> UInt32? {
        let index = if_nametoindex(name)
        return index == 0 ? nil : index
    }

    /// Every interface's name (if_nameindex), for `*`.
    package static func allInterfaces() -> [String] {
        guard let list = if_nameindex() else { return [] }
        defer { if_freenameindex(list) }
        var names: [String] = []
        var entry = list
        while entry.pointee.if_index != 0, let name = entry.pointee.if_name {
            names.append(String(cString: name))
            entry += 1
        }
        return names
    }

    /// What interface `name` can do.
    package static func support(of name: String) -> Result<HardwareTimestampingSupport, HardwareTimestampingUnavailable> {
        var info = tock_interface_timestamping()
        let rc = tock_interface_timestamping_info(name, &info)
        if rc == -ENODEV { return .failure(.noSuchInterface) }
        if rc == -EOPNOTSUPP {
            // A driver without ethtool timestamping support: software only.
            return .failure(.noHardwareClock)
        }
        if rc != 0 { return .failure(.driverRefused(-rc)) }
        return .success(HardwareTimestampingSupport(
            hardwareClock: info.phc_index >= 0 ? Int(info.phc_index) : nil,
            rawHardware: info.raw_hardware != 0, receiveHardware: info.receive_hardware != 0,
            transmitHardware: info.transmit_hardware != 0, transmitOn: info.transmit_on != 0,
            filterAll: info.filter_all != 0, filterNTP: info.filter_ntp != 0,
            linkSpeedMbps: info.link_speed_mbps > 0 ? Int(info.link_speed_mbps) : nil
        ))
    }

    /// The interface's timestamping as it was before `enable`, to put back on stop.
    package struct Previous: Sendable, Equatable {
        package var transmitType: Int32
        package var receiveFilter: Int32
    }

    /// Turns the card's timestamps on as `plan` says: transmit on, and the plan's receive
    /// filter, unless the card already filters for something (ptp4l's PTP filter, say) and the
    /// plan needs no receive timestamps, or already takes every packet. Returns what was set
    /// before, to `restore` on stop (other software may rely on it), and the plan as the driver
    /// put it in force (it may widen the receive filter asked for).
    package static func enable(_ name: String, plan: HardwareTimestampingPlan) -> Result<(previous: Previous, plan: HardwareTimestampingPlan), HardwareTimestampingUnavailable> {
        var previousType: Int32 = tock_HWTSTAMP_TX_OFF
        var previousFilter: Int32 = tock_HWTSTAMP_FILTER_NONE
        // Old drivers lack SIOCGHWTSTAMP: then timestamping was off (no one else can set it
        // without also being unable to read it back).
        _ = tock_get_hardware_timestamping(name, &previousType, &previousFilter)
        var filter: Int32 = switch plan.receiveFilter {
        case .all: tock_HWTSTAMP_FILTER_ALL
        case .ntp: tock_HWTSTAMP_FILTER_NTP_ALL
        case .none: tock_HWTSTAMP_FILTER_NONE
        }
        if previousFilter == tock_HWTSTAMP_FILTER_ALL || (plan.receiveFilter == .none && previousFilter != tock_HWTSTAMP_FILTER_NONE) {
            filter = previousFilter
        }
        let rc = tock_set_hardware_timestamping(name, tock_HWTSTAMP_TX_ON, &filter)
        switch rc {
        case 0:
            var used = plan
            if filter == tock_HWTSTAMP_FILTER_ALL {
                used.receiveFilter = .all
            } else if filter == tock_HWTSTAMP_FILTER_NTP_ALL {
                used.receiveFilter = .ntp
            } else if filter == tock_HWTSTAMP_FILTER_NONE {
                used.receiveFilter = .none
            }
            return .success((Previous(transmitType: previousType, receiveFilter: previousFilter), used))
        case -EPERM, -EACCES: return .failure(.permissionDenied)
        case -ENODEV: return .failure(.noSuchInterface)
        default: return .failure(.driverRefused(-rc))
        }
    }

    /// Puts back what `enable` found: 0, or the errno (EPERM once tockd has dropped
    /// CAP_NET_ADMIN with `--user`).
    package static func restore(_ name: String, _ previous: Previous) -> Int32 {
        var filter = previous.receiveFilter
        return -tock_set_hardware_timestamping(name, previous.transmitType, &filter)
    }

    /// Whether `name` is a network device of its own (it has /sys/class/net/NAME/device), not a
    /// VLAN, bond, bridge or other stack on top of one, whose timestamping settings are the
    /// device's underneath.
    package static func isPhysical(_ name: String) -> Bool {
        access("/sys/class/net/\(name)/device", F_OK) == 0
    }
}

/// A PTP hardware clock (/dev/ptpN), read against the system clock. Off the packet path: the
/// tracker reads it once a second.
package final class HardwareClockDevice: Sendable {
    /// The clock's number N.
    package let index: Int
    private let fd: Int32

    /// Opens /dev/ptp`index` for reading.
    package init(index: Int) throws(HardwareTimestampingUnavailable) {
        self.index = index
        let fd = open("/dev/ptp\(index)", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .clockUnreadable(errno) }
        self.fd = fd
    }

    deinit {
        close(fd)
    }

    /// A burst of `count` readings (PTP_SYS_OFFSET_EXTENDED: each hardware reading between two
    /// system clock readings, taken by the driver as close together as it can).
    package func readings(count: Int = 5) -> Result<[HardwareClockReading], HardwareTimestampingUnavailable> {
        var raw = [tock_phc_reading](repeating: tock_phc_reading(), count: count)
        let n = tock_phc_readings(fd, &raw, Int32(count))
        guard n > 0 else { return .failure(.clockUnreadable(-n)) }
        return .success(raw[0..<Int(n)].map { HardwareClockReading(systemBefore: $0.system_before, hardware: $0.hardware, systemAfter: $0.system_after) })
    }
}

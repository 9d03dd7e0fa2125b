/// Ethernet addresses, frames and the VXLAN header: pure values over bytes. No I/O.

/// A 48-bit MAC address packed in the low bits of a UInt64 (first octet most significant).
public struct MAC: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let raw: UInt64

    public init(raw: UInt64) { self.raw = raw & 0xFFFF_FFFF_FFFF }

    /// Reads six octets at `p`.
    @inline(__always)
    public init(_ p: UnsafeRawPointer) {
        var v: UInt64 = 0
        for i in 0..<6 { v = v << 8 | UInt64(p.load(fromByteOffset: i, as: UInt8.self)) }
        raw = v
    }

    public init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return nil }
        var v: UInt64 = 0
        for p in parts {
            guard p.count == 2, let b = UInt8(p, radix: 16) else { return nil }
            v = v << 8 | UInt64(b)
        }
        raw = v
    }

    public init(octets: [UInt8]) {
        precondition(octets.count == 6)
        raw = octets.reduce(0) { $0 << 8 | UInt64($1) }
    }

    public static let broadcast = MAC(raw: 0xFFFF_FFFF_FFFF)

    /// Group bit: broadcast and multicast.
    public var isMulticast: Bool { (raw >> 40) & 1 == 1 }
    public var isBroadcast: Bool { raw == 0xFFFF_FFFF_FFFF }
    public var isZero: Bool { raw == 0 }

    public var octets: [UInt8] { (0..<6).map { UInt8(truncatingIfNeeded: raw >> (40 - 8 * UInt64($0))) } }

    public var description: String {
        octets.map { b in
            let s = String(b, radix: 16)
            return b < 16 ? "0" + s : s
        }.joined(separator: ":")
    }

    public static func < (a: MAC, b: MAC) -> Bool { a.raw < b.raw }
}

public enum Ethernet {
    public static let headerLength = 14
    /// Largest frame accepted from a port or a peer (jumbo-free Ethernet plus a VLAN tag).
    public static let maxFrame = 65_535
}

/// VXLAN (RFC 7348): 8 octets before the inner Ethernet frame.
///
///     0                   1                   2                   3
///     +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///     |R|R|R|R|I|R|R|R|            Reserved                           |
///     +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///     |                VXLAN Network Identifier (VNI) |   Reserved    |
///     +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///
/// Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14) = 50 octets of overhead, so a
/// 1500-octet underlay carries an inner MTU of 1450.
public enum VXLAN {
    public static let headerLength = 8
    public static let defaultPort: UInt16 = 4789
    public static let overhead = 50
    public static let maxVNI: UInt32 = 0xFF_FFFF

    public enum ParseError: Error, Equatable, Sendable {
        case short
        case flags
    }

    /// Writes the header for `vni` at `p`.
    @inline(__always)
    public static func write(vni: UInt32, to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: 0x08, toByteOffset: 0, as: UInt8.self)
        p.storeBytes(of: 0, toByteOffset: 1, as: UInt8.self)
        p.storeBytes(of: 0, toByteOffset: 2, as: UInt8.self)
        p.storeBytes(of: 0, toByteOffset: 3, as: UInt8.self)
        p.storeBytes(of: UInt8(truncatingIfNeeded: vni >> 16), toByteOffset: 4, as: UInt8.self)
        p.storeBytes(of: UInt8(truncatingIfNeeded: vni >> 8), toByteOffset: 5, as: UInt8.self)
        p.storeBytes(of: UInt8(truncatingIfNeeded: vni), toByteOffset: 6, as: UInt8.self)
        p.storeBytes(of: 0, toByteOffset: 7, as: UInt8.self)
    }

    /// Reads the VNI of a datagram of `length` octets; reserved bits are ignored (RFC 7348 §5).
    /// The datagram must hold at least an inner Ethernet header.
    @inline(__always)
    public static func parse(_ p: UnsafeRawPointer, length: Int) -> Result<UInt32, ParseError> {
        guard length >= headerLength + Ethernet.headerLength else { return .failure(.short) }
        guard p.load(as: UInt8.self) & 0x08 != 0 else { return .failure(.flags) }
        let vni = UInt32(p.load(fromByteOffset: 4, as: UInt8.self)) << 16
            | UInt32(p.load(fromByteOffset: 5, as: UInt8.self)) << 8
            | UInt32(p.load(fromByteOffset: 6, as: UInt8.self))
        return .success(vni)
    }
}

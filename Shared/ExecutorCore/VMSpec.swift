/// A VM of a VIOLIN as the executor creates it (PROTOCOL.md §8.5), and the libvirt domain XML
/// made from it. Pure: no I/O.
///
/// The NIC is a QEMU UDP-socket netdev on the host's loopback: the guest's end at
/// 127.0.0.1:`nicPort + 1`, the switch's at 127.0.0.1:`nicPort`. Every host prepares the same
/// two ports for the VM in its own network namespace, so a migrated guest finds its switch at
/// the destination without any device to re-create. The VIOLIN facts (VNI, MAC, ports) travel
/// inside the domain's XML as metadata, so the destination's executor knows the VM it received.
public struct VMSpec: Equatable, Sendable {
    public var name: String
    public var vni: UInt32
    public var mac: String
    public var memoryMB: Int = 128
    public var vcpus: Int = 1
    public var kernel: String
    public var initrd: String = ""
    public var cmdline: String = ""
    public var disk: String = ""
    /// A fresh disk of this size (MiB) in the host's storage pool, instead of `disk`.
    public var diskMB = 0
    public var nicPort: Int
    /// How the VM's NIC reaches its switch.
    public var nic: NIC = .udp
    public var console: String = ""
    /// A second NIC on this libvirt network (the head node's uplink, a NAT network); "" none.
    public var uplinkNetwork: String = ""

    public init(name: String, vni: UInt32, mac: String, kernel: String, nicPort: Int) {
        self.name = name; self.vni = vni; self.mac = mac; self.kernel = kernel; self.nicPort = nicPort
    }

    /// A VM's NIC: QEMU's UDP socket on the host's loopback (`nicPort`), or a TAP device
    /// `vm-NAME` the switch makes (`vm_tap`) and QEMU opens, with vhost-net where the host has it.
    public enum NIC: String, Sendable, Equatable { case udp, tap }

    public struct Invalid: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    /// The port's name on the switch.
    public var portName: String { Self.portName(name) }
    public static func portName(_ vm: String) -> String { "vm-" + vm }

    public func validate() throws(Invalid) {
        func fail(_ s: String) -> Invalid { Invalid(description: s) }
        guard !name.isEmpty, name.count <= 48, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }),
              name.allSatisfy(\.isASCII) else {
            throw fail("name must be 1-48 characters of A-Z a-z 0-9 - _ .")
        }
        guard vni > 0, vni < 1 << 24 else { throw fail("vni must be 1..16777215") }
        let octets = mac.split(separator: ":", omittingEmptySubsequences: false)
        guard octets.count == 6, octets.allSatisfy({ $0.count == 2 && UInt8($0, radix: 16) != nil }),
              let first = UInt8(octets[0], radix: 16), first & 1 == 0 else {
            throw fail("mac must be a unicast MAC like 52:54:00:12:34:56")
        }
        guard (16...65_536).contains(memoryMB) else { throw fail("memory_mb must be 16..65536") }
        guard (1...64).contains(vcpus) else { throw fail("vcpus must be 1..64") }
        guard (0...1_048_576).contains(diskMB) else { throw fail("disk_mb must be 0..1048576") }
        guard diskMB == 0 || disk.isEmpty else { throw fail("disk_mb and disk exclude each other") }
        guard kernel.hasPrefix("/") else { throw fail("kernel must be an absolute path") }
        for (key, path) in [("initrd", initrd), ("disk", disk), ("console", console)] where !path.isEmpty && !path.hasPrefix("/") {
            throw fail("\(key) must be an absolute path")
        }
        switch nic {
        case .udp: guard (1024...65_534).contains(nicPort) else { throw fail("nic_port must be 1024..65534 (the guest uses nic_port + 1)") }
        case .tap: guard portName.utf8.count <= 15 else { throw fail("a VM with a TAP NIC has a name of at most 12 characters (its device is vm-NAME)") }
        }
        guard uplinkNetwork.isEmpty || (uplinkNetwork.count <= 64 && uplinkNetwork.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }))
        else { throw fail("uplink network must be a libvirt network name of letters, digits, '-', '_' or '.'") }
        for (key, v) in [("name", name), ("kernel", kernel), ("initrd", initrd), ("cmdline", cmdline), ("disk", disk), ("console", console)]
            where v.contains("\0") { throw fail("\(key) contains a NUL") }
    }

    static let namespace = "https://violin.invalid/vm/1"

    /// The domain: TCG (this machine's KVM is not usable), direct kernel boot, a UDP NIC.
    public var domainXML: String {
        var devices = ""
        if !disk.isEmpty {
            devices += "    <disk type='file' device='disk'><driver name='qemu' type='raw'/>"
                + "<source file='\(escape(disk))'/><target dev='vda' bus='virtio'/></disk>\n"
        }
        switch nic {
        case .udp:
            devices += """
                    <interface type='udp'>
                      <mac address='\(mac)'/>
                      <source address='127.0.0.1' port='\(nicPort)'><local address='127.0.0.1' port='\(nicPort + 1)'/></source>
                      <model type='virtio'/>
                    </interface>

                """
        case .tap:
            // The switch made the device (managed='no': libvirt opens it and leaves it be); libvirt
            // gives QEMU vhost-net where the host has it.
            devices += """
                    <interface type='ethernet'>
                      <mac address='\(mac)'/>
                      <target dev='\(escape(portName))' managed='no'/>
                      <model type='virtio'/>
                    </interface>

                """
        }
        if !uplinkNetwork.isEmpty {
            devices += "    <interface type='network'><source network='\(escape(uplinkNetwork))'/><model type='virtio'/></interface>\n"
        }
        // The serial console is a pty (libvirt's console stream reaches it: `violin console`),
        // and everything it prints is appended to the log file when one is set.
        let log = console.isEmpty ? "" : "<log file='\(escape(console))' append='on'/>"
        devices += "    <serial type='pty'>\(log)<target port='0'/></serial><console type='pty'><target type='serial' port='0'/></console>\n"
        // The balloon driver reports the guest's memory every 2 s from the start (the monitor reads
        // it): set in the definition, so it travels with a migration and nothing changes it on a
        // running guest.
        devices += "    <memballoon model='virtio'><stats period='2'/></memballoon>\n"
        return """
            <domain type='qemu'>
              <name>\(escape(name))</name>
              <metadata><violin:vm xmlns:violin='\(Self.namespace)' vni='\(vni)' mac='\(mac)' nic_port='\(nicPort)'\(nic == .tap ? " nic='tap'" : "") memory_mb='\(memoryMB)'/></metadata>
              <memory unit='MiB'>\(memoryMB)</memory>
              <currentMemory unit='MiB'>\(memoryMB)</currentMemory>
              <vcpu>\(vcpus)</vcpu>
              <os><type arch='x86_64' machine='pc'>hvm</type>
                <kernel>\(escape(kernel))</kernel>\(initrd.isEmpty ? "" : "<initrd>\(escape(initrd))</initrd>")
                <cmdline>\(escape(cmdline))</cmdline></os>
              <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>restart</on_crash>
              <devices>
            \(devices)  </devices>
            </domain>

            """
    }

    func escape(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "'": out += "&apos;"
            case "\"": out += "&quot;"
            default: out.append(c)
            }
        }
        return out
    }
}

/// The VIOLIN facts of a domain, read back from its XML (after a migration, on the destination).
public struct VMFacts: Equatable, Sendable {
    public var vni: UInt32
    public var mac: String
    public var nicPort: Int
    public var nic: VMSpec.NIC
    public var memoryMB: Int

    /// nil when the domain carries no VIOLIN metadata (not one of ours). libvirt re-writes the
    /// element (quotes, attribute order), so it is read attribute by attribute.
    public init?(domainXML xml: String) {
        guard let start = Self.find("<violin:vm ", in: xml[...]),
              let end = Self.find("/>", in: xml[start.upperBound...]) else { return nil }
        var attrs: [String: String] = [:]
        var rest = xml[start.upperBound..<end.lowerBound]
        while let eq = rest.firstIndex(of: "=") {
            let key = rest[..<eq].split(separator: " ").last.map(String.init) ?? ""
            let afterEq = rest.index(after: eq)
            guard afterEq < rest.endIndex, rest[afterEq] == "'" || rest[afterEq] == "\"" else { return nil }
            let quote = rest[afterEq]
            let valueStart = rest.index(after: afterEq)
            guard let close = rest[valueStart...].firstIndex(of: quote) else { return nil }
            attrs[key] = String(rest[valueStart..<close])
            rest = rest[rest.index(after: close)...]
        }
        guard let vni = attrs["vni"].flatMap({ UInt32($0) }), let mac = attrs["mac"],
              let port = attrs["nic_port"].flatMap({ Int($0) }) else { return nil }
        self.vni = vni; self.mac = mac; self.nicPort = port
        self.nic = attrs["nic"].flatMap(VMSpec.NIC.init(rawValue:)) ?? .udp
        self.memoryMB = attrs["memory_mb"].flatMap { Int($0) } ?? 0
    }

    static func find(_ needle: String, in hay: Substring) -> Range<String.Index>? {
        let n = Array(needle.utf8)
        var i = hay.startIndex
        while i < hay.endIndex {
            if hay[i...].utf8.starts(with: n) { return i..<hay.utf8.index(i, offsetBy: n.count) }
            i = hay.index(after: i)
        }
        return nil
    }

    /// The switch port a host prepares for this VM (the body of the mesh's add_port).
    public func portBody(vm: String) -> [String: String] {
        if nic == .tap { return ["name": VMSpec.portName(vm), "kind": "vm_tap", "mac": mac] }
        return ["name": VMSpec.portName(vm), "kind": "udp", "local": "127.0.0.1:\(nicPort)", "remote": "127.0.0.1:\(nicPort + 1)", "mac": mac]
    }
}

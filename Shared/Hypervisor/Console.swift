import CLibvirt
import Foundation

/// A VM's serial console, both ways. `read` blocks until the guest prints something and
/// returns [] when the console ends (the VM stopped or moved, or `close` was called).
/// `write` and `close` may be called from another thread while `read` blocks.
public protocol ConsoleStream: AnyObject, Sendable {
    func read(max: Int) throws(HypervisorError) -> [UInt8]
    func write(_ bytes: [UInt8]) throws(HypervisorError)
    func close()
}

/// libvirt's console stream of a domain (its first serial port, a pty): `virDomainOpenConsole`
/// on a blocking `virStream`. Holds the connection it was opened on.
final class LibvirtConsole: ConsoleStream, @unchecked Sendable {
    private let owner: LibvirtHypervisor
    private let stream: OpaquePointer
    private let lock = NSLock()
    private var closed = false

    init(_ owner: LibvirtHypervisor, domain name: String) throws(HypervisorError) {
        self.owner = owner
        guard let d = virDomainLookupByName(owner.conn, name) else { throw LibvirtHypervisor.failure("domain \(name)") }
        defer { virDomainFree(d) }
        guard let s = virStreamNew(owner.conn, 0) else { throw LibvirtHypervisor.failure("console stream") }
        // FORCE: a client that vanished without closing does not keep the console.
        guard virDomainOpenConsole(d, nil, s, UInt32(VIR_DOMAIN_CONSOLE_FORCE.rawValue)) == 0 else {
            let e = LibvirtHypervisor.failure("console of \(name)")
            virStreamFree(s)
            throw e
        }
        stream = s
    }

    deinit {
        close()
        virStreamFree(stream)
    }

    func read(max: Int) throws(HypervisorError) -> [UInt8] {
        if lock.withLock({ closed }) { return [] }
        var buffer = [UInt8](repeating: 0, count: max)
        let n = buffer.withUnsafeMutableBytes { virStreamRecv(stream, $0.baseAddress!.assumingMemoryBound(to: CChar.self), max) }
        if n < 0 {
            if lock.withLock({ closed }) { return [] }
            throw LibvirtHypervisor.failure("console read")
        }
        return Array(buffer.prefix(Int(n)))
    }

    func write(_ bytes: [UInt8]) throws(HypervisorError) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                virStreamSend(stream, raw.baseAddress!.advanced(by: sent).assumingMemoryBound(to: CChar.self), bytes.count - sent)
            }
            guard n > 0 else { throw LibvirtHypervisor.failure("console write") }
            sent += Int(n)
        }
    }

    func close() {
        let first = lock.withLock { () -> Bool in defer { closed = true }; return !closed }
        if first { virStreamAbort(stream) }
    }
}

extension LibvirtHypervisor {
    public func openConsole(_ name: String) throws(HypervisorError) -> any ConsoleStream {
        try LibvirtConsole(self, domain: name)
    }
}

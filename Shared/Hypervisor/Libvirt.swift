import CLibvirt

/// The libvirt library this process is linked against. The hypervisor interface and its
/// libvirt implementation grow here (monitor and executor issues).
public enum Libvirt {
    /// libvirt's version as major.minor.release.
    public static var libraryVersion: String {
        var v: UInt = 0
        guard virGetVersion(&v, nil, nil) == 0 else { return "unknown" }
        return "\(v / 1_000_000).\((v / 1000) % 1000).\(v % 1000)"
    }
}

import Foundation

/// A directory for runtime state that only this process's user may touch (control sockets, the
/// mesh's state, switch logs): made with mode 0700 when missing; refused when it is a symlink or
/// not a directory, belongs to another user, or is open to others — what lets someone else plant
/// a symlink where a root process will write.
public enum PrivateDirectory {
    public struct Refused: Error, CustomStringConvertible, Equatable {
        public let description: String
    }

    /// The default root of every service's runtime state.
    public static let root = "/run/violin"

    public static func prepare(_ path: String) throws(Refused) {
        var st = stat()
        if lstat(path, &st) != 0 {
            guard errno == ENOENT else { throw Refused(description: "\(path): \(String(cString: strerror(errno)))") }
            let parent = URL(fileURLWithPath: path).deletingLastPathComponent().path
            try? FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
            guard mkdir(path, 0o700) == 0 || errno == EEXIST else {
                throw Refused(description: "cannot make \(path): \(String(cString: strerror(errno)))")
            }
            guard lstat(path, &st) == 0 else { throw Refused(description: "\(path): \(String(cString: strerror(errno)))") }
        }
        guard st.st_mode & S_IFMT == S_IFDIR else {
            throw Refused(description: "\(path) is \(st.st_mode & S_IFMT == S_IFLNK ? "a symbolic link" : "not a directory"); it must be a directory of its own")
        }
        guard st.st_uid == geteuid() else {
            throw Refused(description: "\(path) belongs to uid \(st.st_uid), not to this process's user (uid \(geteuid()))")
        }
        guard st.st_mode & 0o077 == 0 else {
            throw Refused(description: "\(path) has mode \(String(st.st_mode & 0o777, radix: 8)): others may use it (chmod 700 \(path))")
        }
    }
}

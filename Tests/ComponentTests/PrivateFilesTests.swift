import Foundation
import ServiceKit
import Testing

/// Runtime state where nobody else can plant a file: private directories, and logs that are
/// never opened through a symbolic link (REVIEW-security: /tmp defaults, logs opened as root).
@Suite struct PrivateFilesTests {
    func scratch() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("violin-private-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    func mode(_ path: String) -> mode_t {
        var st = stat()
        _ = lstat(path, &st)
        return st.st_mode & 0o777
    }

    @Test func aPrivateDirectoryIsMadeClosedAndAnOpenOneRefused() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fresh = dir + "/run/violin"
        try PrivateDirectory.prepare(fresh)
        #expect(mode(fresh) == 0o700, "made \(String(mode(fresh), radix: 8))")
        try PrivateDirectory.prepare(fresh)   // as it is: accepted again

        let open = dir + "/open"
        #expect(mkdir(open, 0o755) == 0 && chmod(open, 0o755) == 0)
        #expect(throws: PrivateDirectory.Refused.self) { try PrivateDirectory.prepare(open) }
        do { try PrivateDirectory.prepare(open) } catch { #expect(error.description.contains("mode 755"), "\(error)") }

        let link = dir + "/link"
        #expect(symlink(fresh, link) == 0)
        do { try PrivateDirectory.prepare(link); Issue.record("a symlink accepted") } catch {
            #expect(error.description.contains("symbolic link"), "\(error)")
        }
        let file = dir + "/file"
        #expect(FileManager.default.createFile(atPath: file, contents: Data()))
        #expect(throws: PrivateDirectory.Refused.self) { try PrivateDirectory.prepare(file) }

        let theirs = dir + "/theirs"
        #expect(mkdir(theirs, 0o700) == 0 && chown(theirs, 65_534, 65_534) == 0)
        do { try PrivateDirectory.prepare(theirs); Issue.record("another user's directory accepted") } catch {
            #expect(error.description.contains("uid 65534"), "\(error)")
        }
    }

    /// A child's log is opened with O_NOFOLLOW: a symlink planted at the log's path makes the
    /// start fail, and the file it points to is left as it was.
    @Test func aLogPathThatIsASymlinkIsNotWrittenThrough() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let victim = dir + "/victim", log = dir + "/switch-77.log"
        try Data("precious\n".utf8).write(to: URL(fileURLWithPath: victim))
        #expect(symlink(victim, log) == 0)
        #expect(throws: (any Error).self) { _ = try ChildProcess("/bin/echo", ["overwritten"], stdout: .append(log), stderr: .append(log)) }
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious\n")
        // A plain path is written as before.
        let plain = dir + "/plain.log"
        let child = try ChildProcess("/bin/echo", ["written"], stdout: .append(plain), stderr: .append(plain))
        child.wait()
        #expect(try String(contentsOfFile: plain, encoding: .utf8) == "written\n")
    }
}

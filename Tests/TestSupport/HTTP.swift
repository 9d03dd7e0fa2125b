import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// One HTTP request, waited for (tests only): the status and body, or nil when nothing answered
/// within `timeout` seconds.
public func httpGet(_ url: String, method: String = "GET", token: String? = nil, timeout: Double = 10) -> (status: Int, body: String)? {
    guard let u = URL(string: url) else { return nil }
    var request = URLRequest(url: u, timeoutInterval: timeout)
    request.httpMethod = method
    if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
    final class Result: @unchecked Sendable { var value: (Int, String)? }
    let result = Result()
    let done = DispatchSemaphore(value: 0)
    let session = URLSession(configuration: .ephemeral)
    session.dataTask(with: request) { data, response, _ in
        if let http = response as? HTTPURLResponse { result.value = (http.statusCode, String(decoding: data ?? Data(), as: UTF8.self)) }
        done.signal()
    }.resume()
    _ = done.wait(timeout: .now() + timeout + 1)
    session.invalidateAndCancel()
    return result.value.map { (status: $0.0, body: $0.1) }
}

/// Runs a command (tests only); its exit status and what it printed (stdout and stderr).
public func runCommand(_ path: String, _ args: [String], stdin: String? = nil) -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    let input = Pipe()
    if stdin != nil { p.standardInput = input }
    do { try p.run() } catch { return (-1, "\(error)") }
    if let stdin {
        input.fileHandleForWriting.write(Data(stdin.utf8))
        try? input.fileHandleForWriting.close()
    }
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

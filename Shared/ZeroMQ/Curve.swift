import CZeroMQ
import Foundation

/// A CURVE key pair in Z85 text (40 characters each).
public struct CurveKeyPair: Equatable, Sendable {
    public let publicKey: String
    public let secretKey: String

    public init(publicKey: String, secretKey: String) throws {
        guard CurveKeyPair.isValidKey(publicKey), CurveKeyPair.isValidKey(secretKey) else {
            throw ZMQError(errno: EINVAL, operation: "CURVE keys must be 40 Z85 characters")
        }
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    public static func generate() throws -> CurveKeyPair {
        var pub = [CChar](repeating: 0, count: 41)
        var sec = [CChar](repeating: 0, count: 41)
        guard zmq_curve_keypair(&pub, &sec) == 0 else { throw ZMQError.last("zmq_curve_keypair") }
        return try CurveKeyPair(publicKey: String(cString: pub), secretKey: String(cString: sec))
    }

    /// The public key that belongs to a secret key.
    public static func publicKey(forSecret secret: String) throws -> String {
        var pub = [CChar](repeating: 0, count: 41)
        guard zmq_curve_public(&pub, secret) == 0 else { throw ZMQError.last("zmq_curve_public") }
        return String(cString: pub)
    }

    public static func isValidKey(_ key: String) -> Bool {
        guard key.utf8.count == 40 else { return false }
        var out = [UInt8](repeating: 0, count: 32)
        return zmq_z85_decode(&out, key) != nil
    }

    /// Z85 text of a 32-byte binary key (as ZAP hands it over).
    public static func z85(_ binary: [UInt8]) -> String? {
        guard binary.count == 32 else { return nil }
        var out = [CChar](repeating: 0, count: 41)
        guard zmq_z85_encode(&out, binary, 32) != nil else { return nil }
        return String(cString: out)
    }
}

/// The server side of CURVE: our key pair; which client keys are let in is the ZAP handler's call.
public struct ServerSecurity: Sendable {
    public var keyPair: CurveKeyPair
    public init(keyPair: CurveKeyPair) { self.keyPair = keyPair }
}

/// The client side of CURVE: our key pair and the server's public key.
public struct ClientSecurity: Sendable {
    public var keyPair: CurveKeyPair
    public var serverPublicKey: String
    public init(keyPair: CurveKeyPair, serverPublicKey: String) {
        self.keyPair = keyPair
        self.serverPublicKey = serverPublicKey
    }
}

extension ZMQSocket {
    /// Makes this socket a CURVE server in ZAP domain `domain` (call before bind).
    public func makeCurveServer(_ security: ServerSecurity, domain: String = "violin") throws {
        try setOption(ZMQ_CURVE_SERVER, Int32(1))
        try setOption(ZMQ_CURVE_SECRETKEY, string: security.keyPair.secretKey)
        try setOption(ZMQ_ZAP_DOMAIN, string: domain)
    }

    /// Makes this socket a CURVE client (call before connect).
    public func makeCurveClient(_ security: ClientSecurity) throws {
        try setOption(ZMQ_CURVE_SERVERKEY, string: security.serverPublicKey)
        try setOption(ZMQ_CURVE_PUBLICKEY, string: security.keyPair.publicKey)
        try setOption(ZMQ_CURVE_SECRETKEY, string: security.keyPair.secretKey)
    }
}

/// Whether an endpoint crosses hosts (and so needs CURVE when security is on).
public func isNetworkEndpoint(_ endpoint: String) -> Bool {
    endpoint.hasPrefix("tcp://")
}

/// The ZAP handler (RFC 27) of one context: accepts CURVE clients whose public key `accepts`
/// says yes to, refuses every other client. The key becomes the connection's `User-Id`, which
/// every message received on it carries. Runs on its own thread, which owns its socket.
public final class ZAPHandler: @unchecked Sendable {
    public typealias Refusal = (_ address: String, _ publicKey: String, _ mechanism: String) -> Void

    private let context: ZMQContext
    private let lock = NSLockLite()
    private let accepts: @Sendable (String) -> Bool
    private let onRefused: Refusal?
    private let waker = Waker()
    private var thread: Thread?
    private let done = DispatchSemaphore(value: 0)
    private var accepted = 0
    private var refused = 0

    public init(context: ZMQContext, accepts: @escaping @Sendable (String) -> Bool, onRefused: Refusal? = nil) {
        self.context = context
        self.accepts = accepts
        self.onRefused = onRefused
    }

    public convenience init(context: ZMQContext, allowed: Set<String>, onRefused: Refusal? = nil) {
        self.init(context: context, accepts: { allowed.contains($0) }, onRefused: onRefused)
    }

    public var counts: (accepted: Int, refused: Int) { lock.withLock { (accepted, refused) } }

    /// Binds the ZAP endpoint before returning, so servers bound afterwards are covered.
    public func start() throws {
        let socket = try ZMQSocket(context, .rep)
        try socket.bind("inproc://zeromq.zap.01")
        let t = Thread { [self] in
            self.serve(socket)
            socket.close()
            self.done.signal()
        }
        t.name = "zap"
        thread = t
        t.start()
    }

    public func stop() {
        guard thread != nil else { return }
        waker.wake()
        done.wait()
        thread = nil
    }

    private func serve(_ socket: ZMQSocket) {
        var items = [PollItem(socket: socket), PollItem(fd: waker.readFD)]
        while true {
            do {
                try poll(&items, timeoutMs: -1)
                if items[1].readable { return }
                guard items[0].readable, let request = try socket.receive(dontWait: true) else { continue }
                try socket.send(answer(request))
            } catch {
                return   // ETERM or a closed socket: the context is going away
            }
        }
    }

    private func answer(_ f: [Frame]) -> [Frame] {
        // version, request_id, domain, address, identity, mechanism, credentials...
        guard f.count >= 6 else { return [] }
        let requestId = f[1]
        let address = String(decoding: f[3], as: UTF8.self)
        let mechanism = String(decoding: f[5], as: UTF8.self)
        var key = ""
        var ok = false
        if mechanism == "CURVE", f.count >= 7, let z85 = CurveKeyPair.z85(f[6]) {
            key = z85
            ok = accepts(z85)
        }
        lock.withLock { if ok { accepted += 1 } else { refused += 1 } }
        if !ok { onRefused?(address, key, mechanism) }
        let status = ok ? "200" : "400"
        let text = ok ? "OK" : "client key not allowed"
        return [Array("1.0".utf8), requestId, Array(status.utf8), Array(text.utf8), Array(key.utf8), []]
    }
}

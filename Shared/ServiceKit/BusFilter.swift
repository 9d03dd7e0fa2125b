import VIOLINProtocol
import ZeroMQ

public enum BusFilter {
    /// With CURVE, the bus forwards an event only when its publisher's key may publish that
    /// topic as the header's `sender` says (PROTOCOL.md §7.1), and the body reads as the
    /// topic's type; subscribers never see a publisher's key, so they trust what it forwards.
    public static func make(_ settings: ServiceSettings) -> EventProxy.Filter? {
        guard let own = settings.server?.keyPair.publicKey else { return nil }
        let keys = settings.keys
        let maxBytes = settings.maxMessageBytes
        return { frames, user in
            guard let user, !user.isEmpty else { return true }    // an ipc publisher: this host
            let caller = user == own ? Caller(key: user, roles: [], trusted: true) : keys?.caller(user)
            guard let caller, let m = try? Codec.decodeEvent(frames, maxBytes: maxBytes), let topic = m.topic else { return false }
            guard Authorization.allowsEvent(caller, topic: topic, sender: m.header.sender) else { return false }
            return Catalogue.validEvent(topic: topic, body: m.body)
        }
    }
}

import VIOLINProtocol
import ZeroMQ

public enum BusFilter {
    /// With CURVE, the bus forwards an event only when its publisher's key may publish that
    /// topic as the header's `sender` says (PROTOCOL.md §7.1), and the body reads as the
    /// topic's type; subscribers never see a publisher's key, so they trust what it forwards.
    public static func make(_ settings: ServiceSettings) -> EventProxy.Filter? {
        guard settings.server != nil else { return nil }
        let maxBytes = settings.maxMessageBytes
        return { frames, user in
            guard let caller = settings.caller(key: user), let m = try? Codec.decodeEvent(frames, maxBytes: maxBytes), let topic = m.topic else { return false }
            guard Authorization.allowsEvent(caller, topic: topic, sender: m.header.sender) else { return false }
            return Catalogue.validEvent(topic: topic, body: m.body)
        }
    }
}

/// The one table of VIOLIN's well-known TCP ports (PROTOCOL.md §9, compose/DEPLOY.md): every
/// default endpoint, node file and command-line default is built from it.
public enum ServicePorts {
    /// The bus's request socket (ping, status, metrics).
    public static let bus = 7700
    public static let mesh = 7701
    public static let monitor = 7702
    public static let policy = 7703
    public static let executor = 7704
    /// Where services publish their events to the bus.
    public static let busPublishers = 7710
    /// Where subscribers read the bus.
    public static let busSubscribers = 7711

    /// `tcp://<address>:<port>`, an IPv6 address in brackets.
    public static func endpoint(_ address: String, _ port: Int) -> String { "tcp://\(bracketed(address)):\(port)" }

    /// An address as it goes before ":port" in an endpoint or a URI: `[2001:db8::1]` for IPv6.
    public static func bracketed(_ address: String) -> String { address.contains(":") ? "[\(address)]" : address }
}

import Foundation
import Yams

/// One configuration key: its name (snake_case, as in files), default and meaning.
public struct ConfigKey: Sendable {
    public let name: String
    public let defaultValue: String
    public let help: String
    public let validate: @Sendable (String) -> String?   // nil when valid, else what is expected

    public init(_ name: String, default defaultValue: String, help: String,
                validate: @escaping @Sendable (String) -> String? = { _ in nil }) {
        self.name = name
        self.defaultValue = defaultValue
        self.help = help
        self.validate = validate
    }

    /// The environment variable that sets this key: VIOLIN_ + upper-case name.
    public var environmentName: String { "VIOLIN_" + name.uppercased() }
    /// The command-line flag that sets this key.
    public var flag: String { "--" + name.replacingOccurrences(of: "_", with: "-") }
}

/// Where a configuration value came from, for error messages.
public enum ConfigSource: Equatable, Sendable, CustomStringConvertible {
    case commandLine(flag: String)
    case environment(variable: String)
    case file(path: String, line: Int?)
    case defaultValue

    public var description: String {
        switch self {
        case .commandLine(let flag): return "command line \(flag)"
        case .environment(let v): return "environment \(v)"
        case .file(let path, let line): return line.map { "\(path) line \($0)" } ?? path
        case .defaultValue: return "default"
        }
    }
}

public struct ConfigError: Error, Equatable, CustomStringConvertible, Sendable {
    public let key: String
    public let source: ConfigSource
    public let reason: String
    public var description: String { "configuration key '\(key)' (\(source)): \(reason)" }
}

/// Values resolved by precedence: command line over environment over file over default.
public struct ResolvedConfig: Sendable {
    public let values: [String: String]
    public let sources: [String: ConfigSource]

    public init(values: [String: String], sources: [String: ConfigSource]) {
        self.values = values
        self.sources = sources
    }

    public subscript(key: String) -> String { values[key] ?? "" }

    public func int(_ key: String) -> Int { Int(self[key]) ?? 0 }
    public func double(_ key: String) -> Double { Double(self[key]) ?? 0 }
    public func list(_ key: String) -> [String] {
        self[key].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }
}

public enum ConfigResolver {
    /// Pure resolution. `file` maps key -> (value, line); unknown file keys are refused.
    public static func resolve(keys: [ConfigKey], commandLine: [String: String], environment: [String: String],
                               file: [String: (value: String, line: Int?)], filePath: String = "") throws(ConfigError) -> ResolvedConfig {
        let known = Dictionary(uniqueKeysWithValues: keys.map { ($0.name, $0) })
        for (name, entry) in file where known[name] == nil {
            throw ConfigError(key: name, source: .file(path: filePath, line: entry.line),
                              reason: "unknown key; known keys: \(keys.map(\.name).sorted().joined(separator: ", "))")
        }
        var values: [String: String] = [:]
        var sources: [String: ConfigSource] = [:]
        for key in keys {
            let (value, source): (String, ConfigSource)
            if let v = commandLine[key.name] {
                (value, source) = (v, .commandLine(flag: key.flag))
            } else if let v = environment[key.environmentName] {
                (value, source) = (v, .environment(variable: key.environmentName))
            } else if let entry = file[key.name] {
                (value, source) = (entry.value, .file(path: filePath, line: entry.line))
            } else {
                (value, source) = (key.defaultValue, .defaultValue)
            }
            if let expected = key.validate(value) {
                throw ConfigError(key: key.name, source: source, reason: "invalid value '\(value)': expected \(expected)")
            }
            values[key.name] = value
            sources[key.name] = source
        }
        return ResolvedConfig(values: values, sources: sources)
    }

    /// Reads a flat YAML mapping of keys to scalars, with the line of each key.
    public static func parseFile(text: String, path: String) throws(ConfigError) -> [String: (value: String, line: Int?)] {
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch {
            throw ConfigError(key: "(file)", source: .file(path: path, line: nil), reason: "not valid YAML: \(error)")
        }
        guard let node else { return [:] }
        guard let mapping = node.mapping else {
            throw ConfigError(key: "(file)", source: .file(path: path, line: node.mark.map { $0.line }),
                              reason: "expected a mapping of keys to values")
        }
        var out: [String: (value: String, line: Int?)] = [:]
        for (k, v) in mapping {
            let name = k.string ?? "?"
            let line = k.mark.map { $0.line }
            if let s = v.scalar?.string {
                out[name] = (s, line)
            } else if let seq = v.sequence {
                let items = seq.compactMap { $0.scalar?.string }
                guard items.count == seq.count else {
                    throw ConfigError(key: name, source: .file(path: path, line: line), reason: "expected a list of scalars")
                }
                out[name] = (items.joined(separator: ","), line)
            } else {
                throw ConfigError(key: name, source: .file(path: path, line: line), reason: "expected a scalar value")
            }
        }
        return out
    }
}

/// Validators shared by the services' keys.
public enum Validate {
    public static let positiveNumber: @Sendable (String) -> String? = { v in
        (Double(v).map { $0 > 0 && $0.isFinite } ?? false) ? nil : "a positive number"
    }
    public static let nonNegativeNumber: @Sendable (String) -> String? = { v in
        Double(v).map { $0 >= 0 && $0.isFinite } == true ? nil : "a number >= 0"
    }
    public static let positiveInteger: @Sendable (String) -> String? = { v in
        (Int(v).map { $0 > 0 } ?? false) ? nil : "a positive integer"
    }
    public static let logLevel: @Sendable (String) -> String? = { v in
        ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(v)
            ? nil : "one of trace, debug, info, notice, warning, error, critical"
    }
    public static let endpoints: @Sendable (String) -> String? = { v in
        let parts = v.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let ok = !parts.isEmpty && parts.allSatisfy { p in
            ["tcp://", "ipc://", "inproc://"].contains { p.hasPrefix($0) && p.count > $0.count }
        }
        return ok ? nil : "one or more ZeroMQ endpoints (tcp://HOST:PORT, ipc://PATH), comma-separated"
    }
    public static let httpAddress: @Sendable (String) -> String? = { v in
        v.isEmpty || HTTPAddress(v) != nil ? nil : "HOST:PORT with an IPv4 address or [IPv6], or empty for none"
    }
    public static let optionalEndpoint: @Sendable (String) -> String? = { v in
        v.isEmpty || v == "none" ? nil : endpoints(v)
    }
}

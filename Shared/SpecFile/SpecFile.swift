import PolicyCore
import Yams

/// Reads a VIOLIN spec file (YAML) into `ViolinSpec`: the YAML becomes a `SpecNode` tree with
/// the line of every key, which `ViolinSpec.parse` checks; every refusal names key and line.
public enum SpecFile {
    public static func parse(_ text: String) throws(SpecError) -> ViolinSpec {
        try ViolinSpec.parse(try tree(text))
    }

    /// The document as a tree of scalars, mappings and lists (lines counted from 1).
    public static func tree(_ text: String) throws(SpecError) -> SpecNode {
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch {
            if let key = duplicated(in: "\(error)") {
                // Yams refuses a repeated key for the whole document: name it, at its second line.
                let lines = text.split(separator: "\n", omittingEmptySubsequences: false).enumerated().filter { _, l in
                    let t = l.drop { $0 == " " || $0 == "-" }.drop { $0 == " " }
                    return t.hasPrefix(key + ":")
                }
                throw SpecError(key, line: lines.count > 1 ? lines[1].offset + 1 : 1, "is given twice")
            }
            throw SpecError("(document)", line: Self.line(of: error) ?? 1, "not valid YAML: \(error)")
        }
        guard let root else { throw SpecError("(document)", line: 1, "the file is empty") }
        return try convert(root)
    }

    static func convert(_ node: Node) throws(SpecError) -> SpecNode {
        let line = node.mark?.line ?? 1
        switch node {
        case .scalar(let s): return .scalar(s.string, line: line)
        case .sequence(let seq):
            var items: [SpecNode] = []
            for n in seq { items.append(try convert(n)) }
            return .list(items, line: line)
        case .mapping(let m):
            var entries: [SpecNode.Entry] = []
            for (k, v) in m {
                guard let key = k.scalar?.string else { throw SpecError("(key)", line: k.mark?.line ?? line, "a key must be a plain word") }
                entries.append(SpecNode.Entry(key: key, line: k.mark?.line ?? line, value: try convert(v)))
            }
            return .mapping(entries, line: line)
        case .alias:
            throw SpecError("(document)", line: line, "YAML aliases are not allowed in a spec")
        }
    }

    /// The key of Yams' "duplicated key(s): 'k'" message.
    static func duplicated(in message: String) -> String? {
        guard let r = message.range(of: "duplicated key(s): '") else { return nil }
        let rest = message[r.upperBound...]
        return rest.firstIndex(of: "'").map { String(rest[..<$0]) }
    }

    static func line(of error: Error) -> Int? {
        (error as? YamlError).flatMap { e in
            if case .scanner(_, _, let mark, _) = e { return mark.line }
            if case .parser(_, _, let mark, _) = e { return mark.line }
            return nil
        }
    }
}

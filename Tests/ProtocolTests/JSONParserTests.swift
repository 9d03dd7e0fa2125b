import Foundation
import Testing
@testable import VIOLINProtocol

@Suite struct JSONParserTests {
    static let valid: [(String, JSONValue)] = [
        (#"{}"#, [:]),
        (#" { "a" : [1, -2.5, 3e2, 0, -0.0, true, false, null] } "#, ["a": [1, -2.5, 300, 0, 0, true, false, nil]]),
        (#""\"\\\/\b\f\n\r\t""#, .string("\"\\/\u{08}\u{0C}\n\r\t")),
        (#""\u00e9\u4e2d\ud83d\ude00""#, .string("é中😀")),
        (#""héllo""#, .string("héllo")),
        (#"[[[]]]"#, [[[]]]),
        (#"{"a":{"b":{"c":"d"}},"a2":1}"#, ["a": ["b": ["c": "d"]], "a2": 1]),
    ]

    @Test(arguments: 0..<valid.count)
    func parsesValidJSON(index: Int) throws {
        let (text, expected) = Self.valid[index]
        let v = try JSONText.parse(Array(text.utf8))
        #expect(v == expected)
        // What we write, we read back; and Foundation agrees it is JSON.
        #expect(try JSONText.parse(v.bytes) == v)
        #expect((try? JSONSerialization.jsonObject(with: Data(v.bytes), options: [.fragmentsAllowed])) != nil)
    }

    static let invalid = [
        "", " ", "{", "}", "[1,]", "{\"a\":1,}", "{a:1}", "'x'", "01", "1.", "1e", "-", "+1", "NaN", "Infinity",
        "tru", "nul", "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00x\"", "\"a\u{01}b\"", "[1 2]",
        "{\"a\" 1}", "1 2", "1e999",
    ]

    @Test(arguments: invalid)
    func refusesInvalidJSON(text: String) {
        #expect(throws: JSONParseError.self) { try JSONText.parse(Array(text.utf8)) }
    }

    @Test func refusesInvalidUTF8AndDeepNesting() {
        #expect(throws: JSONParseError.self) { try JSONText.parse([0x22, 0xff, 0xfe, 0x22]) }
        let deep = Array(repeating: UInt8(ascii: "["), count: 100_000) + Array(repeating: UInt8(ascii: "]"), count: 100_000)
        #expect(throws: JSONParseError.self) { try JSONText.parse(deep) }
        let ok = Array(repeating: UInt8(ascii: "["), count: 60) + Array(repeating: UInt8(ascii: "]"), count: 60)
        #expect((try? JSONText.parse(ok)) != nil)
    }

    @Test func writesKeysSortedAndEscaped() {
        let v: JSONValue = ["b": 1, "a": "x\"y\n\u{01}", "c": [1.5, nil]]
        #expect(String(decoding: v.bytes, as: UTF8.self) == #"{"a":"x\"y\n\u0001","b":1,"c":[1.5,null]}"#)
    }
}

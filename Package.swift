// swift-tools-version:6.0
import PackageDescription

// Layout (see README.md):
//   Shared/   libraries, lowest first: C shims, the pure protocol, the thin ZeroMQ layer,
//             the service kit, the hypervisor interface.
//   Services/ one folder per process (@main wiring on top of the libraries).
//   Tests/    unit, component (real ZeroMQ) and system (real processes) tests.
let package = Package(
    name: "violin",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "violin", targets: ["violin"]),
        .executable(name: "violin-bus", targets: ["violin-bus"]),
        .executable(name: "violin-mesh", targets: ["violin-mesh"]),
        .executable(name: "violin-switch", targets: ["violin-switch"]),
        .executable(name: "violin-monitor", targets: ["violin-monitor"]),
        .executable(name: "violin-policy", targets: ["violin-policy"]),
        .executable(name: "violin-executor", targets: ["violin-executor"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        // The Prometheus exposition (swift-metrics' backend) and the small HTTP server it is
        // served from, with the control node's web view (SwiftNIO: event-loop threads of its
        // own, as the services' threads are).
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        // Native libraries, found through pkg-config.
        .systemLibrary(name: "CZeroMQ", path: "Shared/CZeroMQ", pkgConfig: "libzmq",
                       providers: [.apt(["libzmq3-dev"])]),
        .systemLibrary(name: "CLibvirt", path: "Shared/CLibvirt", pkgConfig: "libvirt",
                       providers: [.apt(["libvirt-dev"])]),

        // Pure: the envelope, the message catalogue and the codec. No I/O.
        .target(name: "VIOLINProtocol", path: "Shared/VIOLINProtocol",
                exclude: ["PROTOCOL.md"]),
        // Locks, the eventfd waker, worker threads and clocks: what the ZeroMQ layer and the data
        // plane share, so the data plane does not link libzmq.
        .target(name: "CPrimitives", path: "Shared/CPrimitives"),
        .target(name: "Primitives", dependencies: ["CPrimitives"], path: "Shared/Primitives"),
        // Thin layer over libzmq: sockets, poll, Lazy Pirate client, proxy, CURVE + ZAP. The only
        // module that imports CZeroMQ.
        .target(name: "ZeroMQ", dependencies: ["CZeroMQ", "Primitives"], path: "Shared/ZeroMQ"),
        // What every service shares: configuration, logging, lifecycle, admin requests.
        .target(name: "ServiceKit", dependencies: [
            "VIOLINProtocol", "ZeroMQ",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Yams", package: "Yams"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ], path: "Shared/ServiceKit"),
        // The data plane's syscalls: TAP, UDP, recvmmsg/sendmmsg batches.
        .target(name: "CNetShim", path: "Shared/CNetShim"),
        // The Internet checksum's inner loop in C, so it can use AVX2 where the CPU has it.
        .target(name: "CChecksum", path: "Shared/CChecksum"),
        // Pure switching: frames, VXLAN header, MAC table, the forwarding decision.
        // Exclusivity is checked statically; the dynamic check costs the hot path ~1 % (measured).
        .target(name: "SwitchCore", dependencies: ["CChecksum", "VIOLINProtocol"], path: "Shared/SwitchCore",
                swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"])]),
        // The forwarding loop and ports, on top of the core and the shim.
        .target(name: "SwitchDataPlane", dependencies: ["SwitchCore", "CNetShim", "Primitives", "VIOLINProtocol"],
                path: "Shared/SwitchDataPlane",
                swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"])]),
        // Pure: membership of the switch meshes (join, announce, leave, liveness).
        .target(name: "MeshCore", path: "Shared/MeshCore"),
        // Pure: the adaptation manager's decisions and the §4.2 simulator.
        .target(name: "PolicyCore", path: "Shared/PolicyCore"),
        // A VIOLIN's spec file (YAML) read into PolicyCore's ViolinSpec, with the line of each key.
        .target(name: "SpecFile", dependencies: ["PolicyCore", .product(name: "Yams", package: "Yams")], path: "Shared/SpecFile"),
        // The hypervisor interface (libvirt).
        .target(name: "Hypervisor", dependencies: ["CLibvirt"], path: "Shared/Hypervisor"),
        // Pure: VM specs and their domain XML, migration jobs and their recovery.
        .target(name: "ExecutorCore", path: "Shared/ExecutorCore"),

        // Processes.
        .executableTarget(name: "violin-bus", dependencies: ["ServiceKit"], path: "Services/Bus"),
        .target(name: "SwitchService", dependencies: ["ServiceKit", "SwitchCore", "SwitchDataPlane", "VIOLINProtocol"],
                path: "Services/Switch/Service"),
        .executableTarget(name: "violin-switch", dependencies: ["ServiceKit", "SwitchService"], path: "Services/Switch/Main"),
        .target(name: "MeshService", dependencies: ["MeshCore", "Primitives", "ServiceKit", "VIOLINProtocol", "ZeroMQ"],
                path: "Services/Mesh/Service"),
        .executableTarget(name: "violin-mesh", dependencies: ["ServiceKit", "MeshService"], path: "Services/Mesh/Main"),
        .target(name: "MonitorService", dependencies: ["Hypervisor", "ServiceKit", "VIOLINProtocol", "ZeroMQ"],
                path: "Services/Monitor/Service"),
        .executableTarget(name: "violin-monitor", dependencies: ["ServiceKit", "Hypervisor", "MonitorService"],
                          path: "Services/Monitor/Main"),
        .target(name: "PolicyService", dependencies: [
            "PolicyCore", "ServiceKit", "VIOLINProtocol", "ZeroMQ", .product(name: "GRDB", package: "GRDB.swift"),
        ], path: "Services/Policy/Service"),
        .executableTarget(name: "violin-policy", dependencies: ["ServiceKit", "PolicyService"], path: "Services/Policy/Main"),
        .target(name: "ExecutorService", dependencies: [
            "ExecutorCore", "Hypervisor", "ServiceKit", "VIOLINProtocol", "ZeroMQ", .product(name: "GRDB", package: "GRDB.swift"),
        ], path: "Services/Executor/Service"),
        .executableTarget(name: "violin-executor", dependencies: ["ServiceKit", "ExecutorService"],
                          path: "Services/Executor/Main"),
        .executableTarget(name: "violin", dependencies: [
            "ServiceKit", "VIOLINProtocol", "ZeroMQ", "Hypervisor", "PolicyCore", "SpecFile", "SwitchCore", "SwitchDataPlane", "CNetShim",
            .product(name: "ArgumentParser", package: "swift-argument-parser"), .product(name: "Logging", package: "swift-log"),
        ], path: "Services/CLI"),

        // Tests. TestSupport: what every test target shares (the one `eventually`).
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "ProtocolTests", dependencies: ["VIOLINProtocol"],
                    path: "Tests/ProtocolTests", resources: [.copy("Golden")]),
        .testTarget(name: "HypervisorTests", dependencies: ["Hypervisor"], path: "Tests/HypervisorTests"),
        .testTarget(name: "MeshCoreTests", dependencies: ["MeshCore", "Primitives"], path: "Tests/MeshCoreTests"),
        .testTarget(name: "ExecutorTests", dependencies: ["TestSupport", "ExecutorCore", "ExecutorService"], path: "Tests/ExecutorTests"),
        .testTarget(name: "PolicyCoreTests", dependencies: ["PolicyCore", "SpecFile"], path: "Tests/PolicyCoreTests"),
        .testTarget(name: "SwitchCoreTests", dependencies: ["SwitchCore"], path: "Tests/SwitchCoreTests"),
        .testTarget(name: "DataPlaneTests", dependencies: ["TestSupport", "SwitchDataPlane", "SwitchCore", "CNetShim", "VIOLINProtocol", "ServiceKit"],
                    path: "Tests/DataPlaneTests"),
        .testTarget(name: "ComponentTests", dependencies: ["TestSupport", "ZeroMQ", "ServiceKit", "VIOLINProtocol", "MonitorService", "Hypervisor",
                                                          "PolicyService", "PolicyCore", "ExecutorService", "ExecutorCore", "MeshService"],
                    path: "Tests/ComponentTests"),
        .testTarget(name: "SystemTests", dependencies: ["TestSupport", "VIOLINProtocol", "ZeroMQ", "ServiceKit"],
                    path: "Tests/SystemTests",
                    exclude: ["interop_client.py", "l2probe.py"]),   // helpers the tests run, not sources
    ],
    swiftLanguageModes: [.v5]
)

//! Compiles proto/raftka.proto into tonic services and prost messages (`OUT_DIR/raftka.v1.rs`,
//! included by `src/rpc/mod.rs`). protox parses the .proto files in pure Rust, so no `protoc`
//! is needed on the build machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/raftka.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}

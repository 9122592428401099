fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/transport.proto");
    // protox compiles the proto in Rust, so no protoc is needed to build.
    let descriptors = protox::compile(["proto/transport.proto"], ["proto"])?;
    tonic_prost_build::configure()
        // Received Raft messages and snapshot chunks are sliced out of the
        // request buffer, not copied: they carry the entries being replicated.
        .bytes(".chronik.raft")
        .compile_fds(descriptors)?;
    Ok(())
}

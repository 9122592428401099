fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/transport.proto");
    // protox compiles the proto in Rust, so no protoc is needed to build.
    let descriptors = protox::compile(["proto/transport.proto"], ["proto"])?;
    tonic_prost_build::compile_fds(descriptors)?;
    Ok(())
}

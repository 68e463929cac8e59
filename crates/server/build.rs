//! Compiles `proto/grpc_service.proto` into Rust at build time: `protox` parses it (no `protoc`
//! on the machine) and `tonic-prost-build` generates the messages, the server trait and a client.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/grpc_service.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Tensor payloads as `bytes::Bytes`: decoded without copying out of the request buffer.
        .bytes(".inference.ModelInferRequest.raw_input_contents")
        .bytes(".inference.ModelInferResponse.raw_output_contents")
        .compile_fds(fds)?;
    Ok(())
}

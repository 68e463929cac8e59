//! End-to-end over one real gRPC connection: idle `ModelStreamInfer` streams (open, waiting for
//! requests) do not hold up the connection's other calls. hyper allows 200 streams per
//! connection unless told otherwise, and a client never opens more than the server allows, so
//! 200 idle streams left every further call on the connection waiting; the server now allows
//! `--grpc-max-concurrent-streams` (1024 by default), and keeps to it.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::Server;
use ferroserve_server::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use ferroserve_server::grpc::proto::model_infer_request::InferInputTensor;
use ferroserve_server::grpc::proto::{
    InferTensorContents, ModelInferRequest, ModelStreamInferResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

type Client = GrpcInferenceServiceClient<Channel>;

fn iris_request() -> ModelInferRequest {
    ModelInferRequest {
        model_name: "iris".into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![1, 4],
            parameters: HashMap::new(),
            contents: Some(InferTensorContents {
                fp32_contents: vec![5.1, 3.5, 1.4, 0.2],
                ..Default::default()
            }),
        }],
        ..Default::default()
    }
}

/// An open stream that has sent nothing: its request sender (dropping it ends the stream) and
/// its answers.
type Idle = (
    mpsc::Sender<ModelInferRequest>,
    Streaming<ModelStreamInferResponse>,
);

/// Opens `n` idle streams on the client's connection, each answered (its headers received)
/// within 10 s.
async fn open_idle(c: &Client, n: usize) -> Vec<Idle> {
    let mut open = Vec::with_capacity(n);
    for i in 0..n {
        let (tx, rx) = mpsc::channel(1);
        let answers = tokio::time::timeout(
            Duration::from_secs(10),
            c.clone().model_stream_infer(ReceiverStream::new(rx)),
        )
        .await
        .unwrap_or_else(|_| panic!("stream {i} was not opened within 10 s"))
        .unwrap()
        .into_inner();
        open.push((tx, answers));
    }
    open
}

/// One inference on the connection, or `None` if it is not answered within `bound`.
async fn infer_within(c: &Client, bound: Duration) -> Option<()> {
    let r = tokio::time::timeout(bound, c.clone().model_infer(iris_request()))
        .await
        .ok()?;
    assert_eq!(r.unwrap().into_inner().outputs.len(), 2);
    Some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_idle_streams_leave_the_connection_serving() {
    let s = Server::start(&["--request-log", "off"], &[]);
    // One channel is one HTTP/2 connection: every stream and call below share it.
    let c = GrpcInferenceServiceClient::connect(s.grpc.clone())
        .await
        .unwrap();
    let idle = open_idle(&c, 300).await;
    for _ in 0..3 {
        assert!(
            infer_within(&c, Duration::from_secs(10)).await.is_some(),
            "a call after 300 idle streams was not answered within 10 s"
        );
    }
    // The streams still work: one answers a request, then all end cleanly.
    let (tx, mut answers) = idle.into_iter().next_back().unwrap();
    tx.send(iris_request()).await.unwrap();
    let a = answers.message().await.unwrap().unwrap();
    assert_eq!(a.error_message, "");
    drop(tx);
    assert!(answers.message().await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_limit_is_the_flag() {
    let s = Server::start(
        &["--request-log", "off", "--grpc-max-concurrent-streams", "4"],
        &[],
    );
    let c = GrpcInferenceServiceClient::connect(s.grpc.clone())
        .await
        .unwrap();
    assert!(infer_within(&c, Duration::from_secs(10)).await.is_some());
    let idle = open_idle(&c, 4).await;
    // A fifth stream waits for one of the four to close (the client keeps to the server's
    // limit): not answered within a second ...
    assert!(infer_within(&c, Duration::from_secs(1)).await.is_none());
    // ... and answered once they end (their senders dropped: each stream ends cleanly).
    drop(idle);
    assert!(infer_within(&c, Duration::from_secs(10)).await.is_some());
    // Another connection was never held up.
    let other = GrpcInferenceServiceClient::connect(s.grpc.clone())
        .await
        .unwrap();
    let _more = open_idle(&c, 4).await;
    assert!(infer_within(&other, Duration::from_secs(10))
        .await
        .is_some());
}

#[test]
fn a_stream_limit_of_zero_is_refused_at_start() {
    let out = common::ferroserve()
        .args(["serve", "--grpc-max-concurrent-streams", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--grpc-max-concurrent-streams"), "{err}");
}

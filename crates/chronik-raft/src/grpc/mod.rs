//! The Raft transport over gRPC (tonic): one long-lived HTTP/2 connection per
//! peer for message batches, a stream per snapshot, the server side that
//! feeds a node's loop, and how peers authenticate to each other.

mod client;
mod peer_auth;
mod server;
mod step_codec;

pub use client::{GrpcTransport, PeerAddresses, REQUEST_TIMEOUT, connect_channel};
pub use peer_auth::{PeerChannel, PeerSecurity, PeerTls};
pub use server::RaftService;

/// Generated from `proto/transport.proto`.
pub mod proto {
    tonic::include_proto!("chronik.raft");
}

/// Raft appends and snapshot chunks exceed tonic's 4 MiB default. One entry
/// holds one produce request's batches for a partition, and a Kafka request
/// may be 100 MiB; a message the receiver refuses would be resent forever.
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// HTTP/2 flow-control windows. With the defaults (1-2 MiB) a batch of
/// appends waits for window updates every MiB, a round trip each, which
/// capped replication far below the disk's speed.
pub const STREAM_WINDOW_BYTES: u32 = 32 << 20;
pub const CONNECTION_WINDOW_BYTES: u32 = 64 << 20;
/// A snapshot transfer that makes no progress for this long is given up, by
/// the sender and by the receiver; the next attempt resumes where it stopped.
/// Large snapshots take as long as they need while they progress.
pub const SNAPSHOT_STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Largest HTTP/2 frame a node accepts, so appends travel in few frames.
pub const MAX_FRAME_BYTES: u32 = 1 << 20;

/// The id of the cluster this node belongs to, sent with every request. It is
/// empty while a new cluster forms (the metadata group picks it); once it is
/// set, requests without it or with another are refused.
#[derive(Debug, Clone, Default)]
pub struct ClusterId(std::sync::Arc<std::sync::RwLock<String>>);

impl ClusterId {
    pub fn get(&self) -> String {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, id: &str) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = id.to_string();
    }

    /// Refuses a request from another cluster, or without a cluster id once
    /// this node has one, with a message saying which.
    pub fn check(&self, theirs: &str) -> Result<(), tonic::Status> {
        let ours = self.get();
        if ours.is_empty() || ours == theirs {
            return Ok(());
        }
        if theirs.is_empty() {
            return Err(tonic::Status::failed_precondition(format!(
                "this node belongs to cluster '{ours}'; requests must carry its id"
            )));
        }
        Err(tonic::Status::failed_precondition(format!(
            "this node belongs to cluster '{ours}', the request comes from cluster '{theirs}'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::ClusterId;

    #[test]
    fn requests_from_another_cluster_are_refused() {
        let ours = ClusterId::default();
        assert!(
            ours.check("other").is_ok(),
            "a forming cluster has no id to compare yet"
        );
        ours.set("abc");
        assert!(ours.check("abc").is_ok());
        assert!(ours.check("").is_err(), "a member refuses requests without the id");
        let refused = ours.check("xyz").unwrap_err();
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert!(refused.message().contains("'abc'") && refused.message().contains("'xyz'"));
    }
}

//! `cluster version`: the `chronik.version` level the cluster runs at and
//! the levels each member's build reads; with `--set`, moves the cluster up
//! once every member reads the new level (the node asked checks them all).

use std::time::Duration;

use anyhow::Context;
use chronik_broker::cluster::supported_versions;
use chronik_raft::grpc::PeerSecurity;
use chronik_state::metadata::MetadataCommand;
use chronik_state::version::FEATURE;
use clap::Args;
use serde::Serialize;

use crate::cluster_view::print;
use crate::membership_cli::{Cluster, Via};

#[derive(Debug, Args)]
pub struct Version {
    /// Move the cluster up to this level. Refused while a member's build
    /// does not read it or does not answer; levels never go down.
    #[arg(long)]
    pub set: Option<i16>,
    #[command(flatten)]
    pub via: Via,
}

#[derive(Serialize)]
struct VersionView {
    feature: &'static str,
    /// The level the cluster runs at.
    level: i16,
    nodes: Vec<NodeLevels>,
}

#[derive(Serialize)]
struct NodeLevels {
    id: u64,
    /// The levels its build reads, or why it is not known.
    reads: Result<(i16, i16), String>,
}

pub async fn version(args: Version, security: PeerSecurity) -> anyhow::Result<u8> {
    let timeout = Duration::from_millis(args.via.timeout_ms.max(1));
    let (cluster, mut entry) = Cluster::connect(&args.via, security.clone()).await?;
    if let Some(level) = args.set {
        cluster
            .submit(&MetadataCommand::SetVersion {
                level,
                // The node asked lists the members as it checks them.
                members: Vec::new(),
            })
            .await
            .with_context(|| format!("cannot set {FEATURE} to {level}"))?;
        entry = Cluster::connect(&args.via, security.clone()).await?.1;
    }
    let mut nodes = Vec::new();
    for node in &entry.nodes {
        let reads = supported_versions(&node.raft_addr, timeout, &security, &entry.cluster_id)
            .await
            .map(|levels| (*levels.start(), *levels.end()))
            .map_err(|why| format!("unreachable: {why}"));
        nodes.push(NodeLevels { id: node.id, reads });
    }
    let view = VersionView {
        feature: FEATURE,
        level: entry.version,
        nodes,
    };
    print(args.via.json, &view, print_version);
    Ok(0)
}

fn print_version(view: &VersionView) {
    println!("{} {}", view.feature, view.level);
    for node in &view.nodes {
        match &node.reads {
            Ok((min, max)) => println!("node {}: reads {min} to {max}", node.id),
            Err(why) => println!("node {}: {why}", node.id),
        }
    }
}

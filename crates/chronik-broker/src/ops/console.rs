//! The built-in web console: one server-rendered page that refreshes
//! itself, with the nodes, the topics and their partitions, the consumer
//! groups with their lag, and a chart of produce and fetch rates.

use std::fmt::Write;

use crate::Broker;
use crate::handlers::metadata::leadership;
use crate::ops::gauges::coordinated_groups;
use crate::ops::rates::{SAMPLE_EVERY, Sample};
use chronik_raft::METADATA_GROUP;

/// Seconds between the page's refreshes.
const REFRESH_SECONDS: u64 = 5;

/// Escapes text for HTML: group ids and client ids are arbitrary strings.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn ids(nodes: &[u64]) -> String {
    nodes.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

pub fn render(broker: &Broker) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html><html><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>Chronik node {}</title><style>{STYLE}</style></head><body>\
         <h1>Chronik &middot; node {}</h1>",
        broker.config.node_id, broker.config.node_id
    );
    nodes(broker, &mut page);
    rates(&broker.telemetry.rates.recent(), &mut page);
    topics(broker, &mut page);
    groups(broker, &mut page);
    page.push_str("</body></html>");
    page
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin-bottom:1.5em}\
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}\
th{background:#f0f0f0}.bad{color:#b00}.muted{color:#888}";

fn nodes(broker: &Broker, page: &mut String) {
    let metadata = broker.state.metadata();
    let controller = broker.leader_of(METADATA_GROUP);
    page.push_str("<h2>Nodes</h2><table><tr><th>node</th><th>Kafka</th><th>Raft</th><th>state</th></tr>");
    let mut members: Vec<u64> = metadata.nodes.keys().copied().collect();
    if members.is_empty() {
        members.push(broker.config.node_id);
    }
    for id in members {
        let kafka = metadata
            .brokers
            .get(&id)
            .map_or(String::new(), |b| format!("{}:{}", b.host, b.port));
        let raft = metadata.nodes.get(&id).map_or("", |n| n.raft_addr.as_str());
        let mut state = if broker.is_live(id) {
            "up".to_string()
        } else {
            "<span class=\"bad\">unreachable</span>".to_string()
        };
        if controller == Some(id) {
            state.push_str(", metadata leader");
        }
        if metadata.nodes.get(&id).is_some_and(|n| n.pending) {
            state.push_str(", not started yet");
        }
        let _ = write!(
            page,
            "<tr><td>{id}</td><td>{}</td><td>{}</td><td>{state}</td></tr>",
            esc(&kafka),
            esc(raft)
        );
    }
    page.push_str("</table>");
}

/// A partition's Raft group and its replicas.
type PartitionRow = (u64, Vec<u64>);

fn topics(broker: &Broker, page: &mut String) {
    let topics: Vec<(String, Vec<PartitionRow>)> = broker
        .state
        .metadata()
        .topics
        .iter()
        .map(|(name, t)| {
            let partitions = t.partitions.iter().map(|p| (p.group, p.replicas.clone())).collect();
            (name.clone(), partitions)
        })
        .collect();
    page.push_str(
        "<h2>Topics</h2><table><tr><th>topic</th><th>partition</th><th>leader</th><th>epoch</th>\
         <th>replicas</th><th>ISR</th><th>log size</th><th>high watermark</th></tr>",
    );
    let mut internal = Vec::new();
    for (name, partitions) in topics {
        if chronik_state::is_internal_topic(&name) {
            // Fifty rows of group offsets would bury the topics: one line below.
            internal.push((name, partitions));
            continue;
        }
        for (index, (group, replicas)) in partitions.into_iter().enumerate() {
            let (leader, isr) = leadership(broker, group);
            let (leader, epoch) = match leader {
                Some((id, epoch)) => (id.to_string(), epoch.to_string()),
                None => ("<span class=\"bad\">none</span>".to_string(), "-".to_string()),
            };
            // Size and high watermark are known where a replica is.
            let (size, high_watermark) = match broker.state.local_partition(&name, index as i32) {
                Ok(p) => (p.log().size_bytes().to_string(), p.high_watermark().to_string()),
                Err(_) => ("<span class=\"muted\">elsewhere</span>".into(), String::new()),
            };
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{index}</td><td>{leader}</td><td>{epoch}</td><td>{}</td><td>{}</td>\
                 <td>{size}</td><td>{high_watermark}</td></tr>",
                esc(&name),
                ids(&replicas),
                ids(&isr)
            );
        }
    }
    page.push_str("</table>");
    for (name, partitions) in internal {
        let leaderless = partitions
            .iter()
            .filter(|(group, _)| broker.leader_of(*group).is_none())
            .count();
        let bytes: u64 = (0..partitions.len())
            .filter_map(|index| broker.state.local_partition(&name, index as i32).ok())
            .map(|p| p.log().size_bytes())
            .sum();
        let _ = write!(
            page,
            "<p class=\"muted\">{}: {} partitions, {leaderless} without a leader, {bytes} bytes on this node.</p>",
            esc(&name),
            partitions.len()
        );
    }
}

fn groups(broker: &Broker, page: &mut String) {
    page.push_str(
        "<h2>Consumer groups</h2><p class=\"muted\">Those this node coordinates.</p>\
         <table><tr><th>group</th><th>members</th><th>topic</th><th>partition</th>\
         <th>committed</th><th>lag</th></tr>",
    );
    for (group, members) in coordinated_groups(broker) {
        let offsets = broker.state.offsets.offsets(&group);
        if offsets.is_empty() {
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{members}</td><td></td><td></td><td></td><td></td></tr>",
                esc(&group)
            );
        }
        for ((topic, index), committed) in offsets {
            let lag = broker.state.local_partition(&topic, index).map_or(String::new(), |p| {
                (p.high_watermark() - committed.offset).max(0).to_string()
            });
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{members}</td><td>{}</td><td>{index}</td><td>{}</td><td>{lag}</td></tr>",
                esc(&group),
                esc(&topic),
                committed.offset
            );
        }
    }
    page.push_str("</table>");
}

/// An inline SVG chart of records per second, produced and fetched.
fn rates(samples: &[Sample], page: &mut String) {
    const WIDTH: f64 = 600.0;
    const HEIGHT: f64 = 160.0;
    let minutes = samples.len() as f64 * SAMPLE_EVERY.as_secs_f64() / 60.0;
    let _ = write!(
        page,
        "<h2>Rates</h2><p>records/s over the last {minutes:.1} min: \
         <span style=\"color:#1565c0\">produced</span>, <span style=\"color:#ef6c00\">fetched</span></p>"
    );
    let peak = samples
        .iter()
        .map(|s| s.produced_records.max(s.fetched_records))
        .fold(1.0, f64::max);
    let _ = write!(
        page,
        "<svg width=\"{WIDTH}\" height=\"{}\" role=\"img\" aria-label=\"produce and fetch rates\">\
         <rect width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#fafafa\" stroke=\"#ccc\"/>",
        HEIGHT + 20.0
    );
    let step = WIDTH / (samples.len().max(2) - 1) as f64;
    for (pick, color) in [
        (
            Box::new(|s: &Sample| s.produced_records) as Box<dyn Fn(&Sample) -> f64>,
            "#1565c0",
        ),
        (Box::new(|s: &Sample| s.fetched_records), "#ef6c00"),
    ] {
        let points: Vec<String> = samples
            .iter()
            .enumerate()
            .map(|(i, s)| {
                format!(
                    "{:.1},{:.1}",
                    i as f64 * step,
                    HEIGHT - pick(s) / peak * (HEIGHT - 10.0)
                )
            })
            .collect();
        let _ = write!(
            page,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
    }
    let latest = samples.last().copied().unwrap_or_default();
    let _ = write!(
        page,
        "<text x=\"4\" y=\"{}\" font-size=\"12\">peak {peak:.0}/s; now {:.0} produced/s ({:.0} B/s), \
         {:.0} fetched/s ({:.0} B/s)</text></svg>",
        HEIGHT + 15.0,
        latest.produced_records,
        latest.produced_bytes,
        latest.fetched_records,
        latest.fetched_bytes
    );
}

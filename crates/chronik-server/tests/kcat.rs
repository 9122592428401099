//! kcat (librdkafka's command-line client, as Debian ships it) produces a
//! file and consumes it back.

mod common;

use std::process::{Command, Stdio};

use common::Broker;

fn kcat(args: &[&str]) -> std::process::Output {
    Command::new("kcat")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("kcat must be installed (apt-get install kcat); the README's test command does this")
}

#[test]
fn kcat_produces_a_file_and_consumes_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("broker"), &[]);
    let lines: Vec<String> = (0..5_000)
        .map(|i| format!("line {i} {}", "y".repeat(i % 100)))
        .collect();
    let file = dir.path().join("input.txt");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();

    let produced = kcat(&[
        "-b",
        &broker.addr,
        "-t",
        "kcat-topic",
        "-P",
        "-l",
        file.to_str().unwrap(),
    ]);
    assert!(
        produced.status.success(),
        "kcat -P failed: {}",
        String::from_utf8_lossy(&produced.stderr)
    );

    let consumed = kcat(&[
        "-b",
        &broker.addr,
        "-t",
        "kcat-topic",
        "-C",
        "-o",
        "beginning",
        "-e",
        "-q",
    ]);
    assert!(
        consumed.status.success(),
        "kcat -C failed: {}",
        String::from_utf8_lossy(&consumed.stderr)
    );
    let output = String::from_utf8(consumed.stdout).unwrap();
    let read: Vec<&str> = output.lines().collect();
    assert_eq!(read.len(), lines.len());
    assert!(
        read.iter().zip(&lines).all(|(a, b)| a == b),
        "kcat read back different lines"
    );

    let listing = kcat(&["-b", &broker.addr, "-L", "-t", "kcat-topic"]);
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("topic \"kcat-topic\" with 1 partitions"), "{listing}");
    assert!(listing.contains("leader 1"), "{listing}");
}

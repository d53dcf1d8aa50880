//! The `generate --anomalies` → `replay --json` round trip through the real binary: labels land
//! beside the events by default, and the report names the detector, the kind and the variant.

mod common;

use std::process::Command;

#[test]
fn generate_writes_labels_beside_the_events_and_replay_scores_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("plugin dir");
    std::fs::write(
        plugins.join("bot-detector.wasm"),
        common::wasm("bot-detector"),
    )
    .expect("copy plugin");
    let events = dir.path().join("ev.jsonl");
    let bin = env!("CARGO_BIN_EXE_clickwatch");
    let out = Command::new(bin)
        .args([
            "generate",
            "--to",
            "file",
            "--seed",
            "4",
            "--simulated-rate",
            "10",
        ])
        .args(["--anomalies", "bot/regular:2", "--warmup-minutes", "5"])
        .args(["--gap-minutes", "5", "--out"])
        .arg(&events)
        .output()
        .expect("run generate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let labels = std::fs::read_to_string(dir.path().join("ev.jsonl.labels.jsonl"))
        .expect("labels beside the events");
    assert_eq!(labels.matches("\"variant\":\"regular\"").count(), 2);

    let out = Command::new(bin)
        .args(["replay", "--json", "--events"])
        .arg(&events)
        .arg("--plugins")
        .arg(&plugins)
        .output()
        .expect("run replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let bot = report["kinds"]
        .as_array()
        .expect("kinds")
        .iter()
        .find(|k| k["detector"] == "bot-detector" && k["kind"] == "bot")
        .expect("bot-detector × bot row");
    assert_eq!(bot["variants"]["regular"][0], 2, "{bot}");
    assert!(bot["labels"].as_u64().unwrap_or(0) >= 2, "{bot}");
    assert!(report["hours"].as_f64().unwrap_or(0.0) > 0.3, "{report}");
}

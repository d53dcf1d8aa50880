//! Cost of crossing into a plugin: `process` on the counter fixture (which only reads the batch
//! length after the SDK builds its zero-copy view) for batches of 1000 generated events.
//! Prints ns per event per plugin, and the host-side cost of building the columnar batch once.
//!
//! Run: cargo xtask plugins && cargo bench -p clickwatch --bench boundary

use std::time::Instant;

use clickwatch::generator::{Generator, GeneratorSettings};
use clickwatch::plugin::{Limits, PluginModule, Runtime, batch::encode_batch};

fn main() {
    let dir = std::env::var_os("CLICKWATCH_WASM_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins")
        });
    let bytes = std::fs::read(dir.join("counter.wasm"))
        .expect("build the fixtures first: cargo xtask plugins");
    let runtime = Runtime::new(Limits::default()).expect("runtime");
    let module = PluginModule::load(&runtime, &bytes).expect("load");
    let mut instance = module.instantiate("{}").expect("init");
    let events = Generator::new(GeneratorSettings::default()).take(1_000);

    let rounds = 2_000;
    let started = Instant::now();
    let mut batch = encode_batch(&events);
    for _ in 0..rounds {
        batch = encode_batch(&events);
    }
    let encode_ns = started.elapsed().as_nanos() as f64 / (rounds as f64 * 1_000.0);

    for _ in 0..200 {
        instance.process(&batch).expect("warm-up");
    }
    let mut best = f64::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        for _ in 0..rounds {
            instance.process(&batch).expect("process");
        }
        best = best.min(started.elapsed().as_nanos() as f64 / (rounds as f64 * 1_000.0));
    }
    println!(
        "batch 1000 events, text table {} bytes, {} strings",
        batch.text.len(),
        batch.starts.len() - 1
    );
    println!(
        "crossing (process call, per event per plugin): {best:.1} ns  (best of 5 x {rounds} calls)"
    );
    println!(
        "building the columnar batch (host, once per batch for all plugins): {encode_ns:.1} ns per event"
    );
}

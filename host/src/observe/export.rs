//! The Prometheus (OpenMetrics text) exposition of [`Metrics`]: read at every scrape, so the
//! data path keeps its plain atomics and nothing is registered twice. Labels are bounded by
//! what the operator deploys (plugins, sinks, partitions, dead-letter reasons, detectors),
//! never by the data (no sessions, IPs or URLs).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::metrics::Metrics;

/// The text of one scrape.
pub fn render(metrics: &Arc<Metrics>) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Exported(Arc::clone(metrics))));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug)]
struct Exported(Arc<Metrics>);

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// A counter without labels (`_total` is added by the encoder).
fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(v).encode(m)
}

fn gauge<V>(e: &mut DescriptorEncoder, name: &str, help: &str, v: V) -> std::fmt::Result
where
    ConstGauge<V>: EncodeMetric,
{
    let m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(m)
}

/// A counter with one label, one sample per `(label value, count)`.
fn counter_by<'a>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: impl Iterator<Item = (&'a str, u64)>,
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in values {
        let labels = [(label, value)];
        ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Exported {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let m = &*self.0;
        let e = &mut e;
        counter(
            e,
            "clickwatch_events_in",
            "Valid events read from the source.",
            get(&m.events_in),
        )?;
        counter(
            e,
            "clickwatch_events_invalid",
            "Records refused as invalid (dead-lettered).",
            get(&m.events_invalid),
        )?;
        counter(
            e,
            "clickwatch_events_late",
            "Events behind the watermark (dead-lettered).",
            get(&m.events_late),
        )?;
        counter(
            e,
            "clickwatch_events_processed",
            "Events run through the plugins (once per key group they went through).",
            get(&m.events_processed),
        )?;
        counter(
            e,
            "clickwatch_events_duplicate",
            "Routed events a key group had applied already and dropped.",
            get(&m.events_duplicate),
        )?;
        counter(
            e,
            "clickwatch_routed_records",
            "Records written to the internal re-partitioning topics.",
            get(&m.routed_records),
        )?;
        counter(
            e,
            "clickwatch_routed_bytes",
            "Payload bytes written to the internal topics (before compression).",
            get(&m.routed_bytes),
        )?;
        counter(
            e,
            "clickwatch_raw_rows",
            "New rows in the raw store.",
            get(&m.raw_rows),
        )?;
        counter(
            e,
            "clickwatch_aggregate_rows",
            "Aggregate rows written.",
            get(&m.aggregate_rows),
        )?;
        counter(e, "clickwatch_alerts", "Alerts published.", get(&m.alerts))?;
        let by_detector = m.alerts_by_detector();
        counter_by(
            e,
            "clickwatch_detector_alerts",
            "Alerts published, by detector.",
            "detector",
            by_detector.iter().map(|(k, v)| (k.as_str(), *v)),
        )?;
        counter(
            e,
            "clickwatch_dead_letters",
            "Dead letters written.",
            get(&m.dead_letters),
        )?;
        let by_reason = m.dead_letters_by_reason();
        counter_by(
            e,
            "clickwatch_dead_letter_reasons",
            "Dead letters written, by reason.",
            "reason",
            by_reason.iter().map(|(k, v)| (k.as_str(), *v)),
        )?;
        counter(
            e,
            "clickwatch_sink_retries",
            "Sink writes retried after a transient failure (all sinks).",
            get(&m.sink_retries),
        )?;
        gauge(
            e,
            "clickwatch_sink_backlog",
            "Units of work queued in front of the sinks.",
            get(&m.sink_backlog),
        )?;
        gauge(
            e,
            "clickwatch_plugins_loaded",
            "Plugins loaded now.",
            get(&m.plugins_loaded),
        )?;
        counter(
            e,
            "clickwatch_plugin_loads",
            "Plugin loads and hot swaps.",
            get(&m.plugin_loads),
        )?;
        counter(
            e,
            "clickwatch_plugin_swaps",
            "Hot swaps: a new version replacing a live one (counted in the loads too).",
            get(&m.plugin_swaps),
        )?;
        counter(
            e,
            "clickwatch_plugin_rejections",
            "Plugin files refused.",
            get(&m.plugin_rejections),
        )?;
        gauge(
            e,
            "clickwatch_plugins_parked",
            "Plugin files waiting for another file of the same plugin name to go.",
            get(&m.plugins_parked),
        )?;
        counter(
            e,
            "clickwatch_checkpoints",
            "Checkpoints stored.",
            get(&m.checkpoints),
        )?;
        counter(
            e,
            "clickwatch_checkpoint_failures",
            "Checkpoints that could not be stored.",
            get(&m.checkpoint_failures),
        )?;
        counter(
            e,
            "clickwatch_output_lost",
            "Units of output lost for good (a write that cannot succeed, and no checkpoints to read the input again from).",
            get(&m.output_lost),
        )?;
        let last = m.last_checkpoint_ms.load(Ordering::Relaxed);
        if last > 0 {
            let age = (chrono::Utc::now().timestamp_millis() - last).max(0) as f64 / 1000.0;
            gauge(
                e,
                "clickwatch_last_checkpoint_age_seconds",
                "Seconds since the last checkpoint was stored.",
                age,
            )?;
        }
        counter(
            e,
            "clickwatch_partitions_assigned",
            "Partition assignments received.",
            get(&m.partitions_assigned),
        )?;
        gauge(
            e,
            "clickwatch_ready",
            "1 when the source is connected, the sinks open and the plugins loaded.",
            i64::from(m.ready.load(Ordering::Relaxed)),
        )?;
        self.watermarks(e)?;
        self.plugins(e)?;
        self.sinks(e)
    }
}

impl Exported {
    fn watermarks(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let watermarks = self.0.watermarks();
        let now = chrono::Utc::now().timestamp_millis();
        let mut m = e.encode_descriptor(
            "clickwatch_watermark_seconds",
            "Each task's watermark: event time (Unix seconds) up to which it has seen everything.",
            None,
            MetricType::Gauge,
        )?;
        for (task, w) in &watermarks {
            let labels = [("task", task.as_str())];
            ConstGauge::new(*w as f64 / 1000.0).encode(m.encode_family(&labels)?)?;
        }
        let mut m = e.encode_descriptor(
            "clickwatch_event_time_lag_seconds",
            "Wall clock minus each task's watermark.",
            None,
            MetricType::Gauge,
        )?;
        for (task, w) in &watermarks {
            let labels = [("task", task.as_str())];
            ConstGauge::new((now - *w) as f64 / 1000.0).encode(m.encode_family(&labels)?)?;
        }
        let mut m = e.encode_descriptor(
            "clickwatch_consumer_lag_records",
            "Records on the broker not yet read, per assigned partition (input and internal topics).",
            None,
            MetricType::Gauge,
        )?;
        for ((topic, partition), lag) in self.0.consumer_lag() {
            let partition = partition.to_string();
            let labels = [("topic", topic.as_str()), ("partition", partition.as_str())];
            ConstGauge::new(lag).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn plugins(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let all = self.0.plugins.all();
        type Field = fn(&crate::metrics::PluginMeter) -> u64;
        let counters: [(&str, &str, Field); 7] = [
            ("clickwatch_plugin_calls", "Calls into the plugin.", |p| {
                get(&p.calls)
            }),
            (
                "clickwatch_plugin_events",
                "Events the plugin processed.",
                |p| get(&p.events),
            ),
            (
                "clickwatch_plugin_alerts",
                "Alerts the plugin emitted.",
                |p| get(&p.alerts),
            ),
            ("clickwatch_plugin_rows", "Rows the plugin emitted.", |p| {
                get(&p.rows)
            }),
            (
                "clickwatch_plugin_refused",
                "Alerts and rows the host refused and dead-lettered (not fitting their table, over the output caps).",
                |p| get(&p.refused),
            ),
            (
                "clickwatch_plugin_restarts",
                "Instances restarted after a trap.",
                |p| get(&p.restarts),
            ),
            (
                "clickwatch_plugin_quarantines",
                "Times the plugin was quarantined.",
                |p| get(&p.quarantines),
            ),
        ];
        for (name, help, field) in &counters {
            let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
            for ((plugin, version), meter, _) in &all {
                let labels = [("plugin", plugin.as_str()), ("version", version.as_str())];
                ConstCounter::new(field(meter)).encode(m.encode_family(&labels)?)?;
            }
        }
        let mut m = e.encode_descriptor(
            "clickwatch_plugin_failures",
            "Failed calls, by kind (error, deadline, memory, panic, trap).",
            None,
            MetricType::Counter,
        )?;
        for ((plugin, version), meter, _) in &all {
            for (kind, n) in meter.failures() {
                let labels = [
                    ("plugin", plugin.as_str()),
                    ("version", version.as_str()),
                    ("kind", kind),
                ];
                ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
            }
        }
        let gauges: [(&str, &str, Field); 3] = [
            (
                "clickwatch_plugin_memory_bytes",
                "Linear memory its instances hold.",
                |p| get(&p.memory_bytes),
            ),
            (
                "clickwatch_plugin_memory_cap_bytes",
                "Memory cap of one instance.",
                |p| get(&p.memory_cap_bytes),
            ),
            (
                "clickwatch_plugin_snapshot_bytes",
                "Size of the latest snapshot.",
                |p| get(&p.snapshot_bytes),
            ),
        ];
        for (name, help, field) in &gauges {
            let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for ((plugin, version), meter, _) in &all {
                let labels = [("plugin", plugin.as_str()), ("version", version.as_str())];
                ConstGauge::new(field(meter)).encode(m.encode_family(&labels)?)?;
            }
        }
        let mut m = e.encode_descriptor(
            "clickwatch_plugin_live",
            "1 for the version running now, 0 for one swapped out or unloaded.",
            None,
            MetricType::Gauge,
        )?;
        for ((plugin, version), _, live) in &all {
            let labels = [("plugin", plugin.as_str()), ("version", version.as_str())];
            ConstGauge::new(i64::from(*live)).encode(m.encode_family(&labels)?)?;
        }
        let now = chrono::Utc::now().timestamp_millis();
        let mut m = e.encode_descriptor(
            "clickwatch_plugin_quarantined",
            "1 while an instance of the plugin is quarantined after repeated failures.",
            None,
            MetricType::Gauge,
        )?;
        for ((plugin, version), meter, _) in &all {
            let labels = [("plugin", plugin.as_str()), ("version", version.as_str())];
            let until = meter.quarantined_until_ms.load(Ordering::Relaxed);
            ConstGauge::new(i64::from(until > now)).encode(m.encode_family(&labels)?)?;
        }
        let mut m = e.encode_descriptor(
            "clickwatch_plugin_batch_seconds",
            "Wall time of each process call.",
            None,
            MetricType::Histogram,
        )?;
        for ((plugin, version), meter, _) in &all {
            let labels = [("plugin", plugin.as_str()), ("version", version.as_str())];
            meter.batch_seconds.encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn sinks(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let all = self.0.sinks.all();
        type Field = fn(&crate::metrics::SinkMeter) -> u64;
        let counters: [(&str, &str, Field); 3] = [
            (
                "clickwatch_sink_written",
                "Records the sink accepted.",
                |s| get(&s.written),
            ),
            (
                "clickwatch_sink_write_retries",
                "Writes retried after a transient failure.",
                |s| get(&s.retries),
            ),
            (
                "clickwatch_sink_rejected",
                "Records the sink refused for good (dead-lettered).",
                |s| get(&s.rejected),
            ),
        ];
        for (name, help, field) in &counters {
            let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (sink, meter) in &all {
                let labels = [("sink", *sink)];
                ConstCounter::new(field(meter)).encode(m.encode_family(&labels)?)?;
            }
        }
        let mut m = e.encode_descriptor(
            "clickwatch_sink_write_seconds",
            "Wall time of each successful write, retries included.",
            None,
            MetricType::Histogram,
        )?;
        for (sink, meter) in &all {
            let labels = [("sink", *sink)];
            meter.write_seconds.encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

//! Logging to stderr: env_logger's text lines, or one JSON object per line for cluster
//! log pipelines. `RUST_LOG` sets the level (default `info`).
//!
//! Invariant: `trace` records of the HTTP and TLS crates are dropped whatever RUST_LOG
//! says, because ureq's `trace` output is the raw wire, headers (and so `app_key`)
//! included.

use std::io::Write;

use log::kv::{self, Key, VisitSource};
use log::{Level, Log, Metadata, Record};

use crate::cli::LogFormat;

const WIRE_LEVEL_CRATES: [&str; 3] = ["ureq", "ureq_proto", "rustls"];

struct WithoutWireTrace(env_logger::Logger);

impl Log for WithoutWireTrace {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        let wire = WIRE_LEVEL_CRATES.iter().any(|name| {
            metadata.target() == *name || metadata.target().starts_with(&format!("{name}::"))
        });
        !(wire && metadata.level() == Level::Trace) && self.0.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// One log record as a JSON object: timestamp, level, target, message, and the
/// record's key-value fields (`course`, `status`, `outcome`, ...).
fn json_line(record: &Record<'_>) -> serde_json::Value {
    struct Fields(serde_json::Map<String, serde_json::Value>);
    impl<'kvs> VisitSource<'kvs> for Fields {
        fn visit_pair(&mut self, key: Key<'kvs>, value: kv::Value<'kvs>) -> Result<(), kv::Error> {
            let value = match value.to_u64() {
                Some(number) => serde_json::Value::from(number),
                None => serde_json::Value::from(value.to_string()),
            };
            self.0.insert(key.to_string(), value);
            Ok(())
        }
    }
    let mut fields = Fields(serde_json::Map::new());
    fields.0.insert(
        "timestamp".into(),
        humantime::format_rfc3339_millis(std::time::SystemTime::now())
            .to_string()
            .into(),
    );
    fields
        .0
        .insert("level".into(), record.level().as_str().into());
    fields.0.insert("target".into(), record.target().into());
    fields
        .0
        .insert("message".into(), record.args().to_string().into());
    let _ = record.key_values().visit(&mut fields);
    serde_json::Value::Object(fields.0)
}

pub fn init(format: LogFormat) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if format == LogFormat::Json {
        builder.format(|buffer, record| writeln!(buffer, "{}", json_line(record)));
    }
    let logger = builder.target(env_logger::Target::Stderr).build();
    log::set_max_level(logger.filter());
    // A second init (tests) keeps the first logger, which is fine.
    let _ = log::set_boxed_logger(Box::new(WithoutWireTrace(logger)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_the_message_and_fields() {
        let fields: &[(&str, &dyn kv::ToValue)] = &[("course", &"2019-fall-1"), ("removed", &3u64)];
        let record = Record::builder()
            .level(Level::Warn)
            .target("roster_sync::job")
            .args(format_args!("held back"))
            .key_values(&fields)
            .build();
        let line = json_line(&record);
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["message"], "held back");
        assert_eq!(line["course"], "2019-fall-1");
        assert_eq!(line["removed"], 3);
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}

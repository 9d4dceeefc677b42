//! Logging to stderr: env_logger's text lines, or one JSON object per line for cluster
//! log pipelines. `RUST_LOG` sets the level (default `info`).
//!
//! Invariant: `trace` records of the HTTP and TLS crates are dropped whatever RUST_LOG
//! says, because ureq's `trace` output is the raw wire, headers (and so `app_key`)
//! included.

use std::io::Write;

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

pub fn init(format: LogFormat) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if format == LogFormat::Json {
        builder.format(|buffer, record| {
            let line = serde_json::json!({
                "timestamp": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
                "level": record.level().as_str(),
                "target": record.target(),
                "message": record.args().to_string(),
            });
            writeln!(buffer, "{line}")
        });
    }
    let logger = builder.target(env_logger::Target::Stderr).build();
    log::set_max_level(logger.filter());
    // A second init (tests) keeps the first logger, which is fine.
    let _ = log::set_boxed_logger(Box::new(WithoutWireTrace(logger)));
}

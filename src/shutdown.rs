//! Cooperative shutdown on SIGTERM/SIGINT.
//!
//! Kubernetes sends SIGTERM before it kills a pod. The handler only sets a flag; the job
//! checks it before starting any new request or step, so a signal never interrupts an
//! atomic write or a commit half way, and the run ends with exit code 6.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// A shutdown flag raised by SIGTERM and SIGINT.
    pub fn on_signals() -> std::io::Result<Self> {
        let shutdown = Self::new();
        for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register(signal, Arc::clone(&shutdown.flag))?;
        }
        Ok(shutdown)
    }

    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    #[cfg(test)]
    pub fn request(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    /// Sleeps for `duration` unless a shutdown is requested first; returns whether the
    /// whole sleep happened.
    pub fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        loop {
            if self.requested() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
        }
    }
}

//! The end-to-end tests of the `roster-sync` binary: one test crate (one binary, `e2e`),
//! with the shared helpers in [`support`] and the SIS/HR emulator from the `sis-emulator`
//! workspace crate (`bench/emulator`), which the benchmark uses too.
//!
//! - [`offline`]: the bundled fixtures replayed from `file://` (rosters, report, audit
//!   repository, options, configuration errors).
//! - [`http`]: the live HTTP client against the emulator (headers, pagination, retries,
//!   credentials, politeness).
//! - [`safety`]: guards, pruning, drift, the lock, kills and signals, storage errors.
//! - [`audit_queries`]: `history` and `show` against what plain git says of the same
//!   repository.
//! - [`packing`]: packing the audit repository, also when killed.
//! - [`observe`]: JSON logs, metrics, the Pushgateway and the termination-log summary.
//! - [`golden`]: the commit message, metrics text and summary line of the fixture run
//!   against `tests/e2e/golden/` (`UPDATE_GOLDEN=1` rewrites them).
//! - [`hub`]: the binary with `--hub-api` against a real JupyterHub, down to what a
//!   `group_overrides` spawn gives; [`hub_groups`]: the groups sync module against it
//!   ([`jupyterhub`] starts the hub from the pinned venv of `.ci/hub-venv.sh`).
//!
//! - [`hostile`]: a work tree or foreign repository as the audit repository, the
//!   machine's git configuration, configuration checked before fetching, identifiers
//!   that would change a URL or a replay path, rejected command lines, durability.
//!
//! Run one module with `cargo test --test e2e offline::`, one test by its name.

mod jupyterhub;
mod support;

mod audit_queries;
mod canvas;
mod golden;
mod hostile;
mod http;
mod hub;
mod hub_groups;
mod observe;
mod offline;
mod packing;
mod safety;

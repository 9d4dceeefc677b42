//! Exit codes: what a run's process exit status means, and which one wins when several
//! apply.
//!
//! Invariant: [`Exit`] is declared in precedence order (the first that applies wins), so
//! `min` over the exits that apply is the run's exit, and every caller (the job, the
//! read-only commands, `main`, the help text) shares one definition of each code.

use std::fmt::Write as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Exit {
    /// A configuration or usage error: nothing was fetched, written or committed.
    Config,
    /// The output directory or the audit repository could not be written.
    Storage,
    /// Another run holds the lock.
    Locked,
    /// Stopped by SIGTERM or SIGINT.
    Interrupted,
    /// At least one course was held back by a guard.
    Guarded,
    /// At least one course failed to fetch (the others were applied); for `verify`, at
    /// least one file differs.
    Failed,
    /// Rosters and audit applied, but the JupyterHub groups could not all be brought up
    /// to date.
    Hub,
    Success,
}

impl Exit {
    /// Every exit, in precedence order.
    pub const ALL: [Exit; 8] = [
        Exit::Config,
        Exit::Storage,
        Exit::Locked,
        Exit::Interrupted,
        Exit::Guarded,
        Exit::Failed,
        Exit::Hub,
        Exit::Success,
    ];

    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failed => 1,
            Exit::Config => 2,
            Exit::Guarded => 3,
            Exit::Locked => 4,
            Exit::Storage => 5,
            Exit::Interrupted => 6,
            Exit::Hub => 7,
        }
    }

    /// What the code means for `sync` and `plan`.
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Success => "every course synced (with or without changes)",
            Exit::Failed => "at least one course failed to fetch (the others were applied)",
            Exit::Config => "configuration or usage error: nothing fetched, written or committed",
            Exit::Guarded => "at least one course held back by a guard",
            Exit::Locked => "another run holds the lock",
            Exit::Storage => {
                "storage error: output directory or audit repository could not be written"
            }
            Exit::Interrupted => {
                "stopped by SIGTERM or SIGINT: no new work started, state consistent, safe to rerun"
            }
            Exit::Hub => {
                "rosters and audit applied, but the JupyterHub groups could not all be brought \
                 up to date; the next run retries"
            }
        }
    }

    /// The exit of a run to which both `self` and `other` apply.
    pub fn and(self, other: Exit) -> Exit {
        self.min(other)
    }

    /// An "Exit codes:" help section listing `codes` with what each means here, by code.
    pub fn help(codes: &[(Exit, &str)]) -> String {
        let mut codes = codes.to_vec();
        codes.sort_by_key(|(exit, _)| exit.code());
        let mut text = String::from("Exit codes (when several apply, the first in ");
        let order: Vec<String> = Exit::ALL
            .iter()
            .filter(|exit| codes.iter().any(|(listed, _)| listed == *exit))
            .map(|exit| exit.code().to_string())
            .collect();
        let _ = writeln!(text, "the order {} wins):", order.join(", "));
        for (exit, meaning) in codes {
            let _ = writeln!(text, "  {}  {meaning}", exit.code());
        }
        text
    }

    /// The help section of the job commands, with the canonical meanings.
    pub fn job_help() -> String {
        Exit::help(&Exit::ALL.map(|exit| (exit, exit.meaning())))
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_listed_exit_wins() {
        assert_eq!(Exit::Success.and(Exit::Failed), Exit::Failed);
        assert_eq!(Exit::Failed.and(Exit::Guarded), Exit::Guarded);
        assert_eq!(Exit::Hub.and(Exit::Failed), Exit::Failed);
        assert_eq!(Exit::Success.and(Exit::Hub), Exit::Hub);
        assert_eq!(Exit::Interrupted.and(Exit::Guarded), Exit::Interrupted);
        assert_eq!(Exit::Locked.and(Exit::Interrupted), Exit::Locked);
        assert_eq!(Exit::Storage.and(Exit::Locked), Exit::Storage);
        assert_eq!(Exit::Config.and(Exit::Storage), Exit::Config);
        let codes: Vec<u8> = Exit::ALL.iter().map(|exit| exit.code()).collect();
        assert_eq!(codes, [2, 5, 4, 6, 3, 1, 7, 0]);
    }

    #[test]
    fn the_readme_table_has_every_code_and_the_precedence() {
        let readme = include_str!("../README.md");
        for exit in Exit::ALL {
            assert!(
                readme.contains(&format!("\n| {} | ", exit.code())),
                "README's exit-code table lacks {}",
                exit.code()
            );
        }
        let order: Vec<String> = Exit::ALL
            .iter()
            .map(|exit| exit.code().to_string())
            .collect();
        assert!(
            readme.contains(&format!("the first of {} wins", order.join(", "))),
            "README states the precedence {order:?}"
        );
    }

    #[test]
    fn help_lists_codes_in_numeric_order_and_the_precedence() {
        let help = Exit::help(&[
            (Exit::Success, "same"),
            (Exit::Storage, "unreadable"),
            (Exit::Failed, "differs"),
        ]);
        assert_eq!(
            help,
            "Exit codes (when several apply, the first in the order 5, 1, 0 wins):\n  0  same\n  1  differs\n  5  unreadable\n"
        );
    }
}

//! Configuration: the values file gives the courses; the command line gives the settings.
//!
//! Raw input is validated here in one step, so the rest of the job only sees a
//! [`Settings`] and a list of [`Course`]s that are known to be well formed. A course key
//! is the only thing from the values file that reaches a file name or a URL, and only
//! after it matched `^\d{4}-(spring|summer|fall)-\d{1,6}$`.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml::Value;

use crate::cli::{LogFormat, Options};
use crate::plan::GuardPolicy;
use crate::source::RetryPolicy;

/// Where profiles are looked for when `--profiles-key` is not given, in this order.
pub const DEFAULT_PROFILE_PATHS: [&str; 4] = [
    "custom.profiles",
    "jupyterhub.custom.profiles",
    "hub.extraConfigMap.profiles",
    "jupyterhub.hub.extraConfigMap.profiles",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Season {
    Spring,
    Summer,
    Fall,
}

impl Season {
    fn parse(text: &str) -> Option<Season> {
        match text {
            "spring" => Some(Season::Spring),
            "summer" => Some(Season::Summer),
            "fall" => Some(Season::Fall),
            _ => None,
        }
    }

    fn digit(self) -> u32 {
        match self {
            Season::Spring => 2,
            Season::Summer => 5,
            Season::Fall => 8,
        }
    }
}

/// The SIS term id: century digit, two-digit year, season digit (2019 summer → 2195).
pub fn term_id(year: u32, season: Season) -> u32 {
    1000 * (year / 100 - 18) + 10 * (year % 100) + season.digit()
}

/// A configured course profile whose key names a SIS class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Course {
    /// The profile key exactly as written; roster file names derive from it.
    pub key: String,
    pub term_id: u32,
    /// The class number as written, leading zeros kept.
    pub class_number: String,
}

/// What a profile key is.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyKind {
    Course(Course),
    /// Not shaped like a course key (a `users:` profile, say): skipped.
    NotACourse,
    /// Shaped like a course key, but its year has no SIS term id.
    YearOutOfRange,
}

impl Course {
    pub fn classify(key: &str) -> KeyKind {
        let mut parts = key.splitn(3, '-');
        let (Some(year), Some(season), Some(class_number)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return KeyKind::NotACourse;
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        let season = Season::parse(season);
        if year.len() != 4
            || !all_digits(year)
            || season.is_none()
            || class_number.is_empty()
            || class_number.len() > 6
            || !all_digits(class_number)
        {
            return KeyKind::NotACourse;
        }
        let year: u32 = year.parse().expect("four ASCII digits");
        if !(1900..=2099).contains(&year) {
            return KeyKind::YearOutOfRange;
        }
        KeyKind::Course(Course {
            key: key.to_string(),
            term_id: term_id(year, season.expect("checked above")),
            class_number: class_number.to_string(),
        })
    }
}

/// A problem with the configuration: nothing is fetched, written or committed (exit 2).
#[derive(Debug)]
pub enum ConfigError {
    ValuesMissing {
        path: PathBuf,
    },
    ValuesUnreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    ValuesSyntax {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    ProfilesNotMapping {
        path: PathBuf,
        key_path: String,
    },
    CourseYear {
        path: PathBuf,
        key: String,
    },
    ApiBase {
        value: String,
    },
    Timeout {
        value: f64,
    },
    Credentials(String),
    Usage(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ValuesMissing { path } => write!(
                f,
                "values file {} does not exist; mount the hub values (or pass --values / \
                 ROSTER_SYNC_VALUES)",
                path.display()
            ),
            ConfigError::ValuesUnreadable { path, error } => {
                write!(f, "values file {} cannot be read: {error}", path.display())
            }
            ConfigError::ValuesSyntax {
                path,
                line: Some(line),
                message,
            } => write!(
                f,
                "values file {} is not valid YAML (line {line}): {message}",
                path.display()
            ),
            ConfigError::ValuesSyntax {
                path,
                line: None,
                message,
            } => write!(
                f,
                "values file {} is not valid YAML: {message}",
                path.display()
            ),
            ConfigError::ProfilesNotMapping { path, key_path } => write!(
                f,
                "values file {}: {key_path} must be a mapping of profile names to settings",
                path.display()
            ),
            ConfigError::CourseYear { path, key } => write!(
                f,
                "values file {}: course key {key} has a year outside 1900-2099, which has \
                 no SIS term id",
                path.display()
            ),
            ConfigError::ApiBase { value } => write!(
                f,
                "--api-base {value:?} must start with https://, http:// or file://"
            ),
            ConfigError::Timeout { value } => {
                write!(f, "--timeout {value} must be a positive number of seconds")
            }
            ConfigError::Credentials(message) | ConfigError::Usage(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The courses of a values file, in file order.
#[derive(Debug, Default)]
pub struct Profiles {
    pub courses: Vec<Course>,
    /// The key path the profiles were read from; `None` when no path exists.
    pub key_path: Option<String>,
}

/// Reads the course profiles from a values file.
pub fn load_profiles(path: &Path, profiles_key: Option<&str>) -> Result<Profiles, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => ConfigError::ValuesMissing {
            path: path.to_path_buf(),
        },
        _ => ConfigError::ValuesUnreadable {
            path: path.to_path_buf(),
            error,
        },
    })?;
    parse_profiles(&text, path, profiles_key)
}

fn parse_profiles(
    text: &str,
    path: &Path,
    profiles_key: Option<&str>,
) -> Result<Profiles, ConfigError> {
    let document: Value =
        serde_yaml::from_str(text).map_err(|error| ConfigError::ValuesSyntax {
            path: path.to_path_buf(),
            line: error.location().map(|location| location.line()),
            message: error.to_string(),
        })?;
    let candidates: Vec<&str> = match profiles_key {
        Some(key) => vec![key],
        None => DEFAULT_PROFILE_PATHS.to_vec(),
    };
    let Some((key_path, profiles)) = candidates
        .into_iter()
        .find_map(|key_path| lookup(&document, key_path).map(|value| (key_path, value)))
    else {
        return Ok(Profiles::default());
    };
    let mapping = match profiles {
        Value::Null => return Ok(Profiles::default().with_key_path(key_path)),
        Value::Mapping(mapping) => mapping,
        _ => {
            return Err(ConfigError::ProfilesNotMapping {
                path: path.to_path_buf(),
                key_path: key_path.to_string(),
            });
        }
    };
    let mut courses = Vec::new();
    for key in mapping.keys() {
        let Some(key) = key.as_str() else {
            log::debug!("skipping a profile whose name is not a string");
            continue;
        };
        match Course::classify(key) {
            KeyKind::Course(course) => courses.push(course),
            KeyKind::NotACourse => log::debug!("profile {key:?} is not a course key; skipped"),
            KeyKind::YearOutOfRange => {
                return Err(ConfigError::CourseYear {
                    path: path.to_path_buf(),
                    key: key.to_string(),
                });
            }
        }
    }
    Ok(Profiles {
        courses,
        key_path: Some(key_path.to_string()),
    })
}

impl Profiles {
    fn with_key_path(mut self, key_path: &str) -> Self {
        self.key_path = Some(key_path.to_string());
        self
    }
}

/// Follows a dotted key path through nested mappings.
fn lookup<'a>(document: &'a Value, key_path: &str) -> Option<&'a Value> {
    key_path
        .split('.')
        .try_fold(document, |value, key| value.as_mapping()?.get(key))
}

/// Where the answers come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceConfig {
    Http { base_url: String },
    Replay { dir: PathBuf },
}

/// Author and committer of audit commits.
#[derive(Clone, Debug)]
pub struct Author {
    pub name: String,
    pub email: String,
}

/// Validated settings for a run.
#[derive(Clone, Debug)]
pub struct Settings {
    pub values: PathBuf,
    pub profiles_key: Option<String>,
    pub output_dir: PathBuf,
    pub audit_repo: PathBuf,
    pub source: SourceConfig,
    pub concurrency: usize,
    pub include_waitlisted: bool,
    pub excluded_roles: BTreeSet<String>,
    pub guard: GuardPolicy,
    pub prune: bool,
    pub dry_run: bool,
    pub retry: RetryPolicy,
    pub timeout: Duration,
    pub report: Option<PathBuf>,
    pub log_format: LogFormat,
    pub author: Author,
}

impl Settings {
    /// Validates the command line. `approve_env` is `ROSTER_SYNC_APPROVE`, whose keys are
    /// added to the `--approve` flags.
    pub fn from_options(
        options: &Options,
        approve_env: Option<&str>,
    ) -> Result<Settings, ConfigError> {
        let source = if let Some(dir) = options.api_base.strip_prefix("file://") {
            SourceConfig::Replay { dir: dir.into() }
        } else if options.api_base.starts_with("https://")
            || options.api_base.starts_with("http://")
        {
            SourceConfig::Http {
                base_url: options.api_base.trim_end_matches('/').to_string(),
            }
        } else {
            return Err(ConfigError::ApiBase {
                value: options.api_base.clone(),
            });
        };
        if !(options.timeout.is_finite() && options.timeout > 0.0) {
            return Err(ConfigError::Timeout {
                value: options.timeout,
            });
        }
        let approvals = options
            .approve
            .iter()
            .map(String::as_str)
            .chain(approve_env.unwrap_or("").split(','))
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .map(str::to_string)
            .collect();
        let excluded_roles = options
            .exclude_roles
            .iter()
            .map(|role| role.trim().to_string())
            .filter(|role| !role.is_empty())
            .collect();
        Ok(Settings {
            values: options.values.clone(),
            profiles_key: options.profiles_key.clone(),
            output_dir: options.output_dir.clone(),
            audit_repo: options.audit_repo.clone(),
            source,
            concurrency: usize::from(options.concurrency),
            include_waitlisted: options.include_waitlisted,
            excluded_roles,
            guard: GuardPolicy {
                max_removal_percent: options.max_removal_percent,
                min_size: options.guard_min_size,
                approvals,
            },
            prune: options.prune,
            dry_run: options.dry_run,
            retry: RetryPolicy {
                attempts: options.retries.saturating_add(1),
                ..RetryPolicy::default()
            },
            timeout: Duration::from_secs_f64(options.timeout),
            report: options.report.clone(),
            log_format: options.log_format,
            author: Author {
                name: options.author_name.clone(),
                email: options.author_email.clone(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, key: Option<&str>) -> Result<Profiles, ConfigError> {
        parse_profiles(text, Path::new("values.yaml"), key)
    }

    fn keys(profiles: &Profiles) -> Vec<&str> {
        profiles.courses.iter().map(|c| c.key.as_str()).collect()
    }

    #[test]
    fn term_ids_follow_the_sis_formula() {
        assert_eq!(term_id(2019, Season::Summer), 2195);
        assert_eq!(term_id(2021, Season::Fall), 2218);
        assert_eq!(term_id(2017, Season::Spring), 2172);
        assert_eq!(term_id(1999, Season::Fall), 1998);
    }

    #[test]
    fn course_keys_are_parsed_strictly() {
        let KeyKind::Course(course) = Course::classify("2019-fall-023970") else {
            panic!("a course key");
        };
        assert_eq!(course.term_id, 2198);
        assert_eq!(course.class_number, "023970", "leading zeros kept");
        for key in [
            "astr-128-admins",
            "2019-fall-1/../../x",
            "2019-Fall-1",
            "2019-winter-1",
            "19-fall-1",
            "2019-fall-",
            "2019-fall-1234567",
            "2019-fall-12a",
            "2019-fall-١٢",
            "issue-3397",
        ] {
            assert_eq!(Course::classify(key), KeyKind::NotACourse, "{key}");
        }
        assert_eq!(Course::classify("1799-fall-1"), KeyKind::YearOutOfRange);
    }

    #[test]
    fn each_default_key_path_is_found_in_order() {
        for path in DEFAULT_PROFILE_PATHS {
            let mut yaml = String::new();
            for (depth, part) in path.split('.').enumerate() {
                yaml += &format!("{}{part}:\n", "  ".repeat(depth));
            }
            yaml += &format!(
                "{}2019-fall-1: {{}}\n",
                "  ".repeat(path.split('.').count())
            );
            let profiles = parse(&yaml, None).unwrap();
            assert_eq!(keys(&profiles), ["2019-fall-1"], "{path}");
            assert_eq!(profiles.key_path.as_deref(), Some(path));
        }
        let both = "custom:\n  profiles:\n    2019-fall-1: {}\n\
                    jupyterhub:\n  custom:\n    profiles:\n      2019-fall-2: {}\n";
        assert_eq!(keys(&parse(both, None).unwrap()), ["2019-fall-1"]);
        assert_eq!(
            keys(&parse(both, Some("jupyterhub.custom.profiles")).unwrap()),
            ["2019-fall-2"]
        );
    }

    #[test]
    fn null_empty_and_absent_profiles_mean_no_courses() {
        for yaml in [
            "custom:\n  profiles:\n",
            "custom:\n  profiles: {}\n",
            "hub: {}\n",
            "",
        ] {
            assert!(parse(yaml, None).unwrap().courses.is_empty(), "{yaml:?}");
        }
        assert_eq!(
            parse("custom:\n  profiles:\n", None)
                .unwrap()
                .key_path
                .as_deref(),
            Some("custom.profiles")
        );
    }

    #[test]
    fn non_course_keys_are_skipped_and_order_kept() {
        let yaml = "custom:\n  profiles:\n    2021-fall-32244: {mem_limit: 4096M}\n    \
                    astr-128-admins:\n      users: [a, b]\n    2019-fall-23970: ~\n    7: {}\n";
        assert_eq!(
            keys(&parse(yaml, None).unwrap()),
            ["2021-fall-32244", "2019-fall-23970"]
        );
    }

    #[test]
    fn a_non_mapping_profiles_value_is_an_error() {
        let error = parse("custom:\n  profiles: [2019-fall-1]\n", None).unwrap_err();
        assert!(matches!(error, ConfigError::ProfilesNotMapping { .. }));
        assert!(error.to_string().contains("custom.profiles"));
    }

    #[test]
    fn syntax_errors_name_the_file_and_line() {
        let error = parse("custom:\n  profiles:\n    a: [\n  b: c\n", None).unwrap_err();
        let ConfigError::ValuesSyntax { line, .. } = &error else {
            panic!("{error:?}");
        };
        assert!(line.is_some());
        assert!(error.to_string().contains("values.yaml"));
        assert!(error.to_string().contains("line"));
    }

    #[test]
    fn a_missing_values_file_is_an_error() {
        let error = load_profiles(Path::new("/nonexistent/values.yaml"), None).unwrap_err();
        assert!(matches!(error, ConfigError::ValuesMissing { .. }));
        assert!(error.to_string().contains("/nonexistent/values.yaml"));
    }
}

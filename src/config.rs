//! Configuration: the values file gives the courses; the command line gives the settings.
//!
//! Raw input is validated here in one step ([`Settings::from_options`],
//! [`load_profiles`]), and `check` uses the same constructors as `sync`, so the rest of
//! the job only sees [`Settings`] and [`Course`]s that are known to be well formed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml::Value;

use crate::audit::Author;
use crate::canvas::CanvasOptions;
use crate::cli::{CanvasIdentity, JobOptions};
use crate::course::{Course, KeyKind};
use crate::fetch::FetchOptions;
use crate::guard::GuardPolicy;
use crate::hub::plan::InvalidTemplate;
use crate::hub::{GroupTemplate, HubConfig, HubToken, MissingToken};
use crate::source::canvas::{CanvasBase, MissingCanvasToken};
use crate::source::canvas_api::{Identity, Types};
use crate::source::credentials::{Credentials, MissingCredentials};
use crate::source::http::{BaseUrl, HttpTransport, InvalidBaseUrl};
use crate::source::replay::ReplayTransport;
use crate::source::{RetryPolicy, Transport};

/// Where profiles are looked for when `--profiles-key` is not given, in this order.
pub const DEFAULT_PROFILE_PATHS: [&str; 4] = [
    "custom.profiles",
    "jupyterhub.custom.profiles",
    "hub.extraConfigMap.profiles",
    "jupyterhub.hub.extraConfigMap.profiles",
];

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
    ApiBase(InvalidBaseUrl),
    ValuesTooLarge {
        path: PathBuf,
    },
    ValuesTooDeep {
        path: PathBuf,
        line: usize,
    },
    ValuesMerge {
        path: PathBuf,
        message: String,
    },
    HubApi(InvalidBaseUrl),
    HubGroupTemplate(InvalidTemplate),
    HubToken(MissingToken),
    Timeout {
        value: f64,
    },
    Author {
        option: &'static str,
        reason: &'static str,
    },
    Credentials(MissingCredentials),
    /// clap rejected the command line; the message names the argument, not its value.
    Usage(String),
    CanvasApi(InvalidBaseUrl),
    /// Canvas courses are configured, but not where to ask for them.
    CanvasApiMissing {
        path: PathBuf,
    },
    CanvasInstructorTypes {
        value: String,
    },
    CanvasToken(MissingCanvasToken),
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
            ConfigError::ValuesTooLarge { path } => write!(
                f,
                "values file {} is larger than {} MiB, far more than any hub's values; \
                 check that --values names the helm values file",
                path.display(),
                MAX_VALUES_BYTES >> 20
            ),
            ConfigError::ValuesTooDeep { path, line } => write!(
                f,
                "values file {}: collections are nested more than {MAX_VALUES_DEPTH} deep \
                 (line {line}); no hub configuration needs that, so the file is refused",
                path.display()
            ),
            ConfigError::ValuesMerge { path, message } => write!(
                f,
                "values file {}: a YAML merge key (<<) cannot be applied: {message}",
                path.display()
            ),
            ConfigError::Timeout { value } => write!(
                f,
                "--timeout {value} must be a number of seconds above 0 and at most \
                 {MAX_TIMEOUT_SECS}"
            ),
            ConfigError::Author { option, reason } => write!(
                f,
                "{option} {reason}; audit commits need a name and an e-mail address \
                 without line breaks, control characters or angle brackets"
            ),
            ConfigError::ApiBase(error) => write!(
                f,
                "--api-base {error} (or file://DIR to replay recorded answers)"
            ),
            ConfigError::HubApi(error) => write!(f, "--hub-api {error}"),
            ConfigError::HubGroupTemplate(error) => write!(f, "--hub-group-template: {error}"),
            ConfigError::HubToken(missing) => missing.fmt(f),
            ConfigError::Credentials(missing) => missing.fmt(f),
            ConfigError::Usage(message) => f.write_str(message),
            ConfigError::CanvasApi(error) => write!(
                f,
                "--canvas-api {error} (or file://DIR to replay recorded answers)"
            ),
            ConfigError::CanvasApiMissing { path } => write!(
                f,
                "values file {} has canvas-{{id}} course keys, but --canvas-api \
                 (ROSTER_SYNC_CANVAS_API) is not set",
                path.display()
            ),
            ConfigError::CanvasInstructorTypes { value } => write!(
                f,
                "--canvas-instructor-types {value:?}: expected a comma-separated list of \
                 {}",
                CANVAS_INSTRUCTOR_TYPES.join(", ")
            ),
            ConfigError::CanvasToken(missing) => missing.fmt(f),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The largest values file read. A rendered z2jh values file is tens to hundreds of
/// KB; parsing a file of small mappings takes up to 45 times its size in memory, so this
/// keeps the parse under 50 MiB, well inside the job's 128 Mi limit.
pub const MAX_VALUES_BYTES: u64 = 1 << 20;

/// The deepest nesting of mappings and sequences accepted in a values file. z2jh's own
/// values nest about ten deep; the YAML scanner's cost grows with the square of the
/// nesting of flow collections, so a deeper file is refused before it is parsed.
pub const MAX_VALUES_DEPTH: usize = 64;

/// The longest `--timeout` accepted: a request that needs more than an hour has failed.
pub const MAX_TIMEOUT_SECS: f64 = 3600.0;

/// The courses of a values file, in file order.
#[derive(Debug, Default)]
pub struct Profiles {
    pub courses: Vec<Course>,
    /// Keys shaped like course keys whose year has no SIS term id (`0000-fall-1`,
    /// `2100-fall-1`): `sync` fails each of them alone and keeps its files; `check`
    /// refuses them.
    pub out_of_range: Vec<String>,
    /// The key path the profiles were read from; `None` when no path exists.
    pub key_path: Option<String>,
}

/// Reads the course profiles from a values file, refusing a course key whose year has no
/// term id (for `check`).
pub fn load_profiles(path: &Path, profiles_key: Option<&str>) -> Result<Profiles, ConfigError> {
    let profiles = read_profiles(path, profiles_key)?;
    match profiles.out_of_range.first() {
        Some(key) => Err(ConfigError::CourseYear {
            path: path.to_path_buf(),
            key: key.clone(),
        }),
        None => Ok(profiles),
    }
}

/// Reads the course profiles from a values file; keys whose year has no term id are
/// listed in [`Profiles::out_of_range`], not refused.
pub fn read_profiles(path: &Path, profiles_key: Option<&str>) -> Result<Profiles, ConfigError> {
    use std::io::Read;
    let unreadable = |error: std::io::Error| match error.kind() {
        std::io::ErrorKind::NotFound => ConfigError::ValuesMissing {
            path: path.to_path_buf(),
        },
        _ => ConfigError::ValuesUnreadable {
            path: path.to_path_buf(),
            error,
        },
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(unreadable)?
        .take(MAX_VALUES_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_VALUES_BYTES {
        return Err(ConfigError::ValuesTooLarge {
            path: path.to_path_buf(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        unreadable(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "it is not UTF-8 text",
        ))
    })?;
    parse_profiles(&text, path, profiles_key)
}

/// Reads the course profiles from the text of a values file; `path` is only named in
/// errors. Public for the fuzz targets.
pub fn parse_profiles(
    text: &str,
    path: &Path,
    profiles_key: Option<&str>,
) -> Result<Profiles, ConfigError> {
    if let Some(line) = depth::too_deep(text.as_bytes(), MAX_VALUES_DEPTH) {
        return Err(ConfigError::ValuesTooDeep {
            path: path.to_path_buf(),
            line,
        });
    }
    let mut document: Value =
        serde_yaml::from_str(text).map_err(|error| ConfigError::ValuesSyntax {
            path: path.to_path_buf(),
            line: error.location().map(|location| location.line()),
            message: error.to_string(),
        })?;
    // `<<: *common` merges a mapping into another, as helm and YAML 1.1 do.
    document
        .apply_merge()
        .map_err(|error| ConfigError::ValuesMerge {
            path: path.to_path_buf(),
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
    let mut out_of_range = Vec::new();
    for key in mapping.keys() {
        let Some(key) = key.as_str() else {
            log::debug!("skipping a profile whose name is not a string");
            continue;
        };
        match Course::classify(key) {
            KeyKind::Course(course) => courses.push(course),
            KeyKind::NotACourse if looks_like_a_course_key(key) => log::warn!(
                "values file {}: profile {key:?} looks like a course key but is not one \
                 (YEAR-spring|summer|fall-CLASSNUMBER, lower case, no spaces); it is not \
                 synced",
                path.display()
            ),
            KeyKind::NotACourse => log::debug!("profile {key:?} is not a course key; skipped"),
            KeyKind::YearOutOfRange => out_of_range.push(key.to_string()),
        }
    }
    Ok(Profiles {
        courses,
        out_of_range,
        key_path: Some(key_path.to_string()),
    })
}

/// A key that would be a course key but for case, white space or separators
/// (`2020-Spring-14552`, `2020_fall_1`, `2020-fall-1 `): most likely a typo, so it is
/// worth a warning rather than a debug line.
fn looks_like_a_course_key(key: &str) -> bool {
    if Course::classify(key) != KeyKind::NotACourse {
        return false;
    }
    let normal: String = key
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c == '_' || c == ' ' { '-' } else { c })
        .collect();
    (normal != key && matches!(Course::classify(&normal), KeyKind::Course(_)))
        || (key.len() > 5
            && key.as_bytes()[..4].iter().all(u8::is_ascii_digit)
            && key.as_bytes()[4] == b'-'
            && ["spring", "summer", "fall"]
                .iter()
                .any(|season| key.to_ascii_lowercase().contains(season)))
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

/// An author name or e-mail that git can record: libgit2 refuses empty values and angle
/// brackets only when it commits (after the whole fetch), and writes a line break into
/// the commit header, which `git fsck` rejects.
fn checked_author(option: &'static str, value: &str) -> Result<String, ConfigError> {
    let reason = if value.trim().is_empty() {
        "is empty"
    } else if value.chars().any(char::is_control) {
        "holds a line break or another control character"
    } else if value.contains(['<', '>']) {
        "holds an angle bracket (< or >)"
    } else {
        return Ok(value.trim().to_string());
    };
    Err(ConfigError::Author { option, reason })
}

/// Where the answers come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceConfig {
    Http { base: BaseUrl },
    Replay { dir: PathBuf },
}

impl SourceConfig {
    /// The transport that asks this source, each request taking at most `timeout`; live
    /// HTTP needs every SIS/HR credential from the environment.
    pub fn connect(&self, timeout: Duration) -> Result<Box<dyn Transport>, ConfigError> {
        Ok(match self {
            SourceConfig::Replay { dir } => Box::new(ReplayTransport::new(dir.clone())),
            SourceConfig::Http { base } => {
                let credentials = Credentials::from_env().map_err(ConfigError::Credentials)?;
                Box::new(HttpTransport::new(base, credentials, timeout))
            }
        })
    }

    pub fn parse(api_base: &str) -> Result<SourceConfig, ConfigError> {
        match api_base.strip_prefix("file://") {
            Some(dir) => Ok(SourceConfig::Replay { dir: dir.into() }),
            None => Ok(SourceConfig::Http {
                base: BaseUrl::parse(api_base).map_err(ConfigError::ApiBase)?,
            }),
        }
    }
}

/// The Canvas enrollment types `--canvas-instructor-types` may name.
pub const CANVAS_INSTRUCTOR_TYPES: [&str; 4] = [
    "TeacherEnrollment",
    "TaEnrollment",
    "DesignerEnrollment",
    "ObserverEnrollment",
];

/// Where and how Canvas courses are fetched.
#[derive(Clone, Debug)]
pub struct CanvasSettings {
    /// `--canvas-api`; needed only when Canvas courses are configured.
    pub api: Option<CanvasBase>,
    pub options: CanvasOptions,
}

impl CanvasSettings {
    fn from_options(options: &JobOptions) -> Result<CanvasSettings, ConfigError> {
        let api = match options.canvas_api.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(api) => Some(match api.strip_prefix("file://") {
                Some(dir) => CanvasBase::Replay(dir.into()),
                None => CanvasBase::Http(BaseUrl::parse(api).map_err(ConfigError::CanvasApi)?),
            }),
        };
        let mut instructors: Vec<String> = Vec::new();
        for kind in &options.canvas_instructor_types {
            let kind = kind.trim();
            if !CANVAS_INSTRUCTOR_TYPES.contains(&kind) {
                return Err(ConfigError::CanvasInstructorTypes {
                    value: options.canvas_instructor_types.join(","),
                });
            }
            if !instructors.iter().any(|known| known == kind) {
                instructors.push(kind.to_string());
            }
        }
        if instructors.is_empty() {
            return Err(ConfigError::CanvasInstructorTypes {
                value: String::new(),
            });
        }
        Ok(CanvasSettings {
            api,
            options: CanvasOptions {
                concurrency: usize::from(options.concurrency),
                types: Types {
                    instructors,
                    ..Types::default()
                },
                identity: match options.canvas_identity {
                    CanvasIdentity::Email => Identity::Email,
                    CanvasIdentity::LoginId => Identity::LoginId,
                },
                ..CanvasOptions::default()
            },
        })
    }
}

/// Where a run keeps its state: the hub's roster directory and the audit repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageSettings {
    pub output_dir: PathBuf,
    pub audit_repo: PathBuf,
    pub author: Author,
    /// Loose objects past which a sync packs the audit repository (0: never).
    pub pack_loose_objects: usize,
}

/// Where and how the JupyterHub groups are kept, when `--hub-api` is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubSettings {
    pub api: BaseUrl,
    pub group_template: GroupTemplate,
    pub username_domain: String,
}

impl HubSettings {
    fn from_options(options: &JobOptions) -> Result<Option<HubSettings>, ConfigError> {
        let Some(api) = &options.hub_api else {
            return Ok(None);
        };
        Ok(Some(HubSettings {
            api: BaseUrl::parse(api).map_err(ConfigError::HubApi)?,
            group_template: GroupTemplate::parse(&options.hub_group_template)
                .map_err(ConfigError::HubGroupTemplate)?,
            username_domain: options.hub_username_domain.trim().to_string(),
        }))
    }

    /// The groups sync's configuration, with the token read from the environment.
    pub fn connect(&self, settings: &Settings) -> Result<HubConfig, ConfigError> {
        Ok(HubConfig {
            api: self.api.clone(),
            token: HubToken::from_env().map_err(ConfigError::HubToken)?,
            group_template: self.group_template.clone(),
            username_domain: self.username_domain.clone(),
            timeout: settings.timeout,
            retry: settings.retry.clone(),
        })
    }
}

/// Validated settings of a `sync`, `plan` or `check`.
#[derive(Clone, Debug)]
pub struct Settings {
    pub values: PathBuf,
    pub profiles_key: Option<String>,
    pub source: SourceConfig,
    pub fetch: FetchOptions,
    pub retry: RetryPolicy,
    pub timeout: Duration,
    pub guard: GuardPolicy,
    pub prune: bool,
    pub dry_run: bool,
    pub storage: StorageSettings,
    pub hub: Option<HubSettings>,
    pub canvas: CanvasSettings,
    pub stale_after_terms: u16,
}

impl Settings {
    /// Validates the options of a job command. `approve_env` is `ROSTER_SYNC_APPROVE`,
    /// whose keys are added to the `--approve` flags.
    pub fn from_options(
        options: &JobOptions,
        dry_run: bool,
        approve_env: Option<&str>,
    ) -> Result<Settings, ConfigError> {
        let source = SourceConfig::parse(&options.api_base)?;
        let hub = HubSettings::from_options(options)?;
        let canvas = CanvasSettings::from_options(options)?;
        let timeout = Some(options.timeout)
            .filter(|seconds| *seconds <= MAX_TIMEOUT_SECS)
            .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
            .filter(|timeout| !timeout.is_zero())
            .ok_or(ConfigError::Timeout {
                value: options.timeout,
            })?;
        let author = Author {
            name: checked_author("--author-name", &options.author_name)?,
            email: checked_author("--author-email", &options.author_email)?,
        };
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
            source,
            fetch: FetchOptions {
                concurrency: usize::from(options.concurrency),
                include_waitlisted: options.include_waitlisted,
                excluded_roles,
            },
            retry: RetryPolicy {
                attempts: options.retries.saturating_add(1),
                ..RetryPolicy::default()
            },
            timeout,
            guard: GuardPolicy {
                max_removal_percent: options.max_removal_percent,
                min_size: options.guard_min_size,
                approvals,
            },
            prune: options.prune,
            dry_run,
            storage: StorageSettings {
                output_dir: options.output_dir.output_dir.clone(),
                audit_repo: options.audit_repo.audit_repo.clone(),
                author,
                pack_loose_objects: options.pack_loose_objects,
            },
            hub,
            canvas,
            stale_after_terms: options.stale_after_terms,
        })
    }

    /// The configured courses, read from the values file.
    /// The profiles `sync` works on: keys whose year has no term id are listed, not
    /// refused, so that each fails alone.
    pub fn load_profiles(&self) -> Result<Profiles, ConfigError> {
        read_profiles(&self.values, self.profiles_key.as_deref())
    }
}

/// The courses of `courses` whose term is at least `after` terms before today's, with how
/// many terms ago it was: their profiles are due for removal.
pub fn stale_courses(courses: &[Course], after: u16) -> Vec<(&Course, i64)> {
    let today = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let number = |range: std::ops::Range<usize>| today[range].parse().unwrap_or(1);
    let today = crate::course::term_of(number(0..4), number(5..7));
    courses
        .iter()
        .filter_map(|course| Some((course, course.terms_before(today)?)))
        .filter(|(_, ago)| *ago >= i64::from(after))
        .collect()
}

/// The nesting check that runs before the values file is parsed. yaml_serde collects a
/// document's events before it applies its own recursion limit, and the YAML scanner
/// spends time proportional to the current flow nesting on every token, so a deeply
/// nested file costs time quadratic in its depth before yaml_serde refuses it (30 s for
/// 160 KB). This walks the same parser's events one by one and stops at the first
/// collection that is too deep, after a bounded amount of work.
mod depth {
    use libyaml_rs as sys;
    use std::mem::MaybeUninit;

    /// The parser, freed on drop. Boxed: libyaml keeps pointers into it while parsing.
    struct Parser(Box<MaybeUninit<sys::yaml_parser_t>>);

    impl Drop for Parser {
        fn drop(&mut self) {
            // SAFETY: only built after `yaml_parser_initialize` succeeded on this box.
            unsafe { sys::yaml_parser_delete(self.0.as_mut_ptr()) }
        }
    }

    /// The line (from 1) of the first mapping or sequence nested deeper than `limit`,
    /// or `None` when there is none. A syntax error also gives `None`: the real parse
    /// that follows reports it with its message.
    pub fn too_deep(text: &[u8], limit: usize) -> Option<usize> {
        let mut raw = Box::new(MaybeUninit::<sys::yaml_parser_t>::uninit());
        // SAFETY: `raw` is valid for writes; initialize zeroes and sets it up.
        if unsafe { sys::yaml_parser_initialize(raw.as_mut_ptr()) }.fail {
            return None;
        }
        let mut parser = Parser(raw);
        let parser = parser.0.as_mut_ptr();
        // SAFETY: the parser is initialised, and `text` (borrowed for the whole call)
        // outlives it: the parser is dropped before this function returns.
        unsafe {
            sys::yaml_parser_set_encoding(parser, sys::YAML_UTF8_ENCODING);
            sys::yaml_parser_set_input_string(parser, text.as_ptr(), text.len() as u64);
        }
        let mut depth = 0usize;
        loop {
            let mut event = MaybeUninit::<sys::yaml_event_t>::uninit();
            // SAFETY: `parser` is initialised and has input; `event` is valid for writes.
            if unsafe { sys::yaml_parser_parse(parser, event.as_mut_ptr()) }.fail {
                return None;
            }
            // SAFETY: a successful `yaml_parser_parse` initialised the event; it is read
            // once and deleted once.
            let (kind, line) = unsafe {
                let event = event.assume_init_mut();
                let seen = (event.type_, event.start_mark.line);
                sys::yaml_event_delete(event);
                seen
            };
            match kind {
                sys::YAML_SEQUENCE_START_EVENT | sys::YAML_MAPPING_START_EVENT => {
                    depth += 1;
                    if depth > limit {
                        return Some(line as usize + 1);
                    }
                }
                sys::YAML_SEQUENCE_END_EVENT | sys::YAML_MAPPING_END_EVENT => {
                    depth = depth.saturating_sub(1)
                }
                sys::YAML_STREAM_END_EVENT => return None,
                _ => {}
            }
        }
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

    #[test]
    fn merge_keys_are_applied() {
        let yaml = "common: &common\n  2019-fall-1: {}\n  2019-fall-2: {}\n\
                    custom:\n  profiles:\n    <<: *common\n    2020-spring-3: {}\n";
        assert_eq!(
            keys(&parse(yaml, None).unwrap()),
            ["2020-spring-3", "2019-fall-1", "2019-fall-2"]
        );
        let error = parse("custom:\n  profiles:\n    <<: 7\n", None).unwrap_err();
        assert!(matches!(error, ConfigError::ValuesMerge { .. }), "{error}");
    }

    #[test]
    fn deep_nesting_is_refused_quickly_and_ordinary_nesting_is_not() {
        let started = std::time::Instant::now();
        let deep = format!(
            "custom:\n  profiles: {}{}\n",
            "[".repeat(80_000),
            "]".repeat(80_000)
        );
        let error = parse(&deep, None).unwrap_err();
        assert!(
            matches!(error, ConfigError::ValuesTooDeep { line: 2, .. }),
            "{error}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        let mut block = String::from("custom:\n  profiles:\n    2019-fall-1:\n");
        for depth in 0..50 {
            block += &format!("{}k{depth}:\n", "  ".repeat(depth + 3));
        }
        assert_eq!(keys(&parse(&block, None).unwrap()), ["2019-fall-1"]);
        // A syntax error is still reported by the real parser, with its line.
        assert!(matches!(
            parse("a: [\n", None),
            Err(ConfigError::ValuesSyntax { .. })
        ));
    }

    #[test]
    fn an_oversized_values_file_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("values.yaml");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(MAX_VALUES_BYTES + 1).unwrap();
        let error = load_profiles(&path, None).unwrap_err();
        assert!(
            matches!(error, ConfigError::ValuesTooLarge { .. }),
            "{error}"
        );
    }

    #[test]
    fn mistyped_course_keys_are_told_apart_from_other_profiles() {
        for typo in [
            "2020-Spring-14552",
            "2020-fall-1 ",
            "2020_fall_1",
            "2020-autumn-fall-1",
        ] {
            assert!(looks_like_a_course_key(typo), "{typo:?}");
        }
        for other in ["astr-128-admins", "2020-fall-1", "default", "1234-x"] {
            assert!(!looks_like_a_course_key(other), "{other:?}");
        }
    }

    #[test]
    fn author_names_and_emails_git_cannot_record_are_refused() {
        for bad in ["", "  ", "a\nb", "a<b", "b>", "x\u{7f}"] {
            let error = checked_author("--author-name", bad).unwrap_err();
            assert!(error.to_string().starts_with("--author-name "), "{error}");
        }
        assert_eq!(
            checked_author("--author-email", " ops@example.org ").unwrap(),
            "ops@example.org"
        );
    }
}

//! The read-only commands: `check` (is the configuration usable?), `verify` (does the
//! output directory match the audit HEAD?) and `history` (who was added or removed,
//! and when?). None of them contacts the network or changes a roster.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::Path;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::audit::{AuditError, AuditRepo};
use crate::cli::{HistoryArgs, HistoryFormat, JobOptions, ShowArgs};
use crate::config::{self, Settings, SourceConfig};
use crate::course::{Course, Source};
use crate::exit::Exit;
use crate::history;
use crate::hub::HubToken;
use crate::roster::normalize;
use crate::shutdown::Shutdown;
use crate::source::canvas::{CanvasBase, CanvasToken};
use crate::source::credentials::Credentials;
use crate::source::{Client, FetchError, Request, api};
use crate::store::OutputDir;
use crate::tree::OnDisk;

/// `check`: validates the options, the values file, the course keys and the credentials
/// the courses need, with the constructors `sync` uses, and says whether the output
/// directory and audit repository are usable.
///
/// With `online`, it also asks the Classes API for every course (nothing else is asked,
/// written or committed) and says what SIS knows of it, failing on a class that does not
/// exist: a wrong class number in a key is caught before the term starts.
pub fn check(
    options: &JobOptions,
    online: bool,
    approve_env: Option<&str>,
    shutdown: &Shutdown,
    out: &mut impl Write,
) -> Exit {
    let mut usable = true;
    // Warnings do not make the configuration unusable; they follow the checks.
    let mut warnings = Vec::new();
    let mut say = |ok: bool, line: String| {
        usable &= ok;
        let _ = writeln!(out, "{} {line}", if ok { "ok  " } else { "FAIL" });
    };
    let settings = Settings::from_options(options, false, approve_env);
    match &settings {
        Ok(_) => say(true, "options: valid".into()),
        Err(error) => say(false, error.to_string()),
    }
    let values = &options.values;
    let profiles = config::load_profiles(values, options.profiles_key.as_deref());
    match &profiles {
        Ok(profiles) => {
            let keys: Vec<&str> = profiles.courses.iter().map(|c| c.key.as_str()).collect();
            say(
                true,
                format!(
                    "values {}: {} course profiles ({}) under {}",
                    values.display(),
                    keys.len(),
                    keys.join(", "),
                    profiles.key_path.as_deref().unwrap_or("no profiles path")
                ),
            );
            let (canvas, sis): (Vec<&Course>, Vec<&Course>) = profiles
                .courses
                .iter()
                .partition(|course| course.source() == Source::Canvas);
            if !canvas.is_empty() {
                check_canvas(settings.as_ref().ok(), &mut say);
            }
            warnings.extend(
                config::stale_courses(&profiles.courses, options.stale_after_terms)
                    .into_iter()
                    .map(|(course, ago)| {
                        format!(
                            "stale profile {}: its term was {ago} terms ago \
                             (--stale-after-terms {}); remove it from the values file and \
                             sync with --prune",
                            course.key, options.stale_after_terms
                        )
                    }),
            );
            match (
                settings.as_ref().map(|settings| &settings.source),
                sis.is_empty(),
            ) {
                (_, true) if !keys.is_empty() => say(
                    true,
                    "credentials: no SIS course, no SIS credentials needed".into(),
                ),
                (_, true) => say(true, "credentials: none needed without courses".into()),
                (Ok(SourceConfig::Replay { dir }), false) => say(
                    true,
                    format!("credentials: none needed to replay {}", dir.display()),
                ),
                (_, false) => match Credentials::from_env() {
                    Ok(_) => say(
                        true,
                        "credentials: all four APIs have an id and a key".into(),
                    ),
                    Err(missing) => say(false, format!("credentials: {missing}")),
                },
            }
        }
        Err(error) => say(false, error.to_string()),
    }
    if let (true, Ok(settings), Ok(profiles)) = (online, &settings, &profiles) {
        look_up(settings, &profiles.courses, shutdown, &mut say);
    }
    if options.hub_api.is_some() {
        match HubToken::from_env() {
            Ok(_) => say(true, "hub: a JupyterHub API token is set".into()),
            Err(missing) => say(false, format!("hub: {missing}")),
        }
    }
    let output_dir = &options.output_dir.output_dir;
    let audit_repo = &options.audit_repo.audit_repo;
    say_writable("output directory", output_dir, &mut say);
    match AuditRepo::open_existing(audit_repo) {
        Ok(Some(_)) => say_writable("audit repository", audit_repo, &mut say),
        Ok(None) if audit_repo.exists() => say_writable(
            "audit repository (not yet a repository)",
            audit_repo,
            &mut say,
        ),
        Ok(None) => say(
            true,
            format!(
                "audit repository {} does not exist yet; the first sync creates it",
                audit_repo.display()
            ),
        ),
        Err(error) => say(false, error.to_string()),
    }
    for warning in warnings {
        let _ = writeln!(out, "warn {warning}");
    }
    if usable { Exit::Success } else { Exit::Config }
}

/// Whether the Canvas courses can be asked: `--canvas-api` set, and over HTTP a token.
fn check_canvas(settings: Option<&Settings>, say: &mut impl FnMut(bool, String)) {
    let Some(settings) = settings else { return };
    match &settings.canvas.api {
        None => say(
            false,
            "canvas: canvas-{id} courses are configured, but --canvas-api is not set".into(),
        ),
        Some(CanvasBase::Replay(dir)) => say(
            true,
            format!("canvas: no token needed to replay {}", dir.display()),
        ),
        Some(CanvasBase::Http(_)) => match CanvasToken::from_env() {
            Ok(_) => say(true, "canvas: a Canvas API token is set".into()),
            Err(missing) => say(false, format!("canvas: {missing}")),
        },
    }
}

/// Asks the Classes API for each SIS course and says what it knows of it (Canvas
/// courses are not looked up).
fn look_up(
    settings: &Settings,
    courses: &[Course],
    shutdown: &Shutdown,
    say: &mut impl FnMut(bool, String),
) {
    let courses: Vec<(&Course, u32)> = courses
        .iter()
        .filter_map(|course| Some((course, course.term_id?)))
        .collect();
    if courses.is_empty() {
        return;
    }
    let transport = match settings.source.connect(settings.timeout) {
        Ok(transport) => transport,
        Err(error) => return say(false, format!("online: {error}")),
    };
    let client = Client::new(transport, settings.retry.clone(), shutdown.clone());
    for (course, term_id) in courses {
        let request = Request::Sections {
            term_id,
            class_number: course.class_number.clone(),
        };
        let what = format!(
            "course {} (term {}, class {})",
            course.key, term_id, course.class_number
        );
        let sections = match client.fetch(&request) {
            Ok(Some(body)) => api::parse_sections(&body).map_err(|reason| FetchError::Malformed {
                request: request.clone(),
                reason,
            }),
            Ok(None) => Ok(Vec::new()),
            Err(error) => Err(error),
        };
        match sections {
            Ok(sections) if sections.is_empty() => say(
                false,
                format!(
                    "{what}: SIS has no such class in that term; check the class number in the key"
                ),
            ),
            Ok(sections) => {
                let title = sections.iter().find_map(|section| section.title.clone());
                let instructors = api::instructor_uids(&sections, &settings.fetch.excluded_roles);
                say(
                    true,
                    format!(
                        "{what}: {}, {} sections, {} instructors",
                        title.as_deref().unwrap_or("untitled"),
                        sections.len(),
                        instructors.len()
                    ),
                );
            }
            Err(error) => say(false, format!("{what}: {error}")),
        }
    }
}

/// Reports whether a directory can be written, by creating and removing a probe file.
fn say_writable(what: &str, dir: &Path, say: &mut impl FnMut(bool, String)) {
    if !dir.exists() {
        return say(
            true,
            format!(
                "{what} {} does not exist yet; the first sync creates it",
                dir.display()
            ),
        );
    }
    let probe = dir.join(format!(".roster-sync-tmp-check-{}", std::process::id()));
    match fs::File::create(&probe) {
        Ok(_) => {
            let _ = fs::remove_file(&probe);
            say(
                true,
                format!("{what} {} exists and is writable", dir.display()),
            );
        }
        Err(error) => say(
            false,
            format!("{what} {} is not writable: {error}", dir.display()),
        ),
    }
}

/// Reads from the audit repository if there is one; an error is logged and becomes the
/// storage exit.
fn read_audit<T>(
    audit_repo: &Path,
    read: impl FnOnce(&AuditRepo) -> Result<T, AuditError>,
) -> Result<Option<T>, Exit> {
    let result =
        AuditRepo::open_existing(audit_repo).and_then(|repo| repo.as_ref().map(read).transpose());
    result.map_err(|error| {
        log::error!("{error}");
        Exit::Storage
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `verify`: compares every file of the audit HEAD with the output directory by SHA-256.
pub fn verify(output_dir: &Path, audit_repo: &Path, out: &mut impl Write) -> Exit {
    let head = match read_audit(audit_repo, AuditRepo::head_tree) {
        Ok(Some(head)) => head,
        Ok(None) => {
            let _ = writeln!(
                out,
                "no audit repository at {}: nothing to verify against",
                audit_repo.display()
            );
            return Exit::Failed;
        }
        Err(exit) => return exit,
    };
    let store = OutputDir::existing(output_dir);
    let mut differences = 0;
    for (name, content) in &head {
        let expected = sha256_hex(content);
        let line = match store.read(name) {
            Ok(OnDisk::File(bytes)) if bytes == *content => format!("ok       {name} {expected}"),
            Ok(OnDisk::File(bytes)) => format!(
                "changed  {name} expected {expected} found {}",
                sha256_hex(&bytes)
            ),
            Ok(OnDisk::Missing) => format!("missing  {name} expected {expected}"),
            Ok(OnDisk::NotAFile) => {
                format!("not-file {name} expected {expected} (a symlink or directory)")
            }
            Err(error) => format!("error    {name}: {error}"),
        };
        if !line.starts_with("ok") {
            differences += 1;
        }
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "{} files checked against {}, {differences} differ",
        head.len(),
        audit_repo.display()
    );
    if differences == 0 {
        Exit::Success
    } else {
        Exit::Failed
    }
}

/// Parses `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time.
fn parse_since(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text)
        .or_else(|_| humantime::parse_rfc3339_weak(&format!("{text} 00:00:00")))
        .ok()
}

/// `history`: one line (or JSON object) per address added to or removed from a list,
/// oldest first.
pub fn history(args: &HistoryArgs, out: &mut impl Write) -> Exit {
    let audit_repo = &args.audit_repo.audit_repo;
    let since = match args.since.as_deref().map(|text| (text, parse_since(text))) {
        Some((text, None)) => {
            log::error!("--since {text:?} is not a date (use YYYY-MM-DD or RFC 3339)");
            return Exit::Config;
        }
        Some((_, since)) => since,
        None => None,
    };
    let filter = history::Filter {
        course: args.course.clone(),
        member: args
            .member
            .as_deref()
            .map(|m| normalize(m).unwrap_or_default()),
        since,
    };
    let json = args.format == HistoryFormat::Json;
    let written = read_audit(audit_repo, |repo| {
        history::history(repo, &filter, |line| {
            if json {
                let text = serde_json::to_string(&line).expect("a history line serialises");
                writeln!(out, "{text}")
            } else {
                writeln!(out, "{line}")
            }
        })
    });
    match written {
        Ok(Some(Ok(()))) => Exit::Success,
        Ok(Some(Err(error))) if error.kind() == ErrorKind::BrokenPipe => Exit::Success,
        Ok(Some(Err(error))) => {
            log::error!("cannot write the history: {error}");
            Exit::Storage
        }
        Ok(None) => {
            log::warn!("no audit repository at {}", audit_repo.display());
            Exit::Success
        }
        Err(exit) => exit,
    }
}

/// `show`: the list of a course as the audit repository recorded it at a moment, one
/// address per line.
pub fn show(args: &ShowArgs, out: &mut impl Write) -> Exit {
    let moment = match args.at.as_deref() {
        None => history::Moment::Now,
        Some(text) => match parse_moment(text) {
            Some(moment) => moment,
            None => {
                log::error!(
                    "--at {text:?} is neither a date (YYYY-MM-DD, RFC 3339) nor a commit id"
                );
                return Exit::Config;
            }
        },
    };
    let audit_repo = &args.audit_repo.audit_repo;
    let list = args.list.list();
    let roster = read_audit(audit_repo, |repo| {
        history::show(repo, &args.course, list, &moment)
    });
    match roster {
        Ok(Some(Some(roster))) => {
            let written = out.write_all(&roster.render()).and_then(|()| out.flush());
            match written {
                Err(error) if error.kind() != ErrorKind::BrokenPipe => {
                    log::error!("cannot write the roster: {error}");
                    Exit::Storage
                }
                _ => Exit::Success,
            }
        }
        Ok(Some(None)) | Ok(None) => {
            log::warn!(
                "{} had no {list} roster in {} then",
                args.course,
                audit_repo.display()
            );
            Exit::Failed
        }
        Err(exit) => exit,
    }
}

/// `--at`: a date (the end of that day, UTC), an RFC 3339 time, or else a commit id.
fn parse_moment(text: &str) -> Option<history::Moment> {
    if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        return Some(history::Moment::At(time));
    }
    if let Ok(time) = humantime::parse_rfc3339_weak(&format!("{text} 23:59:59")) {
        return Some(history::Moment::At(time));
    }
    let hex = text.len() >= 4 && text.len() <= 40 && text.bytes().all(|b| b.is_ascii_hexdigit());
    hex.then(|| history::Moment::Commit(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_is_the_end_of_a_day_a_time_or_a_commit() {
        let day = humantime::parse_rfc3339_weak("2026-11-26 23:59:59").unwrap();
        assert_eq!(parse_moment("2026-11-26"), Some(history::Moment::At(day)));
        assert!(matches!(
            parse_moment("2026-11-26T10:00:00Z"),
            Some(history::Moment::At(_))
        ));
        assert_eq!(
            parse_moment("8de01bff39"),
            Some(history::Moment::Commit("8de01bff39".into()))
        );
        assert_eq!(parse_moment("last tuesday"), None);
    }

    #[test]
    fn since_accepts_dates_and_times() {
        let day = parse_since("2026-11-26").unwrap();
        assert_eq!(
            humantime::format_rfc3339_seconds(day).to_string(),
            "2026-11-26T00:00:00Z"
        );
        assert!(parse_since("2026-11-26T10:00:00Z").unwrap() > day);
        assert!(parse_since("last tuesday").is_none());
    }

    #[test]
    fn digests_are_lower_hex() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}

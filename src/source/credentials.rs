//! API credentials: one `app_id`/`app_key` pair per remote API, read from the environment.
//!
//! The variable names are the original sidecar's (`SIS_CLASSES_ID`, `SIS_CLASSES_KEY`, ...,
//! see [`Api::credential_vars`]). A variable `NAME_FILE` holding a path wins over `NAME`, so
//! a Kubernetes secret can be mounted as a file instead of being put into the environment.
//!
//! Invariants: a value is trimmed and never empty; every missing or unreadable variable of
//! every requested API is reported at once, so an operator fixes them in one go; no key
//! ever appears in a message or in `Debug` output (a file's content is never quoted either).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use super::Api;

/// The credential pairs of the four SIS/HR APIs; a run with SIS courses needs them all.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pairs: BTreeMap<Api, Pair>,
}

#[derive(Clone, PartialEq, Eq)]
struct Pair {
    id: String,
    key: String,
}

/// The credentials a run needs but could not get. Reported as a configuration error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingCredentials {
    problems: Vec<Problem>,
}

impl MissingCredentials {
    /// Every variable without a usable value, in API order, id before key.
    pub fn variables(&self) -> Vec<&'static str> {
        self.problems.iter().map(|problem| problem.var).collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Problem {
    api: Api,
    var: &'static str,
    reason: Reason,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Neither `NAME` nor `NAME_FILE` gave a non-empty value.
    Unset,
    /// `NAME_FILE` names a file that holds only white space.
    EmptyFile(PathBuf),
    /// `NAME_FILE` names a file that cannot be read (the I/O error, never the content).
    Unreadable(PathBuf, String),
    /// `NAME_FILE` names a file larger than [`MAX_FILE_BYTES`] (a wrong path, say).
    TooLarge(PathBuf),
    /// The value holds a control character (a pasted line break, say) or is not UTF-8;
    /// neither can go into an HTTP header.
    Unusable { from_file: bool },
}

impl Credentials {
    /// Reads the credentials from the process environment.
    pub fn from_env() -> Result<Credentials, MissingCredentials> {
        // A value that is not UTF-8 keeps a replacement character, which `read_var`
        // rejects, so it is reported as unusable rather than as unset.
        Self::from_lookup(|name| {
            std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
        })
    }

    /// Reads the credentials through `lookup`, which stands for the environment.
    pub(crate) fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Credentials, MissingCredentials> {
        let mut pairs = BTreeMap::new();
        let mut problems = Vec::new();
        for api in Api::ALL {
            let (id_var, key_var) = api.credential_vars();
            let id = read_var(id_var, &lookup);
            let key = read_var(key_var, &lookup);
            match (id, key) {
                (Ok(id), Ok(key)) => {
                    pairs.insert(api, Pair { id, key });
                }
                (id, key) => {
                    for (var, result) in [(id_var, id), (key_var, key)] {
                        if let Err(reason) = result {
                            problems.push(Problem { api, var, reason });
                        }
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(Credentials { pairs })
        } else {
            Err(MissingCredentials { problems })
        }
    }

    /// The `(app_id, app_key)` pair of `api`.
    pub fn get(&self, api: Api) -> (&str, &str) {
        let pair = &self.pairs[&api];
        (pair.id.as_str(), pair.key.as_str())
    }
}

/// The largest credential file read. An app id or key is tens of bytes; a file beyond
/// this is the wrong file, and reading it whole could take the pod's memory.
pub const MAX_FILE_BYTES: u64 = 64 << 10;

/// The content of a credential file, read up to [`MAX_FILE_BYTES`].
fn read_file(path: &std::path::Path) -> Result<Vec<u8>, Reason> {
    use std::io::Read;
    let unreadable = |error: std::io::Error| Reason::Unreadable(path.into(), error.to_string());
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(unreadable)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Reason::TooLarge(path.into()));
    }
    Ok(bytes)
}

/// The value of `NAME_FILE` (a path; the file's content) or else of `NAME`, trimmed.
pub(crate) fn read_var(
    var: &str,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<String, Reason> {
    let file_var = format!("{var}_FILE");
    // An empty `NAME_FILE` is treated as unset: templating often renders absent values so.
    let path = lookup(&file_var).filter(|path| !path.trim().is_empty());
    let (value, from_file) = match path {
        Some(path) => {
            let path = PathBuf::from(path.trim());
            let text = String::from_utf8_lossy(&read_file(&path)?).into_owned();
            if text.trim().is_empty() {
                return Err(Reason::EmptyFile(path));
            }
            (text, true)
        }
        None => match lookup(var) {
            Some(value) if !value.trim().is_empty() => (value, false),
            _ => return Err(Reason::Unset),
        },
    };
    let value = value.trim();
    if value
        .chars()
        .any(|c| c.is_control() || c == char::REPLACEMENT_CHARACTER)
    {
        return Err(Reason::Unusable { from_file });
    }
    Ok(value.to_string())
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The id is no secret and helps an operator see which app is configured.
        let mut map = f.debug_map();
        for (api, pair) in &self.pairs {
            map.entry(
                &api.name(),
                &format_args!("app_id {:?}, app_key <redacted>", pair.id),
            );
        }
        map.finish()
    }
}

impl fmt::Display for MissingCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "missing credentials for ")?;
        let mut apis: Vec<Api> = self.problems.iter().map(|p| p.api).collect();
        apis.dedup();
        for (i, api) in apis.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{}: ", api.name())?;
            let problems = self.problems.iter().filter(|p| p.api == *api);
            for (j, problem) in problems.enumerate() {
                if j > 0 {
                    write!(f, ", ")?;
                }
                Unusable {
                    var: problem.var,
                    reason: &problem.reason,
                }
                .fmt(f)?;
            }
        }
        Ok(())
    }
}

/// What is wrong with the variable `var`, in the words every credential message uses:
/// `VAR (set it or VAR_FILE)`, `VAR (VAR_FILE names PATH which is empty)`, ... It never
/// quotes a value or a file's content.
pub(crate) struct Unusable<'a> {
    pub var: &'a str,
    pub reason: &'a Reason,
}

impl fmt::Display for Unusable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let var = self.var;
        match self.reason {
            Reason::Unset => write!(f, "{var} (set it or {var}_FILE)"),
            Reason::EmptyFile(path) => write!(
                f,
                "{var} ({var}_FILE names {} which is empty)",
                path.display()
            ),
            Reason::Unreadable(path, error) => write!(
                f,
                "{var} ({var}_FILE names {} which cannot be read: {error})",
                path.display()
            ),
            Reason::TooLarge(path) => write!(
                f,
                "{var} ({var}_FILE names {} which is larger than {} KiB; it should hold \
                 only the value)",
                path.display(),
                MAX_FILE_BYTES >> 10
            ),
            Reason::Unusable { from_file: true } => write!(
                f,
                "{var} (the file named by {var}_FILE holds a control character or is not \
                 UTF-8)"
            ),
            Reason::Unusable { from_file: false } => write!(
                f,
                "{var} (the value holds a control character or is not UTF-8)"
            ),
        }
    }
}

impl std::error::Error for MissingCredentials {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    /// Every API's variables set, then `overrides` on top.
    fn complete(overrides: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let mut vars: Vec<(&str, &str)> = Api::ALL
            .iter()
            .flat_map(|api| {
                let (id, key) = api.credential_vars();
                [(id, "some-id"), (key, "some-key")]
            })
            .collect();
        vars.extend_from_slice(overrides);
        lookup(&vars)
    }

    #[test]
    fn reads_plain_variables_trimmed() {
        let credentials = Credentials::from_lookup(complete(&[
            ("UCB_HR_ID", " hr-id\n"),
            ("UCB_HR_KEY", "\thr-key-123 \n"),
        ]))
        .unwrap();
        assert_eq!(credentials.get(Api::Hr), ("hr-id", "hr-key-123"));
        assert_eq!(credentials.get(Api::Classes), ("some-id", "some-key"));
    }

    #[test]
    fn file_variable_wins_and_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "  key-from-file\n\n").unwrap();
        let credentials = Credentials::from_lookup(complete(&[
            ("SIS_CLASSES_ID", "id"),
            ("SIS_CLASSES_KEY", "key-from-env"),
            ("SIS_CLASSES_KEY_FILE", path.to_str().unwrap()),
        ]))
        .unwrap();
        assert_eq!(credentials.get(Api::Classes), ("id", "key-from-file"));
    }

    #[test]
    fn empty_file_variable_falls_back_to_the_plain_one() {
        let credentials = Credentials::from_lookup(complete(&[
            ("SIS_CLASSES_ID", "id"),
            ("SIS_CLASSES_KEY", "key"),
            ("SIS_CLASSES_KEY_FILE", ""),
        ]))
        .unwrap();
        assert_eq!(credentials.get(Api::Classes), ("id", "key"));
    }

    #[test]
    fn every_missing_variable_is_listed() {
        let error = Credentials::from_lookup(lookup(&[
            ("SIS_CLASSES_ID", "id"),
            ("SIS_CLASSES_KEY", "   "),
            ("SIS_STUDENTS_ID", "id"),
            ("SIS_STUDENTS_KEY", "key"),
        ]))
        .unwrap_err();
        assert_eq!(
            error.variables(),
            [
                "SIS_CLASSES_KEY",
                "SIS_ENROLLMENTS_ID",
                "SIS_ENROLLMENTS_KEY",
                "UCB_HR_ID",
                "UCB_HR_KEY"
            ]
        );
        let message = error.to_string();
        assert!(
            message.starts_with(
                "missing credentials for SIS Classes API: SIS_CLASSES_KEY \
                 (set it or SIS_CLASSES_KEY_FILE); SIS Enrollments API: SIS_ENROLLMENTS_ID"
            ),
            "{message}"
        );
        assert!(
            message.contains("HR Employees API: UCB_HR_ID (set it or UCB_HR_ID_FILE), UCB_HR_KEY")
        );
        assert!(!message.contains("SIS Students API"), "{message}");
    }

    #[test]
    fn unreadable_and_empty_files_are_reported_with_their_path() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let absent = dir.path().join("absent");
        let error = Credentials::from_lookup(complete(&[
            ("UCB_HR_ID_FILE", empty.to_str().unwrap()),
            ("UCB_HR_KEY", "key-that-is-not-used"),
            ("UCB_HR_KEY_FILE", absent.to_str().unwrap()),
        ]))
        .unwrap_err();
        assert_eq!(error.variables(), ["UCB_HR_ID", "UCB_HR_KEY"]);
        let message = error.to_string();
        assert!(message.contains(&format!(
            "UCB_HR_ID_FILE names {} which is empty",
            empty.display()
        )));
        assert!(message.contains(&format!(
            "UCB_HR_KEY_FILE names {} which cannot be read",
            absent.display()
        )));
        assert!(!message.contains("key-that-is-not-used"));
    }

    #[test]
    fn unusable_values_are_rejected_without_quoting_them() {
        let error = Credentials::from_lookup(complete(&[("UCB_HR_KEY", "sec\nret")])).unwrap_err();
        assert_eq!(error.variables(), ["UCB_HR_KEY"]);
        assert!(!error.to_string().contains("sec"));
    }

    #[test]
    fn debug_never_shows_a_key() {
        let credentials = Credentials::from_lookup(complete(&[
            ("SIS_CLASSES_ID", "classes-id"),
            ("SIS_CLASSES_KEY", "classes-secret"),
            ("UCB_HR_ID", "hr-id"),
            ("UCB_HR_KEY", "hr-secret"),
        ]))
        .unwrap();
        let debug = format!("{credentials:?} {credentials:#?}");
        assert!(debug.contains("classes-id") && debug.contains("<redacted>"));
        assert!(!debug.contains("secret"), "{debug}");
        assert_eq!(credentials.get(Api::Hr), ("hr-id", "hr-secret"));
    }

    #[test]
    fn an_oversized_file_is_refused_without_reading_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
        let error =
            Credentials::from_lookup(complete(&[("UCB_HR_KEY_FILE", big.to_str().unwrap())]))
                .unwrap_err();
        assert_eq!(error.variables(), ["UCB_HR_KEY"]);
        assert!(error.to_string().contains("larger than 64 KiB"), "{error}");
    }
}

//! What Canvas answers, parsed: the enrollments list of a course, the `Link` header's
//! next page, and whether a 403 is throttling. Pure functions over bytes and strings; the
//! transports (`canvas`) and the Canvas coordinator (the top-level `canvas` module) build on them.
//!
//! `GET /api/v1/courses/:course_id/enrollments` answers a JSON array of enrollment
//! objects; what roster-sync reads of one is `type`, `enrollment_state`, `user_id` and
//! `user.{id, email, login_id}`. Every other member is ignored, and a missing or null
//! member reads as absent, so a Canvas that adds or drops optional fields is still read.
//!
//! Invariants: no error message quotes a value from a body (names and addresses stay
//! out of logs); a `Link` header is only ever read for its `rel="next"` URL, which is
//! handed on untouched (Canvas's page tokens are opaque).

use std::fmt;

use serde::Deserialize;

use super::api::{Id, ParseError};
use crate::roster::{Enrollee, Standing};

/// The token's variable; `CANVAS_API_TOKEN_FILE` (a path) wins over it.
pub const TOKEN_VAR: &str = "CANVAS_API_TOKEN";
pub const TOKEN_FILE_VAR: &str = "CANVAS_API_TOKEN_FILE";

/// What an administrator grants so that the token's user sees a course roster with the
/// fields roster-sync uses; quoted by the 403 message and the docs.
pub const PERMISSIONS_HINT: &str = "the token's user needs, in this course's account, \
    \"Users - view list\" (or a teacher/TA enrollment in the course) to list enrollments, \
    \"Users - view primary email address\" for user.email, and \"Users - view login IDs\" for \
    user.login_id (--canvas-identity login_id)";

/// Which user field is a roster address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// `user.email` (needs "Users - view primary email address").
    Email,
    /// `user.login_id` (needs "Users - view login IDs").
    LoginId,
}

impl Identity {
    pub fn parse(text: &str) -> Option<Identity> {
        match text.trim() {
            "email" => Some(Identity::Email),
            "login_id" => Some(Identity::LoginId),
            _ => None,
        }
    }

    pub fn field(self) -> &'static str {
        match self {
            Identity::Email => "user.email",
            Identity::LoginId => "user.login_id",
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.field())
    }
}

/// Whether a 403's body is Canvas's throttling answer, `403 Forbidden (Rate Limit
/// Exceeded)` (its text or JSON error), rather than a missing permission.
pub fn says_rate_limited(body: &[u8]) -> bool {
    let needle = b"rate limit exceeded";
    body.len() >= needle.len()
        && body
            .windows(needle.len())
            .any(|window| window.eq_ignore_ascii_case(needle))
}

/// The `rel="next"` URL of one `Link` header value (RFC 8288:
/// `<url>; rel="next", <url>; rel="last"`), if it names one. A relation list
/// (`rel="next last"`) counts; parameters other than `rel` are ignored.
pub fn link_next(value: &str) -> Option<String> {
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let end = after.find('>')?;
        let url = &after[..end];
        let params_end = after[end + 1..]
            .find('<')
            .map_or(after.len(), |i| end + 1 + i);
        // Up to the next link value, without the comma that separates them.
        let params = after[end + 1..params_end].trim_end().trim_end_matches(',');
        let is_next = params.split(';').any(|param| {
            let Some((name, value)) = param.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        if is_next && !url.trim().is_empty() {
            return Some(url.trim().to_string());
        }
        rest = &after[params_end..];
    }
    None
}

/// `X-Rate-Limit-Remaining`: a non-negative number (Canvas sends a float).
pub fn parse_rate_limit_remaining(value: &str) -> Option<f64> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|remaining| remaining.is_finite() && *remaining >= 0.0)
}

/// The enrollment types that make a course's lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Types {
    pub students: Vec<String>,
    pub instructors: Vec<String>,
}

impl Types {
    pub const STUDENT: &'static str = "StudentEnrollment";
    pub const DEFAULT_INSTRUCTORS: [&'static str; 2] = ["TeacherEnrollment", "TaEnrollment"];

    /// Every type to ask for, students first, each once, in the order given.
    pub fn requested(&self) -> Vec<&str> {
        let mut all: Vec<&str> = Vec::new();
        for kind in self.students.iter().chain(&self.instructors) {
            if !all.contains(&kind.as_str()) {
                all.push(kind);
            }
        }
        all
    }
}

impl Default for Types {
    fn default() -> Self {
        Types {
            students: vec![Types::STUDENT.to_string()],
            instructors: Types::DEFAULT_INSTRUCTORS.map(String::from).to_vec(),
        }
    }
}

/// One page of a course's enrollments, reduced to the two lists' rows. A user listed in
/// several sections appears once per enrollment; [`crate::roster::students`] and the
/// instructor set make them one.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub students: Vec<Enrollee>,
    pub instructors: Vec<Enrollee>,
    /// Enrollments on the page, whatever their type (for the log).
    pub rows: usize,
}

#[derive(Deserialize)]
struct RawEnrollment {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    enrollment_state: Option<String>,
    #[serde(default)]
    user_id: Option<Id>,
    #[serde(default)]
    user: Option<RawUser>,
}

#[derive(Deserialize)]
struct RawUser {
    #[serde(default)]
    id: Option<Id>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    login_id: Option<String>,
}

/// Parses one enrollments page. Only `active` enrollments count (the request asks for
/// those only; one without a state is taken as active). Rows of other types are skipped.
pub fn parse_enrollments(
    body: &[u8],
    types: &Types,
    identity: Identity,
) -> Result<Page, ParseError> {
    let rows: Vec<RawEnrollment> = serde_json::from_slice(body).map_err(|error| {
        if error.is_syntax() || error.is_eof() {
            ParseError::Syntax {
                detail: format!("line {} column {}", error.line(), error.column()),
            }
        } else {
            ParseError::Shape {
                what: "enrollments list",
                line: error.line(),
                column: error.column(),
            }
        }
    })?;
    let mut page = Page {
        rows: rows.len(),
        ..Page::default()
    };
    for row in rows {
        let Some(kind) = row.kind else { continue };
        let is_student = types.students.contains(&kind);
        let is_instructor = types.instructors.contains(&kind);
        if !(is_student || is_instructor) {
            continue;
        }
        if row
            .enrollment_state
            .as_deref()
            .is_some_and(|state| state != "active")
        {
            continue;
        }
        let user = row.user;
        let id = row
            .user_id
            .or_else(|| user.as_ref().and_then(|user| user.id.clone()))
            .map(Id::into_string);
        let address = user.and_then(|user| match identity {
            Identity::Email => user.email,
            Identity::LoginId => user.login_id,
        });
        let enrollee = Enrollee {
            standing: Standing::Enrolled,
            id,
            address,
        };
        if is_student {
            page.students.push(enrollee.clone());
        }
        if is_instructor {
            page.instructors.push(enrollee);
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_is_found_among_the_others() {
        let header = "<https://canvas.example.edu/api/v1/courses/1/enrollments?page=1&per_page=100>; \
             rel=\"current\",<https://canvas.example.edu/api/v1/courses/1/enrollments?page=bookmark:WzJd&per_page=100>; rel=\"next\",\
             <https://canvas.example.edu/api/v1/courses/1/enrollments?page=1&per_page=100>; rel=\"first\"";
        assert_eq!(
            link_next(header).as_deref(),
            Some(
                "https://canvas.example.edu/api/v1/courses/1/enrollments?page=bookmark:WzJd&per_page=100"
            )
        );
        assert_eq!(
            link_next("<https://x/a?p=2>; rel=\"next last\"").as_deref(),
            Some("https://x/a?p=2")
        );
        assert_eq!(
            link_next("<https://x/b>; REL=next").as_deref(),
            Some("https://x/b")
        );
        for none in [
            "",
            "<https://x/a>; rel=\"current\", <https://x/c>; rel=\"last\"",
            "<https://x/a>; title=\"next\"",
            "<https://x/a; rel=\"next\"",
            "garbage",
            "<>; rel=\"next\"",
        ] {
            assert_eq!(link_next(none), None, "{none}");
        }
    }

    #[test]
    fn only_the_throttling_403_says_rate_limited() {
        assert!(says_rate_limited(b"403 Forbidden (Rate Limit Exceeded)\n"));
        assert!(says_rate_limited(
            br#"{"errors":[{"message":"rate limit exceeded"}]}"#
        ));
        assert!(!says_rate_limited(
            br#"{"status":"unauthorized","errors":[{"message":"user not authorized to perform that action"}]}"#
        ));
        assert!(!says_rate_limited(b""));
    }

    #[test]
    fn rate_limit_remaining_is_a_non_negative_number() {
        assert_eq!(parse_rate_limit_remaining(" 699.85 "), Some(699.85));
        assert_eq!(parse_rate_limit_remaining("-1"), None);
        assert_eq!(parse_rate_limit_remaining("NaN"), None);
        assert_eq!(parse_rate_limit_remaining("x"), None);
    }

    const PAGE: &str = r#"[
      {"id": 1, "type": "StudentEnrollment", "enrollment_state": "active", "user_id": 10,
       "course_section_id": 7, "user": {"id": 10, "name": "S Ten", "login_id": "S10",
       "email": " Student.Ten@Example.EDU "}},
      {"id": 2, "type": "StudentEnrollment", "enrollment_state": "active", "user_id": 10,
       "course_section_id": 8, "user": {"id": 10, "login_id": "s10", "email": "student.ten@example.edu"}},
      {"id": 3, "type": "StudentEnrollment", "enrollment_state": "active", "user_id": 11,
       "user": {"id": 11, "name": "No Mail"}},
      {"id": 4, "type": "TaEnrollment", "enrollment_state": "active", "user_id": 20,
       "user": {"id": 20, "email": "ta@example.edu", "login_id": "ta20"}},
      {"id": 5, "type": "TeacherEnrollment", "user_id": 21,
       "user": {"id": 21, "email": null, "login_id": "t21"}},
      {"id": 6, "type": "ObserverEnrollment", "enrollment_state": "active", "user_id": 30,
       "user": {"id": 30, "email": "observer@example.edu"}},
      {"id": 7, "type": "StudentEnrollment", "enrollment_state": "completed", "user_id": 31,
       "user": {"id": 31, "email": "done@example.edu"}},
      {"id": 8, "type": "DesignerEnrollment", "enrollment_state": "active", "user_id": 32}
    ]"#;

    #[test]
    fn a_page_gives_both_lists_by_the_configured_types_and_identity() {
        let page = parse_enrollments(PAGE.as_bytes(), &Types::default(), Identity::Email).unwrap();
        assert_eq!(page.rows, 8);
        let ids = |rows: &[Enrollee]| -> Vec<Option<String>> {
            rows.iter().map(|row| row.id.clone()).collect()
        };
        assert_eq!(
            ids(&page.students),
            [Some("10".into()), Some("10".into()), Some("11".into())]
        );
        assert_eq!(
            ids(&page.instructors),
            [Some("20".into()), Some("21".into())]
        );
        assert_eq!(page.instructors[1].address, None);
        let students = crate::roster::students(&page.students, false);
        assert_eq!(students.roster.len(), 1, "one student in two sections");
        assert_eq!(students.no_email, 1);

        let by_login =
            parse_enrollments(PAGE.as_bytes(), &Types::default(), Identity::LoginId).unwrap();
        assert_eq!(by_login.instructors[1].address.as_deref(), Some("t21"));

        let teachers_only = Types {
            students: vec![Types::STUDENT.into()],
            instructors: vec!["TeacherEnrollment".into()],
        };
        let page = parse_enrollments(PAGE.as_bytes(), &teachers_only, Identity::Email).unwrap();
        assert_eq!(ids(&page.instructors), [Some("21".into())]);
    }

    #[test]
    fn string_ids_and_empty_pages_are_read() {
        let page = parse_enrollments(
            br#"[{"type":"StudentEnrollment","user":{"id":"42","email":"a@example.edu"}}]"#,
            &Types::default(),
            Identity::Email,
        )
        .unwrap();
        assert_eq!(page.students[0].id.as_deref(), Some("42"));
        assert_eq!(
            parse_enrollments(b"[]", &Types::default(), Identity::Email).unwrap(),
            Page::default()
        );
    }

    #[test]
    fn bodies_that_are_not_a_list_are_malformed_without_quoting_them() {
        for body in [
            &b"<html>oops</html>"[..],
            br#"{"errors":[{"message":"x"}]}"#,
            br#"[{"type": 5}]"#,
            b"[",
        ] {
            let error = parse_enrollments(body, &Types::default(), Identity::Email).unwrap_err();
            assert!(!error.to_string().contains("oops"), "{error}");
        }
        let error = parse_enrollments(
            br#"[{"type":"StudentEnrollment","user":{"email":["secret@example.edu"]}}]"#,
            &Types::default(),
            Identity::Email,
        )
        .unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
    }

    #[test]
    fn requested_types_are_each_named_once() {
        let types = Types {
            students: vec!["StudentEnrollment".into()],
            instructors: vec!["TaEnrollment".into(), "StudentEnrollment".into()],
        };
        assert_eq!(types.requested(), ["StudentEnrollment", "TaEnrollment"]);
    }
}

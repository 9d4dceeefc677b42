//! Typed views of the four SIS/HR API responses, and the field rules that pick the
//! sections, instructors, enrollees and addresses out of them.
//!
//! Every parser accepts a body with or without the outer `apiResponse` wrapper. Fields
//! that SIS omits or sends as `null` read as empty; a body that is not JSON, or lacks
//! the list a parser exists to read, is an error (the course fails and keeps its old
//! files) rather than an empty answer: reading "no data" into a broken answer is the
//! bug that made the original sidecar truncate rosters.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Deserializer};

use crate::roster::{Enrollee, Standing};

/// Why a body could not be read. It never quotes a value of the body: a value may be a
/// person's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON at all (a gateway's HTML error page, a truncated body).
    Syntax { detail: String },
    /// JSON, but a member has the wrong type.
    Shape {
        what: &'static str,
        line: usize,
        column: usize,
    },
    /// JSON without the member the parser exists to read.
    Missing { member: &'static str },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Syntax { detail } => write!(f, "invalid JSON: {detail}"),
            ParseError::Shape { what, line, column } => {
                write!(f, "unexpected {what} shape at line {line} column {column}")
            }
            ParseError::Missing { member } => write!(f, "no {member} member"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Reads `T` from `null` or a missing field as `T::default()`.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// SIS (and Canvas, with `Accept: application/json+canvas-string-ids`) sends ids as
/// numbers in some places and strings in others.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub(crate) enum Id {
    Number(u64),
    Text(String),
}

impl Id {
    pub(crate) fn into_string(self) -> String {
        match self {
            Id::Number(n) => n.to_string(),
            Id::Text(s) => s.trim().to_string(),
        }
    }
}

#[derive(Deserialize, Debug, Default)]
struct Code {
    #[serde(default, deserialize_with = "nullable")]
    code: String,
}

#[derive(Deserialize, Debug)]
struct Identifier {
    #[serde(rename = "type", default, deserialize_with = "nullable")]
    kind: String,
    id: Option<Id>,
    #[serde(default, deserialize_with = "nullable")]
    disclose: bool,
}

#[derive(Deserialize, Debug)]
struct Email {
    #[serde(rename = "type", default, deserialize_with = "nullable")]
    kind: Code,
    #[serde(rename = "emailAddress", default, deserialize_with = "nullable")]
    address: String,
    #[serde(default, deserialize_with = "nullable")]
    disclose: bool,
}

/// The campus UID of a person, when it is present and disclosed.
fn disclosed_campus_uid(identifiers: Vec<Identifier>) -> Option<String> {
    identifiers
        .into_iter()
        .find(|identifier| identifier.kind == "campus-uid" && identifier.disclose)
        .and_then(|identifier| identifier.id)
        .map(Id::into_string)
        .filter(|uid| !uid.is_empty())
}

/// A body with its `response` member at the top or below an `apiResponse` wrapper.
/// Deserialised straight into `T`, so the fields we do not read are skipped, not built.
#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(rename = "apiResponse")]
    wrapped: Option<Wrapped<T>>,
    response: Option<T>,
}

#[derive(Deserialize)]
struct Wrapped<T> {
    response: Option<T>,
}

/// The `response` member of a body, read as `what`.
fn response<T: for<'de> Deserialize<'de>>(
    body: &[u8],
    what: &'static str,
) -> Result<T, ParseError> {
    let envelope: Envelope<T> = serde_json::from_slice(body).map_err(|error| {
        if error.is_syntax() || error.is_eof() {
            ParseError::Syntax {
                detail: error.to_string(),
            }
        } else {
            // serde quotes the offending value, which may be a person's address: say
            // only where the shape was wrong.
            ParseError::Shape {
                what,
                line: error.line(),
                column: error.column(),
            }
        }
    })?;
    envelope
        .wrapped
        .and_then(|wrapped| wrapped.response)
        .or(envelope.response)
        .ok_or(ParseError::Missing {
            member: "`response`",
        })
}

/// A class section and the instructors assigned to its meetings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub id: String,
    pub instructors: Vec<Assignment>,
    /// The course's subject and catalog number (`STAT C131A`), when SIS names them.
    pub title: Option<String>,
}

/// An instructor's disclosed campus UID and role code on one meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub uid: String,
    pub role: String,
}

#[derive(Deserialize)]
struct ClassesResponse {
    #[serde(rename = "classSections", default, deserialize_with = "nullable")]
    sections: Vec<RawSection>,
}

#[derive(Deserialize)]
struct RawSection {
    id: Id,
    #[serde(default, deserialize_with = "nullable")]
    meetings: Vec<RawMeeting>,
    #[serde(default, deserialize_with = "nullable")]
    class: RawClass,
}

#[derive(Deserialize, Default)]
struct RawClass {
    #[serde(default, deserialize_with = "nullable")]
    course: RawCourse,
}

#[derive(Deserialize, Default)]
struct RawCourse {
    #[serde(rename = "displayName", default, deserialize_with = "nullable")]
    display_name: String,
}

#[derive(Deserialize)]
struct RawMeeting {
    #[serde(rename = "assignedInstructors", default, deserialize_with = "nullable")]
    assigned: Vec<RawAssignment>,
}

#[derive(Deserialize)]
struct RawAssignment {
    #[serde(default, deserialize_with = "nullable")]
    instructor: RawPerson,
    #[serde(default, deserialize_with = "nullable")]
    role: Code,
}

#[derive(Deserialize, Default)]
struct RawPerson {
    #[serde(default, deserialize_with = "nullable")]
    identifiers: Vec<Identifier>,
    #[serde(default, deserialize_with = "nullable")]
    emails: Vec<Email>,
}

/// Classes API: the sections of a class (empty when SIS lists none).
pub fn parse_sections(body: &[u8]) -> Result<Vec<Section>, ParseError> {
    let classes: ClassesResponse = response(body, "class sections")?;
    Ok(classes
        .sections
        .into_iter()
        .map(|section| Section {
            id: section.id.into_string(),
            title: Some(section.class.course.display_name.trim().to_string())
                .filter(|title| !title.is_empty()),
            instructors: section
                .meetings
                .into_iter()
                .flat_map(|meeting| meeting.assigned)
                .filter_map(|assignment| {
                    Some(Assignment {
                        uid: disclosed_campus_uid(assignment.instructor.identifiers)?,
                        role: assignment.role.code,
                    })
                })
                .collect(),
        })
        .collect())
}

/// The instructor UIDs of a course: every disclosed campus UID assigned to any meeting
/// of any section, unless its role is excluded.
pub fn instructor_uids(
    sections: &[Section],
    excluded_roles: &BTreeSet<String>,
) -> BTreeSet<String> {
    sections
        .iter()
        .flat_map(|section| &section.instructors)
        .filter(|assignment| !excluded_roles.contains(&assignment.role))
        .map(|assignment| assignment.uid.clone())
        .collect()
}

/// An Enrollments page: the v3 nesting or the v2 one.
#[derive(Deserialize)]
struct EnrollmentResponse {
    #[serde(rename = "enrollmentsByClassSection")]
    v3: Option<EnrollmentsByClassSection>,
    #[serde(rename = "classSectionEnrollments")]
    v2: Option<Vec<RawEnrollment>>,
}

#[derive(Deserialize)]
struct EnrollmentsByClassSection {
    #[serde(rename = "classSectionEnrollments")]
    items: Option<Vec<RawEnrollment>>,
}

#[derive(Deserialize)]
struct RawEnrollment {
    #[serde(default, deserialize_with = "nullable")]
    student: RawPerson,
    #[serde(rename = "enrollmentStatus", default, deserialize_with = "nullable")]
    enrollment_status: RawEnrollmentStatus,
}

#[derive(Deserialize, Default)]
struct RawEnrollmentStatus {
    #[serde(default, deserialize_with = "nullable")]
    status: Code,
}

fn first_address(emails: &[Email], kind: &str) -> Option<String> {
    emails
        .iter()
        .find(|email| email.kind.code == kind && !email.address.trim().is_empty())
        .map(|email| email.address.clone())
}

/// Enrollments API: the rows of one page, all statuses (the caller counts them for
/// pagination). Status `E` is enrolled, `W` waitlisted; the address is the first CAMP
/// one, else the first OTHR one. Accepts the v3 nesting
/// (`response.enrollmentsByClassSection.classSectionEnrollments`) and the v2 one
/// (`response.classSectionEnrollments`).
pub fn parse_enrollment_page(body: &[u8]) -> Result<Vec<Enrollee>, ParseError> {
    let page: EnrollmentResponse = response(body, "enrollments")?;
    let rows = page
        .v3
        .and_then(|v3| v3.items)
        .or(page.v2)
        .ok_or(ParseError::Missing {
            member: "classSectionEnrollments",
        })?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let address = first_address(&row.student.emails, "CAMP")
                .or_else(|| first_address(&row.student.emails, "OTHR"));
            let standing = match row.enrollment_status.status.code.as_str() {
                "E" => Standing::Enrolled,
                "W" => Standing::Waitlisted,
                _ => Standing::Other,
            };
            Enrollee {
                standing,
                id: disclosed_campus_uid(row.student.identifiers),
                address,
            }
        })
        .collect())
}

/// Students API: the disclosed CAMP addresses of a person.
pub fn parse_student_addresses(body: &[u8]) -> Result<Vec<String>, ParseError> {
    let person: RawPerson = response(body, "student record")?;
    Ok(person
        .emails
        .into_iter()
        .filter(|email| email.kind.code == "CAMP" && email.disclose)
        .map(|email| email.address)
        .collect())
}

/// HR API: the BUSN addresses of `response[0]`; `None` when `response` is empty, which
/// means the same as 404.
pub fn parse_employee_addresses(body: &[u8]) -> Result<Option<Vec<String>>, ParseError> {
    let people: Vec<RawPerson> = response(body, "employee list")?;
    Ok(people.into_iter().next().map(|person| {
        person
            .emails
            .into_iter()
            .filter(|email| email.kind.code == "BUSN")
            .map(|email| email.address)
            .collect()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_with_and_without_wrapper() {
        let section = r#"{"classSections":[
            {"id": 23970, "class": {"course": {"displayName": "STAT C131A"}},
             "meetings":[{"assignedInstructors":[
                {"instructor":{"identifiers":[{"type":"campus-uid","id":"111","disclose":true}]},
                 "role":{"code":"PI"}},
                {"instructor":{"identifiers":[{"type":"campus-uid","id":"222","disclose":false}]},
                 "role":{"code":"TNIC"}},
                {"instructor":{"identifiers":[{"type":"student-id","id":"333","disclose":true}]},
                 "role":{"code":"TNIC"}}]}]},
            {"id": "23971", "meetings": null}]}"#;
        let wrapped = format!(r#"{{"apiResponse":{{"response":{section}}}}}"#);
        let bare = format!(r#"{{"response":{section}}}"#);
        for body in [wrapped, bare] {
            let sections = parse_sections(body.as_bytes()).unwrap();
            assert_eq!(
                sections,
                [
                    Section {
                        id: "23970".into(),
                        instructors: vec![Assignment {
                            uid: "111".into(),
                            role: "PI".into()
                        }],
                        title: Some("STAT C131A".into()),
                    },
                    Section {
                        id: "23971".into(),
                        instructors: vec![],
                        title: None,
                    },
                ]
            );
        }
    }

    #[test]
    fn missing_sections_read_as_none() {
        assert_eq!(parse_sections(br#"{"response":{}}"#).unwrap(), []);
    }

    #[test]
    fn enrollments_in_both_envelopes_pick_camp_then_othr() {
        let items = r#"[
            {"student":{"identifiers":[{"type":"campus-uid","id":"1","disclose":true}],
                        "emails":[{"type":{"code":"OTHR"},"emailAddress":"o@example.com"},
                                  {"type":{"code":"CAMP"},"emailAddress":" A@Berkeley.edu "}]},
             "enrollmentStatus":{"status":{"code":"E"}}},
            {"student":{"emails":[{"type":{"code":"OTHR"},"emailAddress":"only@example.org"}]},
             "enrollmentStatus":{"status":{"code":"W"}}},
            {"student":{"emails":[{"type":{"code":"CAMP"},"emailAddress":"  "}]},
             "enrollmentStatus":{"status":{"code":"D"}}}]"#;
        let v3 = format!(
            r#"{{"apiResponse":{{"response":{{"enrollmentsByClassSection":{{"classSectionEnrollments":{items}}}}}}}}}"#
        );
        let v2 = format!(r#"{{"response":{{"classSectionEnrollments":{items}}}}}"#);
        for body in [v3, v2] {
            let rows = parse_enrollment_page(body.as_bytes()).unwrap();
            assert_eq!(
                rows,
                [
                    Enrollee {
                        standing: Standing::Enrolled,
                        id: Some("1".into()),
                        address: Some(" A@Berkeley.edu ".into())
                    },
                    Enrollee {
                        standing: Standing::Waitlisted,
                        id: None,
                        address: Some("only@example.org".into())
                    },
                    Enrollee {
                        standing: Standing::Other,
                        id: None,
                        address: None
                    },
                ]
            );
        }
    }

    #[test]
    fn broken_bodies_are_errors_not_empty_answers() {
        assert!(parse_enrollment_page(br#"{"apiResponse":{"response":{"classSecti"#).is_err());
        assert!(parse_enrollment_page(br#"{"response":{}}"#).is_err());
        assert!(parse_enrollment_page(br#"{"response":{"classSectionEnrollments":5}}"#).is_err());
        assert!(parse_sections(b"<html>gateway error</html>").is_err());
        assert!(parse_employee_addresses(br#"{"response":{"emails":[]}}"#).is_err());
        assert!(parse_student_addresses(b"[]").is_err());
    }

    #[test]
    fn shape_errors_do_not_quote_values() {
        let body = br#"{"response":{"classSectionEnrollments":[{"student":{"emails":"someone@berkeley.edu"}}]}}"#;
        let error = parse_enrollment_page(body).unwrap_err().to_string();
        assert!(!error.contains("someone"), "{error}");
        assert!(error.contains("line 1 column"), "{error}");
    }

    #[test]
    fn student_api_keeps_disclosed_camp_only() {
        let body = br#"{"apiResponse":{"response":{"emails":[
            {"type":{"code":"CAMP"},"emailAddress":"gsi@berkeley.edu","disclose":true},
            {"type":{"code":"CAMP"},"emailAddress":"hidden@berkeley.edu","disclose":false},
            {"type":{"code":"OTHR"},"emailAddress":"x@example.org","disclose":true}]}}}"#;
        assert_eq!(parse_student_addresses(body).unwrap(), ["gsi@berkeley.edu"]);
    }

    #[test]
    fn hr_keeps_busn_of_the_first_record_and_empty_means_none() {
        let body = br#"{"response":[{"emails":[
            {"type":{"code":"BUSN"},"emailAddress":"prof@berkeley.edu"},
            {"type":{"code":"HOME"},"emailAddress":"home@example.com"}]},
            {"emails":[{"type":{"code":"BUSN"},"emailAddress":"second@berkeley.edu"}]}]}"#;
        assert_eq!(
            parse_employee_addresses(body).unwrap(),
            Some(vec!["prof@berkeley.edu".to_string()])
        );
        assert_eq!(
            parse_employee_addresses(br#"{"response":[]}"#).unwrap(),
            None
        );
    }

    #[test]
    fn instructor_roles_are_filtered_and_uids_deduplicated() {
        let assignment = |uid: &str, role: &str| Assignment {
            uid: uid.into(),
            role: role.into(),
        };
        let sections = [
            Section {
                id: "1".into(),
                instructors: vec![assignment("10", "PI"), assignment("20", "APRX")],
                title: None,
            },
            Section {
                id: "2".into(),
                instructors: vec![assignment("10", "PI"), assignment("30", "TNIC")],
                title: None,
            },
        ];
        let excluded = BTreeSet::from(["APRX".to_string()]);
        assert_eq!(
            instructor_uids(&sections, &excluded)
                .into_iter()
                .collect::<Vec<_>>(),
            ["10", "30"]
        );
        assert_eq!(instructor_uids(&sections, &BTreeSet::new()).len(), 3);
    }
}

//! The JSON shapes of the SIS and HR answers, serialized straight from the campus.
//!
//! Each shape borrows what it writes, so an answer costs one pass over its part of the campus.
//! Built as `serde_json::Value` trees instead (every `json!` around a value copies it), an
//! enrollment page took about 3 ms of CPU: on a two-core machine the emulator then used a whole
//! core and delayed the client it measures.

use std::borrow::Cow;

use serde::Serialize;

use crate::{Course, Email, Enrollment, Section};

/// The `apiResponse` envelope of the SIS APIs (HR has none).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Wrapped<T> {
    api_response: Envelope<T>,
}

impl<T> Wrapped<T> {
    pub(crate) fn new(response: T) -> Self {
        Wrapped {
            api_response: Envelope {
                http_status: HttpStatus {
                    code: "200",
                    description: "OK",
                },
                response,
            },
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<T> {
    http_status: HttpStatus,
    response: T,
}

#[derive(Serialize)]
struct HttpStatus {
    code: &'static str,
    description: &'static str,
}

/// `{"response": ...}`: HR's answers, and the SIS answers in their legacy shape.
#[derive(Serialize)]
pub(crate) struct Bare<T> {
    pub(crate) response: T,
}

#[derive(Serialize)]
pub(crate) struct Code<'a> {
    code: &'a str,
}

#[derive(Serialize)]
struct Identifier<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    /// Borrowed, or made up for the answer (the HR employee id).
    id: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disclose: Option<bool>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EmailShape<'a> {
    #[serde(rename = "type")]
    kind: Code<'a>,
    email_address: &'a str,
    primary: bool,
    disclose: bool,
}

fn emails(emails: &[Email]) -> Vec<EmailShape<'_>> {
    emails
        .iter()
        .map(|email| EmailShape {
            kind: Code { code: email.code },
            email_address: &email.address,
            primary: false,
            disclose: email.disclose,
        })
        .collect()
}

/// A person's record: the Students API's, each element of HR's list, and an enrolled
/// student.
#[derive(Serialize)]
pub(crate) struct Person<'a> {
    identifiers: [Identifier<'a>; 1],
    emails: Vec<EmailShape<'a>>,
}

impl<'a> Person<'a> {
    /// A student's record; the campus-uid identifier says `disclose: false`.
    pub(crate) fn student(uid: &'a str, addresses: &'a [Email]) -> Self {
        Self::with(uid, Some(false), addresses)
    }

    /// An employee's record, whose identifier carries no `disclose`.
    pub(crate) fn employee(uid: &'a str, addresses: &'a [Email]) -> Self {
        Self::with(uid, None, addresses)
    }

    fn with(uid: &'a str, disclose: Option<bool>, addresses: &'a [Email]) -> Self {
        Person {
            identifiers: [Identifier {
                kind: "campus-uid",
                id: uid.into(),
                disclose,
            }],
            emails: emails(addresses),
        }
    }
}

/// The Classes API's response.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClassSections<'a> {
    class_sections: Vec<SectionShape<'a>>,
}

impl<'a> ClassSections<'a> {
    pub(crate) fn of(course: &'a Course, term_id: &'a str) -> Self {
        ClassSections {
            class_sections: course
                .sections
                .iter()
                .enumerate()
                .map(|(index, section)| SectionShape::new(term_id, index, section))
                .collect(),
        }
    }
}

#[derive(Serialize)]
struct SectionShape<'a> {
    id: u64,
    number: String,
    component: Code<'static>,
    association: Association,
    class: Class<'a>,
    meetings: Vec<Meeting<'a>>,
}

#[derive(Serialize)]
struct Association {
    primary: bool,
}

#[derive(Serialize)]
struct Class<'a> {
    session: Session<'a>,
}

#[derive(Serialize)]
struct Session<'a> {
    term: Term<'a>,
}

#[derive(Serialize)]
struct Term<'a> {
    id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Meeting<'a> {
    number: usize,
    assigned_instructors: Vec<Assigned<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Assigned<'a> {
    assignment_number: usize,
    instructor: Instructor<'a>,
    role: Code<'a>,
}

#[derive(Serialize)]
struct Instructor<'a> {
    identifiers: [Identifier<'a>; 2],
}

impl<'a> SectionShape<'a> {
    /// The first section (index 0) is the lecture, the primary one.
    fn new(term_id: &'a str, index: usize, section: &'a Section) -> Self {
        let meetings = section
            .meetings
            .iter()
            .enumerate()
            .map(|(m, staff)| Meeting {
                number: m + 1,
                assigned_instructors: staff
                    .iter()
                    .enumerate()
                    .map(|(a, assignment)| Assigned {
                        assignment_number: a + 1,
                        instructor: Instructor {
                            identifiers: [
                                // Another identifier type first: only campus-uid may be used.
                                Identifier {
                                    kind: "hr-employee-id",
                                    id: format!("1{}", assignment.uid).into(),
                                    disclose: Some(true),
                                },
                                Identifier {
                                    kind: "campus-uid",
                                    id: assignment.uid.as_str().into(),
                                    disclose: Some(assignment.disclose),
                                },
                            ],
                        },
                        role: Code {
                            code: assignment.role,
                        },
                    })
                    .collect(),
            })
            .collect();
        SectionShape {
            id: section.id,
            number: if index == 0 {
                "001".to_string()
            } else {
                format!("{}", 100 + index)
            },
            component: Code {
                code: if index == 0 { "LEC" } else { "DIS" },
            },
            association: Association {
                primary: index == 0,
            },
            class: Class {
                session: Session {
                    term: Term { id: term_id },
                },
            },
            meetings,
        }
    }
}

/// `{"classSectionEnrollments": [...]}`: the legacy response, and inside the current one.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Enrollments<'a> {
    class_section_enrollments: Vec<EnrollmentShape<'a>>,
}

/// The current Enrollments response: the list one level further in.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ByClassSection<'a> {
    pub(crate) enrollments_by_class_section: Enrollments<'a>,
}

impl<'a> Enrollments<'a> {
    /// One page of a section's enrollments (`page` from 1).
    pub(crate) fn page(section: &'a Section, page: usize, size: usize) -> Self {
        Enrollments {
            class_section_enrollments: section
                .enrollments
                .iter()
                .skip((page - 1) * size)
                .take(size)
                .map(|enrollment| EnrollmentShape::new(section.id, enrollment))
                .collect(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.class_section_enrollments.is_empty()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EnrollmentShape<'a> {
    class_section: SectionId,
    student: Person<'a>,
    enrollment_status: EnrollmentStatus<'a>,
}

#[derive(Serialize)]
struct SectionId {
    id: u64,
}

#[derive(Serialize)]
struct EnrollmentStatus<'a> {
    status: Code<'a>,
}

impl<'a> EnrollmentShape<'a> {
    fn new(section_id: u64, enrollment: &'a Enrollment) -> Self {
        EnrollmentShape {
            class_section: SectionId { id: section_id },
            student: Person::with(&enrollment.uid, Some(true), &enrollment.emails),
            enrollment_status: EnrollmentStatus {
                status: Code {
                    code: enrollment.status,
                },
            },
        }
    }
}

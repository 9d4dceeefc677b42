//! Courses: what a profile key names. A key is the only thing from the values file that
//! reaches a file name or a URL, and only after [`Course::classify`] accepted it.
//!
//! Invariant: a [`Course`] always has a key that matches `^\d{4}-(spring|summer|fall)-\d{1,6}$`
//! (a SIS class, with a term id computed from it) or `^canvas-\d{1,12}$` (a Canvas course,
//! without a term id), so no other module re-parses keys.

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

/// A term's place in the sequence spring, summer, fall, spring, ...: consecutive terms
/// have consecutive ordinals.
fn ordinal(year: u32, season: Season) -> i64 {
    let index = match season {
        Season::Spring => 0,
        Season::Summer => 1,
        Season::Fall => 2,
    };
    i64::from(year) * 3 + index
}

/// The term a date falls in: January to May is spring, June to August summer, September
/// to December fall.
pub fn term_of(year: u32, month: u32) -> (u32, Season) {
    let season = match month {
        1..=5 => Season::Spring,
        6..=8 => Season::Summer,
        _ => Season::Fall,
    };
    (year, season)
}

/// The SIS term id: century digit, two-digit year, season digit (2019 summer → 2195).
pub fn term_id(year: u32, season: Season) -> u32 {
    1000 * (year / 100 - 18) + 10 * (year % 100) + season.digit()
}

/// A configured course profile whose key names a SIS class or a Canvas course.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Course {
    /// The profile key exactly as written; roster file names derive from it.
    pub key: String,
    /// The SIS term id; `None` for a Canvas course (which is what tells the two apart).
    pub term_id: Option<u32>,
    /// The number the source knows the course by, as written: the SIS class number
    /// (leading zeros kept) or the Canvas course id.
    pub class_number: String,
}

/// Where a course's rosters come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Sis,
    Canvas,
}

/// The longest Canvas course id a key may hold.
const CANVAS_ID_DIGITS: usize = 12;

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
    pub fn source(&self) -> Source {
        match self.term_id {
            Some(_) => Source::Sis,
            None => Source::Canvas,
        }
    }

    /// The Canvas course id of a Canvas course.
    pub fn canvas_id(&self) -> Option<&str> {
        (self.source() == Source::Canvas).then_some(self.class_number.as_str())
    }

    /// How many terms lie between this course's term and `today`'s term (0 during the
    /// course's own term, 1 in the next one; negative before it); `None` for a Canvas
    /// course, which has no term.
    pub fn terms_before(&self, (year, season): (u32, Season)) -> Option<i64> {
        let term_id = self.term_id?;
        let digit = term_id % 10;
        let course_year = (term_id / 1000 + 18) * 100 + (term_id / 10) % 100;
        let course_season = match digit {
            2 => Season::Spring,
            5 => Season::Summer,
            _ => Season::Fall,
        };
        Some(ordinal(year, season) - ordinal(course_year, course_season))
    }

    pub fn classify(key: &str) -> KeyKind {
        if let Some(id) = key.strip_prefix("canvas-") {
            let valid = (1..=CANVAS_ID_DIGITS).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_digit());
            return match valid {
                true => KeyKind::Course(Course {
                    key: key.to_string(),
                    term_id: None,
                    class_number: id.to_string(),
                }),
                false => KeyKind::NotACourse,
            };
        }
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
            term_id: Some(term_id(year, season.expect("checked above"))),
            class_number: class_number.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn term_ids_follow_the_sis_formula() {
        assert_eq!(term_id(2019, Season::Summer), 2195);
        assert_eq!(term_id(2021, Season::Fall), 2218);
        assert_eq!(term_id(2017, Season::Spring), 2172);
        assert_eq!(term_id(1999, Season::Fall), 1998);
    }

    #[test]
    fn terms_are_counted_across_years() {
        let KeyKind::Course(fall) = Course::classify("2019-fall-1") else {
            panic!("a course key")
        };
        assert_eq!(fall.terms_before(term_of(2019, 11)), Some(0));
        assert_eq!(fall.terms_before(term_of(2020, 3)), Some(1));
        assert_eq!(
            fall.terms_before(term_of(2020, 7)),
            Some(2),
            "a fall course, the next summer"
        );
        assert_eq!(fall.terms_before(term_of(2026, 12)), Some(21));
        assert_eq!(fall.terms_before(term_of(2019, 2)), Some(-2));
        let KeyKind::Course(old) = Course::classify("1999-summer-1") else {
            panic!("a course key")
        };
        assert_eq!(old.terms_before(term_of(2000, 1)), Some(2));
    }

    #[test]
    fn course_keys_are_parsed_strictly() {
        let KeyKind::Course(course) = Course::classify("2019-fall-023970") else {
            panic!("a course key");
        };
        assert_eq!(course.term_id, Some(2198));
        assert_eq!(course.source(), Source::Sis);
        assert_eq!(course.canvas_id(), None);
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
    fn canvas_keys_name_canvas_courses() {
        let KeyKind::Course(course) = Course::classify("canvas-0012345") else {
            panic!("a canvas key");
        };
        assert_eq!(course.source(), Source::Canvas);
        assert_eq!(course.term_id, None);
        assert_eq!(course.canvas_id(), Some("0012345"));
        assert!(matches!(
            Course::classify("canvas-123456789012"),
            KeyKind::Course(_)
        ));
        for key in [
            "canvas-",
            "canvas-1234567890123",
            "canvas-12a",
            "canvas-1/../x",
            "Canvas-1",
            "canvas--1",
            "canvas-１",
            "canvas-1-students",
        ] {
            assert_eq!(Course::classify(key), KeyKind::NotACourse, "{key}");
        }
    }
}

//! The columns of each kind of export and the headings accepted for them.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// Which export a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RosterKind {
    Pupils,
    Staff,
    Contacts,
}

/// A column sheepdog reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Field {
    Upn,
    StaffId,
    ContactId,
    Forename,
    Surname,
    DateOfBirth,
    Year,
    Class,
    Email,
    Roles,
    Relationship,
    PupilUpn,
    ParentalResponsibility,
    Priority,
}

/// Where each field sits in a file.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    positions: HashMap<Field, usize>,
}

impl Field {
    /// The name used in reports, and the headings accepted for it. Headings
    /// are compared without case, spaces, underscores or hyphens.
    pub(crate) fn headings(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Self::Upn => ("UPN", &["UPN", "Unique Pupil Number"]),
            Self::StaffId => (
                "Staff ID",
                &["Staff ID", "Staff Code", "Employee ID", "Staff Number"],
            ),
            Self::ContactId => (
                "Contact ID",
                &["Contact ID", "Contact Number", "Contact Ref"],
            ),
            Self::Forename => (
                "Forename",
                &["Legal Forename", "Forename", "First Name", "Given Name"],
            ),
            Self::Surname => (
                "Surname",
                &["Legal Surname", "Surname", "Last Name", "Family Name"],
            ),
            Self::DateOfBirth => ("Date of Birth", &["Date of Birth", "DOB", "Birth Date"]),
            Self::Year => (
                "Year",
                &["Year", "Year Group", "NC Year", "National Curriculum Year"],
            ),
            Self::Class => (
                "Class",
                &[
                    "Reg Group",
                    "Registration Group",
                    "Class",
                    "Form",
                    "Tutor Group",
                ],
            ),
            Self::Email => ("Email", &["Email", "Email Address", "Work Email"]),
            Self::Roles => ("Roles", &["Roles", "Role", "Staff Roles"]),
            Self::Relationship => ("Relationship", &["Relationship", "Relationship to Pupil"]),
            Self::PupilUpn => ("Pupil UPN", &["Pupil UPN", "Student UPN", "Child UPN"]),
            Self::ParentalResponsibility => (
                "Parental Responsibility",
                &[
                    "Parental Responsibility",
                    "PR",
                    "Has Parental Responsibility",
                ],
            ),
            Self::Priority => (
                "Priority",
                &["Priority", "Contact Priority", "Contact Order"],
            ),
        }
    }
}

impl RosterKind {
    pub(crate) fn required(self) -> &'static [Field] {
        match self {
            Self::Pupils => &[
                Field::Upn,
                Field::Forename,
                Field::Surname,
                Field::DateOfBirth,
                Field::Year,
                Field::Class,
            ],
            Self::Staff => &[
                Field::StaffId,
                Field::Forename,
                Field::Surname,
                Field::Email,
                Field::Roles,
            ],
            Self::Contacts => &[
                Field::ContactId,
                Field::Forename,
                Field::Surname,
                Field::Relationship,
                Field::PupilUpn,
            ],
        }
    }

    pub(crate) fn optional(self) -> &'static [Field] {
        match self {
            Self::Pupils => &[Field::Email],
            Self::Staff => &[],
            Self::Contacts => &[Field::Email, Field::ParentalResponsibility, Field::Priority],
        }
    }

    /// Guesses the kind from a file's header row.
    pub(crate) fn detect(headers: &csv::StringRecord) -> Option<Self> {
        let has = |field: Field| headers.iter().any(|h| matches(field, h));
        if has(Field::ContactId) {
            Some(Self::Contacts)
        } else if has(Field::StaffId) {
            Some(Self::Staff)
        } else if has(Field::Upn) {
            Some(Self::Pupils)
        } else {
            None
        }
    }
}

impl Layout {
    /// Finds each column of `kind`, or lists the required ones missing.
    #[allow(clippy::type_complexity)]
    pub(crate) fn find(
        kind: RosterKind,
        headers: &csv::StringRecord,
    ) -> Result<Self, Vec<(&'static str, Vec<&'static str>)>> {
        let mut positions = HashMap::new();
        let mut missing = Vec::new();
        for &field in kind.required().iter().chain(kind.optional()) {
            match headers.iter().position(|h| matches(field, h)) {
                Some(index) => {
                    positions.insert(field, index);
                }
                None if kind.required().contains(&field) => {
                    let (name, accepted) = field.headings();
                    missing.push((name, accepted.to_vec()));
                }
                None => {}
            }
        }
        if missing.is_empty() {
            Ok(Self { positions })
        } else {
            Err(missing)
        }
    }

    /// The trimmed cell for `field`, if the column exists and is not empty.
    pub(crate) fn cell<'r>(&self, record: &'r csv::StringRecord, field: Field) -> Option<&'r str> {
        self.positions
            .get(&field)
            .and_then(|&index| record.get(index))
            .filter(|value| !value.is_empty())
    }

    pub(crate) fn width(&self) -> usize {
        self.positions.values().max().map_or(0, |max| max + 1)
    }
}

fn squash(heading: &str) -> String {
    heading
        .chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-' | '.'))
        .flat_map(char::to_lowercase)
        .collect()
}

fn matches(field: Field, heading: &str) -> bool {
    let heading = squash(heading);
    field
        .headings()
        .1
        .iter()
        .any(|accepted| squash(accepted) == heading)
}

impl fmt::Display for RosterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pupils => "pupil",
            Self::Staff => "staff",
            Self::Contacts => "contact",
        })
    }
}

impl FromStr for RosterKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "pupils" | "pupil" => Ok(Self::Pupils),
            "staff" => Ok(Self::Staff),
            "contacts" | "contact" | "parents" => Ok(Self::Contacts),
            other => Err(format!("`{other}` is not pupils, staff or contacts")),
        }
    }
}

//! Row-by-row validation of a roster.

use std::collections::HashMap;

use chrono::{Datelike, NaiveDate};
use sheepdog_store::{ImportBatch, ImportedGuardian, PersonDetails, PersonKind, StaffRole};

use crate::columns::{Field, Layout};
use crate::{upn, Roster, RosterKind, RowProblem};

pub(crate) struct RowReader {
    kind: RosterKind,
    layout: Layout,
    today: NaiveDate,
    rows: usize,
    batch: ImportBatch,
    problems: Vec<RowProblem>,
    invalid_lines: Vec<usize>,
    /// First line each key (UPN, staff or contact ID) was seen on.
    seen: HashMap<String, usize>,
}

/// What a valid row adds to the batch.
enum Parsed {
    Person(PersonDetails),
    Contact(PersonDetails, ImportedGuardian),
}

/// The problems of one row, collected so every one is reported at once.
struct Row<'r> {
    line: usize,
    record: &'r csv::StringRecord,
    layout: &'r Layout,
    problems: Vec<RowProblem>,
}

impl RowReader {
    pub(crate) fn new(kind: RosterKind, layout: Layout, today: NaiveDate) -> Self {
        Self {
            kind,
            layout,
            today,
            rows: 0,
            batch: ImportBatch::default(),
            problems: Vec::new(),
            invalid_lines: Vec::new(),
            seen: HashMap::new(),
        }
    }

    pub(crate) fn read(&mut self, line: usize, record: &csv::StringRecord) {
        if record.iter().all(str::is_empty) {
            return;
        }
        self.rows += 1;
        let mut row = Row {
            line,
            record,
            layout: &self.layout,
            problems: Vec::new(),
        };
        if record.len() < self.layout.width() {
            row.problem(
                None,
                None,
                format!("has {} cells but the header has more", record.len()),
                "check for a missing comma or a line break inside a cell",
            );
        }
        let (parsed, key) = match self.kind {
            RosterKind::Pupils => pupil(&mut row, self.today),
            RosterKind::Staff => staff(&mut row),
            RosterKind::Contacts => contact(&mut row),
        };
        if let Some((column, key)) = key {
            if let Some(first) = self.seen.get(&key) {
                row.problem(
                    Some(column),
                    Some(&key),
                    format!("the same {column} is already on line {first}"),
                    "each person appears once; remove the duplicate or correct the value",
                );
            } else {
                self.seen.insert(key, line);
            }
        }
        if row.problems.is_empty() {
            match parsed {
                Parsed::Person(person) => self.batch.people.push(person),
                Parsed::Contact(person, link) => {
                    self.batch.people.push(person);
                    self.batch.guardians.push(link);
                }
            }
            return;
        }
        // A bad row contributes nothing to the batch.
        self.invalid_lines.push(line);
        self.problems.append(&mut row.problems);
    }

    pub(crate) fn unreadable(&mut self, line: usize, message: &str) {
        self.rows += 1;
        self.invalid_lines.push(line);
        self.problems.push(RowProblem {
            line,
            column: None,
            value: None,
            problem: format!("cannot be read as CSV ({message})"),
            fix: "save the export again as CSV (UTF-8)".to_string(),
        });
    }

    pub(crate) fn finish(self) -> Roster {
        Roster {
            kind: self.kind,
            rows: self.rows,
            batch: self.batch,
            problems: self.problems,
            invalid_lines: self.invalid_lines,
        }
    }
}

/// Reads a pupil row; returns the duplicate-detection key.
fn pupil(row: &mut Row<'_>, today: NaiveDate) -> (Parsed, Option<(&'static str, String)>) {
    let upn = row
        .required(Field::Upn)
        .and_then(|text| match upn::validate(text) {
            Ok(upn) => Some(upn),
            Err(e) => {
                row.problem(
                    Some("UPN"),
                    Some(text),
                    e.to_string(),
                    "copy the UPN again from the MIS",
                );
                None
            }
        });
    let given_name = row.required(Field::Forename);
    let family_name = row.required(Field::Surname);
    let date_of_birth = row
        .required(Field::DateOfBirth)
        .and_then(|text| row.date_of_birth(text, today));
    let year_group = row
        .required(Field::Year)
        .and_then(|text| row.year_group(text));
    let class_name = row.required(Field::Class);
    let email = row.email();
    let person = PersonDetails {
        kind: PersonKind::Pupil,
        external_id: None,
        upn: upn.clone(),
        given_name: given_name.unwrap_or_default().to_string(),
        family_name: family_name.unwrap_or_default().to_string(),
        date_of_birth,
        year_group,
        class_name: class_name.map(str::to_string),
        email,
        roles: vec![],
        active: true,
    };
    (Parsed::Person(person), upn.map(|upn| ("UPN", upn)))
}

fn staff(row: &mut Row<'_>) -> (Parsed, Option<(&'static str, String)>) {
    let id = row.required(Field::StaffId).map(str::to_string);
    let given_name = row.required(Field::Forename);
    let family_name = row.required(Field::Surname);
    let email = row.email();
    if email.is_none() && row.layout.cell(row.record, Field::Email).is_none() {
        row.missing(Field::Email);
    }
    let mut roles = Vec::new();
    if let Some(text) = row.required(Field::Roles) {
        for part in text
            .split([';', ',', '/'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            match role(part) {
                Some(role) => roles.push(role),
                None => row.problem(
                    Some("Roles"),
                    Some(part),
                    "is not a role sheepdog knows".to_string(),
                    "use headteacher, dsl, deputy dsl, technician, teacher, teaching assistant, office, governor, safeguarding governor or trust administrator, separated by ;",
                ),
            }
        }
    }
    let kind = if roles.iter().all(|r| {
        matches!(
            r,
            StaffRole::Governor | StaffRole::SafeguardingGovernor | StaffRole::ChairOfGovernors
        )
    }) && !roles.is_empty()
    {
        PersonKind::Governor
    } else {
        PersonKind::Staff
    };
    let person = adult(kind, id.clone(), given_name, family_name, email, roles);
    (Parsed::Person(person), id.map(|id| ("Staff ID", id)))
}

/// An adult's record (staff, governor, contact), which has none of a
/// pupil's fields.
fn adult(
    kind: PersonKind,
    external_id: Option<String>,
    given_name: Option<&str>,
    family_name: Option<&str>,
    email: Option<String>,
    roles: Vec<StaffRole>,
) -> PersonDetails {
    PersonDetails {
        kind,
        external_id,
        upn: None,
        given_name: given_name.unwrap_or_default().to_string(),
        family_name: family_name.unwrap_or_default().to_string(),
        date_of_birth: None,
        year_group: None,
        class_name: None,
        email,
        roles,
        active: true,
    }
}

fn contact(row: &mut Row<'_>) -> (Parsed, Option<(&'static str, String)>) {
    let id = row.required(Field::ContactId).map(str::to_string);
    let given_name = row.required(Field::Forename);
    let family_name = row.required(Field::Surname);
    let relationship = row.required(Field::Relationship);
    let pupil_upn = row
        .required(Field::PupilUpn)
        .and_then(|text| match upn::validate(text) {
            Ok(upn) => Some(upn),
            Err(e) => {
                row.problem(
                    Some("Pupil UPN"),
                    Some(text),
                    e.to_string(),
                    "copy the pupil's UPN again from the MIS",
                );
                None
            }
        });
    let responsibility = match row.layout.cell(row.record, Field::ParentalResponsibility) {
        None => true,
        Some(text) => match text.to_ascii_lowercase().as_str() {
            "y" | "yes" | "true" | "1" => true,
            "n" | "no" | "false" | "0" => false,
            _ => {
                row.problem(
                    Some("Parental Responsibility"),
                    Some(text),
                    "is not yes or no".to_string(),
                    "write Y or N",
                );
                true
            }
        },
    };
    let priority = row
        .layout
        .cell(row.record, Field::Priority)
        .and_then(|text| match text.parse::<i64>() {
            Ok(n) if (1..=99).contains(&n) => Some(n),
            _ => {
                row.problem(
                    Some("Priority"),
                    Some(text),
                    "is not a contact priority".to_string(),
                    "write a whole number from 1 (first to call)",
                );
                None
            }
        });
    let email = row.email();
    let person = adult(
        PersonKind::Parent,
        id.clone(),
        given_name,
        family_name,
        email,
        vec![],
    );
    let link = ImportedGuardian {
        parent_external_id: id.clone().unwrap_or_default(),
        pupil_upn: pupil_upn.clone().unwrap_or_default(),
        relationship: relationship.unwrap_or_default().to_string(),
        parental_responsibility: responsibility,
        contact_priority: priority,
    };
    // A contact may appear once per child: the key is the pair.
    let key = match (id, pupil_upn) {
        (Some(id), Some(upn)) => Some(("Contact ID", format!("{id} for pupil {upn}"))),
        _ => None,
    };
    (Parsed::Contact(person, link), key)
}

impl<'r> Row<'r> {
    fn problem(&mut self, column: Option<&str>, value: Option<&str>, problem: String, fix: &str) {
        self.problems.push(RowProblem {
            line: self.line,
            column: column.map(str::to_string),
            value: value.map(str::to_string),
            problem,
            fix: fix.to_string(),
        });
    }

    fn missing(&mut self, field: Field) {
        let (name, _) = field.headings();
        self.problem(
            Some(name),
            None,
            "is empty".to_string(),
            "fill it in from the MIS; it is required",
        );
    }

    fn required(&mut self, field: Field) -> Option<&'r str> {
        let value = self.layout.cell(self.record, field);
        if value.is_none() {
            self.missing(field);
        }
        value
    }

    fn email(&mut self) -> Option<String> {
        let text = self.layout.cell(self.record, Field::Email)?;
        let valid = text.split_once('@').is_some_and(|(user, host)| {
            !user.is_empty() && host.contains('.') && !text.contains(char::is_whitespace)
        });
        if valid {
            Some(text.to_ascii_lowercase())
        } else {
            self.problem(
                Some("Email"),
                Some(text),
                "is not an email address".to_string(),
                "write it as name@example.org, or leave the cell empty",
            );
            None
        }
    }

    fn date_of_birth(&mut self, text: &str, today: NaiveDate) -> Option<String> {
        let parsed = ["%d/%m/%Y", "%Y-%m-%d", "%d-%m-%Y", "%d.%m.%Y"]
            .iter()
            .find_map(|format| NaiveDate::parse_from_str(text, format).ok());
        let Some(date) = parsed else {
            self.problem(
                Some("Date of Birth"),
                Some(text),
                "is not a date".to_string(),
                "write DD/MM/YYYY, for example 04/09/2016",
            );
            return None;
        };
        let age = today.year() - date.year();
        if date > today || !(1..=25).contains(&age) {
            self.problem(
                Some("Date of Birth"),
                Some(text),
                format!("gives an age of {age}, not a pupil's"),
                "check the day, month and year order (DD/MM/YYYY)",
            );
            return None;
        }
        Some(date.format("%Y-%m-%d").to_string())
    }

    fn year_group(&mut self, text: &str) -> Option<String> {
        let squashed = text.to_ascii_lowercase().replace(['_', ' '], "");
        let squashed = squashed.trim_start_matches("year").trim_start_matches('y');
        let year = match squashed {
            "n" | "n1" | "n2" | "nursery" => "N".to_string(),
            "r" | "rec" | "reception" => "R".to_string(),
            digits => match digits.parse::<u8>() {
                Ok(n @ 1..=13) => n.to_string(),
                _ => {
                    self.problem(
                        Some("Year"),
                        Some(text),
                        "is not a year group".to_string(),
                        "write N, R or a year from 1 to 13",
                    );
                    return None;
                }
            },
        };
        Some(year)
    }
}

fn role(text: &str) -> Option<StaffRole> {
    let squashed: String = text
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .flat_map(|c| c.to_lowercase())
        .collect();
    Some(match squashed.as_str() {
        "headteacher" | "head" | "principal" | "executiveheadteacher" => StaffRole::Headteacher,
        "dsl" | "designatedsafeguardinglead" | "onlinesafetycoordinator" => StaffRole::Dsl,
        "deputydsl" | "ddsl" | "deputydesignatedsafeguardinglead" => StaffRole::DeputyDsl,
        "technician" | "itechnician" | "ittechnician" | "networkmanager" | "filteringmanager" => {
            StaffRole::Technician
        }
        "teacher" | "classteacher" => StaffRole::Teacher,
        "teachingassistant" | "ta" | "lsa" => StaffRole::TeachingAssistant,
        "office" | "officemanager" | "administrator" | "admin" => StaffRole::Office,
        "governor" => StaffRole::Governor,
        "safeguardinggovernor" => StaffRole::SafeguardingGovernor,
        "chairofgovernors" | "chair" | "chairofthegoverningbody" => StaffRole::ChairOfGovernors,
        "trustadministrator" | "trustadmin" => StaffRole::TrustAdministrator,
        _ => return None,
    })
}

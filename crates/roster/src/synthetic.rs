//! Invented schools for the demo and the tests.
//!
//! Names are built from syllables, so they read as names without being any
//! real child's or adult's; the same seed always gives the same school. The
//! output is CSV in the shape an MIS exports, so the demo and the tests go
//! through the same import as a real school's roster.

use chrono::NaiveDate;

use crate::upn;

/// Primary (nursery to year 6) or secondary (years 7 to 13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Primary,
    Secondary,
}

/// The school to invent.
#[derive(Debug, Clone)]
pub struct SchoolSpec {
    pub phase: Phase,
    pub classes_per_year: usize,
    pub pupils_per_class: usize,
    /// The calendar year in which the current academic year began.
    pub academic_year: i32,
    /// The establishment number used in UPNs.
    pub establishment: u16,
    pub seed: u64,
}

/// A roster as three MIS exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntheticRoster {
    pub pupils_csv: String,
    pub staff_csv: String,
    pub contacts_csv: String,
}

const GIVEN_START: &[&str] = &[
    "Bri", "Co", "Ta", "Mir", "Ela", "Jo", "Ke", "Lu", "Ro", "Sa", "Vi", "Ze", "Al", "Ny", "Fe",
    "Da", "Ori", "Pe", "Qui", "Wy", "Ash", "Ily", "Ma", "Tev",
];
const GIVEN_END: &[&str] = &[
    "sa", "ren", "mel", "lin", "dra", "vo", "na", "rik", "ssa", "ten", "ly", "bel", "mon", "ris",
    "zo", "wen",
];
const FAMILY_START: &[&str] = &[
    "Quor", "Vesk", "Thal", "Brim", "Dorn", "Fenn", "Gald", "Hask", "Jorv", "Kell", "Lorn", "Morr",
    "Nesh", "Pell", "Rusk", "Sorr", "Tamb", "Wend", "Yarl", "Zell",
];
const FAMILY_END: &[&str] = &[
    "bin", "ley", "wick", "mere", "ford", "holt", "by", "stone", "ham", "ridge", "ett", "ow",
];
const CLASS_NAMES: &[&str] = &[
    "Oak", "Ash", "Rowan", "Willow", "Hazel", "Birch", "Cedar", "Elm", "Maple", "Alder",
];

/// A generator of invented names.
#[derive(Debug)]
pub struct Names {
    rng: fastrand::Rng,
}

impl Names {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.rng.usize(..from.len())]
    }

    pub fn given(&mut self) -> String {
        format!("{}{}", self.pick(GIVEN_START), self.pick(GIVEN_END))
    }

    pub fn family(&mut self) -> String {
        format!("{}{}", self.pick(FAMILY_START), self.pick(FAMILY_END))
    }
}

impl Default for SchoolSpec {
    fn default() -> Self {
        Self {
            phase: Phase::Primary,
            classes_per_year: 1,
            pupils_per_class: 12,
            academic_year: 2026,
            establishment: 2001,
            seed: 7,
        }
    }
}

impl SchoolSpec {
    fn years(&self) -> Vec<&'static str> {
        match self.phase {
            Phase::Primary => vec!["R", "1", "2", "3", "4", "5", "6"],
            Phase::Secondary => vec!["7", "8", "9", "10", "11", "12", "13"],
        }
    }

    /// Invents the school's pupils, staff and parent contacts.
    pub fn roster(&self) -> SyntheticRoster {
        let mut names = Names::new(self.seed);
        let mut pupils = Table::new(&[
            "UPN",
            "Legal Surname",
            "Legal Forename",
            "Date of Birth",
            "Year",
            "Reg Group",
        ]);
        let mut staff = Table::new(&["Staff Code", "Surname", "Forename", "Email", "Roles"]);
        let mut contacts = Table::new(&[
            "Contact ID",
            "Surname",
            "Forename",
            "Relationship",
            "Pupil UPN",
            "Parental Responsibility",
            "Priority",
            "Email",
        ]);
        let mut serial = 0u32;
        let mut staff_number = 0u32;
        let mut add_staff = |names: &mut Names, staff: &mut Table, roles: &str| {
            staff_number += 1;
            let (given, family) = (names.given(), names.family());
            let email = format!(
                "{}.{}@school.invalid",
                given.to_lowercase(),
                family.to_lowercase()
            );
            staff.row(&[
                &format!("ST{staff_number:03}"),
                &family,
                &given,
                &email,
                roles,
            ]);
        };
        for role in [
            "Headteacher",
            "DSL; Teacher",
            "Deputy DSL; Teacher",
            "Technician",
            "Office",
        ] {
            add_staff(&mut names, &mut staff, role);
        }
        for governor in ["Governor", "Safeguarding Governor"] {
            add_staff(&mut names, &mut staff, governor);
        }
        for (year_index, year) in self.years().into_iter().enumerate() {
            for class in 0..self.classes_per_year {
                let class_name = self.class_name(year, class);
                add_staff(&mut names, &mut staff, "Teacher");
                for _ in 0..self.pupils_per_class {
                    serial += 1;
                    let upn = self.upn(serial);
                    let family = names.family();
                    let born = self.birthday(year_index, &mut names.rng);
                    pupils.row(&[&upn, &family, &names.given(), &born, year, &class_name]);
                    let carers = 1 + usize::from(names.rng.bool());
                    for carer in 0..carers {
                        let relationship = if carer == 0 { "Mother" } else { "Father" };
                        let given = names.given();
                        let email = format!(
                            "{}.{}{serial}@home.invalid",
                            given.to_lowercase(),
                            family.to_lowercase()
                        );
                        contacts.row(&[
                            &format!("C{serial:05}{carer}"),
                            &family,
                            &given,
                            relationship,
                            &upn,
                            "Y",
                            &(carer + 1).to_string(),
                            &email,
                        ]);
                    }
                }
            }
        }
        SyntheticRoster {
            pupils_csv: pupils.finish(),
            staff_csv: staff.finish(),
            contacts_csv: contacts.finish(),
        }
    }

    fn class_name(&self, year: &str, class: usize) -> String {
        let tree = CLASS_NAMES[class % CLASS_NAMES.len()];
        match self.phase {
            Phase::Primary if self.classes_per_year == 1 => format!("{year}{}", &tree[..1]),
            _ => format!("{year}{tree}"),
        }
    }

    fn upn(&self, serial: u32) -> String {
        // 999 is not a real local authority code.
        let body = format!(
            "999{:04}{:05}",
            self.establishment % 10_000,
            serial % 100_000
        );
        let letter = upn::check_letter(&body).unwrap_or('A');
        format!("{letter}{body}")
    }

    /// A birthday in the academic year for the `year_index`-th year group:
    /// September to August, four to five years before the reception year.
    fn birthday(&self, year_index: usize, rng: &mut fastrand::Rng) -> String {
        let first_year_age = match self.phase {
            Phase::Primary => 5,
            Phase::Secondary => 12,
        };
        let start_year = self.academic_year - first_year_age - year_index as i32;
        let start = NaiveDate::from_ymd_opt(start_year, 9, 1).unwrap_or_default();
        let born = start + chrono::Days::new(rng.u64(0..365));
        born.format("%d/%m/%Y").to_string()
    }
}

/// A CSV table built in memory.
struct Table {
    writer: csv::Writer<Vec<u8>>,
}

impl Table {
    fn new(headers: &[&str]) -> Self {
        let mut table = Self {
            writer: csv::Writer::from_writer(Vec::new()),
        };
        table.row(headers);
        table
    }

    fn row(&mut self, cells: &[&str]) {
        // Writing to a Vec cannot fail.
        let _ = self.writer.write_record(cells);
    }

    fn finish(self) -> String {
        let bytes = self.writer.into_inner().unwrap_or_default();
        String::from_utf8(bytes).unwrap_or_default()
    }
}

use std::path::Path;

use chrono::NaiveDate;
use proptest::prelude::*;
use sheepdog_store::{PersonKind, StaffRole};

use super::*;
use crate::synthetic::{Phase, SchoolSpec};

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
}

fn read(text: &str) -> Result<Roster, RosterError> {
    parse_bytes(text.as_bytes(), Path::new("pupils.csv"), None, today())
}

fn valid_upn(serial: u32) -> String {
    let body = format!("99920010{serial:04}");
    format!("{}{body}", upn::check_letter(&body).unwrap())
}

#[test]
fn a_clean_pupil_export_reads_fully() {
    let text = format!(
        "\u{feff}UPN,Legal Surname,Legal Forename,Date of Birth,Year,Reg Group\n\
         {},Quorbin,Brisa,04/09/2016,Year 5,5O\n\
         {},Vesk,Coren,2021-01-30,Reception,RA\n",
        valid_upn(1),
        valid_upn(2)
    );
    let roster = read(&text).unwrap();
    assert!(roster.is_clean(), "{:?}", roster.problems);
    assert_eq!((roster.kind, roster.rows), (RosterKind::Pupils, 2));
    let pupil = &roster.batch.people[0];
    assert_eq!(pupil.date_of_birth.as_deref(), Some("2016-09-04"));
    assert_eq!(pupil.year_group.as_deref(), Some("5"));
    assert_eq!(roster.batch.people[1].year_group.as_deref(), Some("R"));
}

#[test]
fn bad_date_duplicate_upn_and_empty_cell_are_each_reported() {
    let text = format!(
        "UPN,Surname,Forename,DOB,Year,Class\n\
         {a},Quorbin,Brisa,31/02/2016,5,5O\n\
         {b},Vesk,,04/09/2016,5,5O\n\
         {a},Thalby,Ilysa,04/09/2016,5,5O\n",
        a = valid_upn(1),
        b = valid_upn(2)
    );
    let roster = read(&text).unwrap();
    let found: Vec<(usize, Option<&str>)> = roster
        .problems
        .iter()
        .map(|p| (p.line, p.column.as_deref()))
        .collect();
    assert_eq!(
        found,
        vec![
            (2, Some("Date of Birth")),
            (3, Some("Forename")),
            (4, Some("UPN"))
        ]
    );
    assert!(roster.problems[0].fix.contains("DD/MM/YYYY"));
    assert!(roster.problems[2].problem.contains("line 2"));
    assert_eq!(roster.invalid_lines, vec![2, 3, 4]);
    assert!(roster.batch.people.is_empty());
    let shown = roster.problems[0].to_string();
    assert!(
        shown.starts_with("line 2, column `Date of Birth`, value `31/02/2016`"),
        "{shown}"
    );
}

#[test]
fn a_missing_column_refuses_the_file_with_accepted_headings() {
    let text = format!(
        "UPN,Surname,Forename,Year,Class\n{},A,B,5,5O\n",
        valid_upn(1)
    );
    match read(&text) {
        Err(RosterError::MissingColumns { missing, .. }) => {
            assert_eq!(missing.len(), 1);
            assert_eq!(missing[0].0, "Date of Birth");
            assert!(missing[0].1.contains(&"DOB"));
        }
        other => panic!("expected a missing column, got {other:?}"),
    }
}

#[test]
fn a_mistyped_upn_is_caught_by_its_check_letter() {
    let mut upn = valid_upn(7);
    upn.replace_range(12..13, if upn.ends_with('1') { "2" } else { "1" });
    let text = format!("UPN,Surname,Forename,DOB,Year,Class\n{upn},A,B,01/01/2017,4,4O\n");
    let roster = read(&text).unwrap();
    assert_eq!(roster.problems.len(), 1);
    assert!(
        roster.problems[0].problem.contains("check letter"),
        "{:?}",
        roster.problems
    );
}

#[test]
fn staff_and_contacts_are_detected_and_read() {
    let staff = "Staff Code,Surname,Forename,Email,Roles\n\
                 ST1,Vesk,Talmer,t.vesk@school.invalid,DSL; Teacher\n\
                 ST2,Dornby,Ama,a.dornby@school.invalid,Safeguarding Governor\n\
                 ST3,Pell,Ori,not-an-email,Wizard\n";
    let roster = parse_bytes(staff.as_bytes(), Path::new("s.csv"), None, today()).unwrap();
    assert_eq!(roster.kind, RosterKind::Staff);
    assert_eq!(
        roster.batch.people[0].roles,
        vec![StaffRole::Dsl, StaffRole::Teacher]
    );
    assert_eq!(roster.batch.people[1].kind, PersonKind::Governor);
    let columns: Vec<_> = roster
        .problems
        .iter()
        .map(|p| p.column.as_deref())
        .collect();
    assert_eq!(columns, vec![Some("Email"), Some("Roles")]);

    let contacts = format!(
        "Contact ID,Surname,Forename,Relationship,Pupil UPN,Parental Responsibility,Priority\n\
         C1,Quorbin,Ashsa,Mother,{},N,1\n",
        valid_upn(1)
    );
    let roster = parse_bytes(contacts.as_bytes(), Path::new("c.csv"), None, today()).unwrap();
    assert!(roster.is_clean(), "{:?}", roster.problems);
    assert_eq!(roster.kind, RosterKind::Contacts);
    assert!(!roster.batch.guardians[0].parental_responsibility);
}

#[test]
fn synthetic_rosters_import_cleanly_and_repeat_by_seed() {
    for phase in [Phase::Primary, Phase::Secondary] {
        let spec = SchoolSpec {
            phase,
            classes_per_year: 2,
            pupils_per_class: 20,
            ..SchoolSpec::default()
        };
        let made = spec.roster();
        assert_eq!(made, spec.roster());
        let today = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        for (csv, kind) in [
            (&made.pupils_csv, RosterKind::Pupils),
            (&made.staff_csv, RosterKind::Staff),
            (&made.contacts_csv, RosterKind::Contacts),
        ] {
            let roster =
                parse_bytes(csv.as_bytes(), Path::new("synthetic.csv"), None, today).unwrap();
            assert_eq!(roster.kind, kind);
            assert!(
                roster.is_clean(),
                "{phase:?} {kind}: {:?}",
                &roster.problems[..1]
            );
        }
    }
}

proptest! {
    #[test]
    fn any_bytes_give_a_report_or_an_error_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_bytes(&bytes, Path::new("fuzz.csv"), Some(RosterKind::Pupils), today());
    }

    #[test]
    fn any_cells_under_a_valid_header_never_panic(cells in proptest::collection::vec("[^\n\r\"]{0,16}", 6..18)) {
        let mut text = String::from("UPN,Surname,Forename,DOB,Year,Class\n");
        for row in cells.chunks(6) {
            text.push_str(&row.iter().map(|c| c.replace(',', ";")).collect::<Vec<_>>().join(","));
            text.push('\n');
        }
        let roster = read(&text).unwrap();
        prop_assert_eq!(roster.batch.people.len() + roster.invalid_lines.len(), roster.rows);
    }
}

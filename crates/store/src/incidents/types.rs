//! The words of an incident record: what it is about, where it is in the
//! flowchart, and the entries that follow it.

use chrono::{DateTime, Utc};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::StoreError;

/// How soon the safeguarding team must look at a concern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    Routine,
    /// Today, before the end of the school day.
    Today,
    /// Now: a child may be at risk.
    Immediate,
}

/// Where an incident came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A member of staff logged a concern.
    Concern,
    /// The DSL team escalated a monitoring alert.
    Alert,
    /// A blocked-access (or other) decision event.
    Event,
}

/// Whom a concern is about; this decides who may read it (R4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum About {
    Pupil,
    /// A member of staff, volunteer or contractor: an allegation, which
    /// goes to the headteacher and may need the LADO.
    Staff,
    /// The headteacher: goes to the chair of governors and the LADO.
    Headteacher,
    Other,
}

/// Who handles an incident and may read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// The designated safeguarding lead, deputies and the headteacher.
    Dsl,
    /// The headteacher alone (concerns about staff).
    Headteacher,
    /// The chair of governors alone (concerns about the headteacher).
    ChairOfGovernors,
}

/// The kinds of suspected illegal material or activity that send an
/// incident down the flowchart's illegal path (R2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IllegalKind {
    ChildSexualAbuseImages,
    Grooming,
    ObsceneMaterialSentToChild,
    /// Adult material that may breach the Obscene Publications Act.
    ObscenePublications,
    CriminallyRacistMaterial,
    TerrorismOrExtremism,
    ComputerMisuse,
    OtherCriminalConduct,
}

/// The flowchart's first question and its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "path", content = "kind")]
pub enum Path {
    /// Not yet answered: is illegal material or activity suspected?
    Undecided,
    /// Yes: the fixed steps, the police.
    Illegal(IllegalKind),
    /// No: the school's internal procedure with a record of review.
    Internal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    Open,
    Closed,
}

/// What a person is to an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvolvedRole {
    /// A pupil or other person the concern is for or involves.
    Involved,
    /// The person the concern or allegation is about. They can never open
    /// the record, whatever roles they hold.
    Subject,
    Witness,
}

/// A person on an incident: someone the school holds a record of, or a
/// description of someone it does not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Involved {
    pub person_id: Option<i64>,
    pub description: Option<String>,
    pub role: InvolvedRole,
}

/// A concern to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewIncident {
    /// `content`, `contact`, `conduct`, `commerce`, or a monitoring
    /// category (`self-harm`, `bullying`…).
    pub category: String,
    pub summary: String,
    pub description: String,
    /// When it happened; earlier days are allowed and shown as recorded
    /// late.
    pub occurred_at: DateTime<Utc>,
    pub device: Option<String>,
    pub location: Option<String>,
    pub urgency: Urgency,
    pub about: About,
    pub people: Vec<Involved>,
    /// The alert this escalates, if any.
    pub alert_id: Option<i64>,
    /// The decision event this concerns, if any.
    pub event_id: Option<i64>,
}

/// A person on a stored incident, with their name when the school holds a
/// record of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvolvedPerson {
    pub id: i64,
    pub person_id: Option<i64>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub role: InvolvedRole,
}

/// The debrief that closes an incident (R6).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosingReview {
    pub debrief: String,
    pub lessons: String,
    pub policy_changes: String,
}

/// A stored incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incident {
    pub id: i64,
    pub school_id: i64,
    pub reference: String,
    pub category: String,
    pub summary: String,
    pub description: String,
    pub occurred_at: String,
    pub recorded_at: String,
    /// Recorded on a later day than it happened: shown as such (R1 asks for
    /// the same day).
    pub recorded_late: bool,
    pub device: Option<String>,
    pub location: Option<String>,
    pub urgency: Urgency,
    pub origin: Origin,
    pub alert_id: Option<i64>,
    pub event_id: Option<i64>,
    pub about: About,
    pub route: Route,
    /// A concern about an adult who works with children needs a LADO
    /// referral (R4).
    pub lado_referral_needed: bool,
    pub path: Path,
    pub status: IncidentStatus,
    pub outcome: Option<String>,
    pub closing_review: Option<ClosingReview>,
    pub closed_at: Option<String>,
    pub closed_by: Option<String>,
    pub retention_rule: String,
    pub retain_until: String,
    pub created_by: String,
    pub people: Vec<InvolvedPerson>,
}

/// What a member of staff gets back after logging a concern: enough to
/// quote it, nothing of the record they may not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receipt {
    pub id: i64,
    pub reference: String,
    pub route: Route,
}

/// The fixed steps of the illegal path, in order (R2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IllegalStep {
    Stop,
    IsolateDevice,
    ReportPolice,
    ReportIwf,
    ReportCeop,
    RecordReferences,
    AwaitPolice,
}

/// Outside bodies an incident can be referred to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Agency {
    Police,
    ChildrensSocialCare,
    Lado,
    Iwf,
    Ceop,
    Prevent,
}

/// How parents or carers were told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactMethod {
    InPerson,
    Phone,
    Email,
    Letter,
}

/// What the reviewers decided should happen (the policy's list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewAction {
    /// The concern has no substance.
    NoFurtherAction,
    InternalResponse,
    Discipline,
    LocalAuthority,
    Police,
}

/// One of the two senior reviewers of an internal review (R3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reviewer {
    pub account_id: i64,
    /// Filled from the account when the review is recorded.
    #[serde(default)]
    pub name: String,
    /// The role they reviewed in (`headteacher`, `dsl`, `deputy_dsl`).
    #[serde(default)]
    pub role: String,
}

/// A site or item the reviewers looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewedItem {
    pub url: String,
    pub description: String,
}

/// The record of review for the internal path (R3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternalReview {
    pub reviewers: Vec<Reviewer>,
    /// The designated computer, not used by young people, kept for the
    /// whole procedure.
    pub computer: String,
    pub items: Vec<ReviewedItem>,
    /// Evidence ids of screenshots attached to the review.
    #[serde(default)]
    pub screenshots: Vec<i64>,
    pub conclusion: String,
    pub action: ReviewAction,
}

/// What an entry on an incident records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EntryData {
    Step {
        step: IllegalStep,
        note: Option<String>,
        reference: Option<String>,
    },
    Review(InternalReview),
    Action {
        description: String,
        owner: String,
    },
    Referral {
        agency: Agency,
        reference: Option<String>,
        detail: String,
    },
    ParentContact {
        who: String,
        person_id: Option<i64>,
        method: ContactMethod,
        note: String,
    },
    Note {
        text: String,
    },
    Path {
        from: Path,
        to: Path,
        reason: Option<String>,
    },
    Close {
        outcome: String,
        review: ClosingReview,
    },
    Reopen {
        reason: String,
    },
}

/// An entry on an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncidentEntry {
    pub id: i64,
    pub incident_id: i64,
    pub data: EntryData,
    pub at: String,
    pub due_at: Option<String>,
    pub done_at: Option<String>,
    pub done_by: Option<String>,
    pub created_by: String,
    /// Past its due time and not done.
    pub overdue: bool,
}

/// One line of a pupil's chronology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChronologyItem {
    pub at: String,
    /// `incident`, `alert`, or the entry kind (`action`, `referral`…).
    pub kind: String,
    pub incident_reference: Option<String>,
    pub alert_id: Option<i64>,
    pub summary: String,
}

/// Evidence as listed, without its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvidenceInfo {
    pub id: i64,
    pub incident_id: i64,
    pub file_name: String,
    pub media_type: String,
    pub size: i64,
    /// Hex SHA-256 of the file as uploaded.
    pub sha256: String,
    pub description: Option<String>,
    pub uploaded_by: String,
    pub uploaded_at: String,
}

/// A file to attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceUpload {
    pub file_name: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub description: Option<String>,
}

/// Why evidence is being opened: recorded in the chain of custody.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidencePurpose {
    View,
    Download,
    Export,
}

/// How long incident records are kept (R7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Child protection records: until the youngest pupil involved reaches
    /// this age (25 by default, after IRMS).
    pub years_after_birth: u32,
    /// Records with no pupil's date of birth (concerns about adults, or
    /// pupils without one): this many years after the record was made.
    pub years_otherwise: u32,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            years_after_birth: 25,
            years_otherwise: 25,
        }
    }
}

/// Size and type limits for evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceLimits {
    pub max_bytes: usize,
    /// Media types accepted.
    pub media_types: Vec<String>,
}

impl Default for EvidenceLimits {
    fn default() -> Self {
        Self {
            max_bytes: 25 * 1024 * 1024,
            media_types: [
                "application/pdf",
                "image/png",
                "image/jpeg",
                "image/gif",
                "image/webp",
                "text/plain",
                "message/rfc822",
            ]
            .into_iter()
            .map(str::to_owned)
            .collect(),
        }
    }
}

text_enum!(Urgency, "urgency", {
    Routine => "routine", Today => "today", Immediate => "immediate",
});

text_enum!(Origin, "origin", {
    Concern => "concern", Alert => "alert", Event => "event",
});

text_enum!(About, "about", {
    Pupil => "pupil", Staff => "staff", Headteacher => "headteacher", Other => "other",
});

text_enum!(Route, "route", {
    Dsl => "dsl", Headteacher => "headteacher", ChairOfGovernors => "chair_of_governors",
});

text_enum!(IllegalKind, "illegal kind", {
    ChildSexualAbuseImages => "child_sexual_abuse_images",
    Grooming => "grooming",
    ObsceneMaterialSentToChild => "obscene_material_sent_to_child",
    ObscenePublications => "obscene_publications",
    CriminallyRacistMaterial => "criminally_racist_material",
    TerrorismOrExtremism => "terrorism_or_extremism",
    ComputerMisuse => "computer_misuse",
    OtherCriminalConduct => "other_criminal_conduct",
});

text_enum!(IncidentStatus, "incident status", {
    Open => "open", Closed => "closed",
});

text_enum!(InvolvedRole, "role on the incident", {
    Involved => "involved", Subject => "subject", Witness => "witness",
});

text_enum!(IllegalStep, "step", {
    Stop => "stop", IsolateDevice => "isolate_device", ReportPolice => "report_police",
    ReportIwf => "report_iwf", ReportCeop => "report_ceop",
    RecordReferences => "record_references", AwaitPolice => "await_police",
});

text_enum!(Agency, "agency", {
    Police => "police", ChildrensSocialCare => "childrens_social_care", Lado => "lado",
    Iwf => "iwf", Ceop => "ceop", Prevent => "prevent",
});

text_enum!(ContactMethod, "contact method", {
    InPerson => "in_person", Phone => "phone", Email => "email", Letter => "letter",
});

text_enum!(ReviewAction, "review action", {
    NoFurtherAction => "no_further_action", InternalResponse => "internal_response",
    Discipline => "discipline", LocalAuthority => "local_authority", Police => "police",
});

impl IllegalKind {
    /// How the kind reads on the record and in the form.
    pub fn describe(self) -> &'static str {
        match self {
            Self::ChildSexualAbuseImages => "suspected child sexual abuse images",
            Self::Grooming => "grooming behaviour",
            Self::ObsceneMaterialSentToChild => "obscene material sent to a child",
            Self::ObscenePublications => {
                "adult material that may breach the Obscene Publications Act"
            }
            Self::CriminallyRacistMaterial => "criminally racist material",
            Self::TerrorismOrExtremism => "promotion of terrorism or extremism",
            Self::ComputerMisuse => "an offence under the Computer Misuse Act",
            Self::OtherCriminalConduct => "other criminal conduct, activity or materials",
        }
    }

    /// The fixed steps for this kind, in order: the police always; the IWF
    /// for child sexual abuse images; CEOP for sexual contact with a child.
    pub fn steps(self) -> Vec<IllegalStep> {
        let mut steps = vec![
            IllegalStep::Stop,
            IllegalStep::IsolateDevice,
            IllegalStep::ReportPolice,
        ];
        match self {
            Self::ChildSexualAbuseImages => steps.push(IllegalStep::ReportIwf),
            Self::Grooming | Self::ObsceneMaterialSentToChild => {
                steps.push(IllegalStep::ReportCeop)
            }
            _ => {}
        }
        steps.extend([IllegalStep::RecordReferences, IllegalStep::AwaitPolice]);
        steps
    }
}

impl IllegalStep {
    /// The instruction shown for the step.
    pub fn instruction(self) -> &'static str {
        match self {
            Self::Stop => "Stop. Do not view, copy, print or share the material, not even to show a colleague.",
            Self::IsolateDevice => "Isolate the device and preserve it as it is: do not switch it off, log in or look through it. Any change may hinder the police.",
            Self::ReportPolice => "Report to the police now (101, or 999 if a child is in immediate danger) and record the crime reference.",
            Self::ReportIwf => "Report the web address to the Internet Watch Foundation (report.iwf.org.uk) and record the IWF reference.",
            Self::ReportCeop => "Report to CEOP (ceop.police.uk) and record the reference.",
            Self::RecordReferences => "Record every reference number and the name of each officer spoken to.",
            Self::AwaitPolice => "Wait for the police's instructions before anything else is done with the device or the people involved.",
        }
    }

    /// Steps that are not done until a reference is recorded.
    pub fn needs_reference(self) -> bool {
        matches!(
            self,
            Self::ReportPolice | Self::ReportIwf | Self::ReportCeop
        )
    }
}

impl Path {
    pub(crate) fn columns(self) -> (&'static str, Option<&'static str>) {
        match self {
            Self::Undecided => ("undecided", None),
            Self::Illegal(kind) => ("illegal", Some(kind.as_str())),
            Self::Internal => ("internal", None),
        }
    }

    pub(crate) fn from_columns(path: &str, kind: Option<&str>) -> Result<Self, StoreError> {
        match (path, kind) {
            ("undecided", _) => Ok(Self::Undecided),
            ("internal", _) => Ok(Self::Internal),
            ("illegal", Some(kind)) => Ok(Self::Illegal(kind.parse()?)),
            (other, _) => Err(StoreError::Corrupt {
                entity: "incidents",
                problem: format!("path `{other}` without a kind"),
            }),
        }
    }

    /// Suspected child sexual abuse imagery: no image may be uploaded.
    pub fn forbids_images(self) -> bool {
        self == Self::Illegal(IllegalKind::ChildSexualAbuseImages)
    }
}

impl About {
    /// Who handles a concern about this kind of person (R4).
    pub fn route(self) -> Route {
        match self {
            Self::Pupil | Self::Other => Route::Dsl,
            Self::Staff => Route::Headteacher,
            Self::Headteacher => Route::ChairOfGovernors,
        }
    }
}

impl EntryData {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Step { .. } => "step",
            Self::Review(_) => "review",
            Self::Action { .. } => "action",
            Self::Referral { .. } => "referral",
            Self::ParentContact { .. } => "parent_contact",
            Self::Note { .. } => "note",
            Self::Path { .. } => "path",
            Self::Close { .. } => "close",
            Self::Reopen { .. } => "reopen",
        }
    }

    /// One line for chronologies and lists.
    pub fn summary(&self) -> String {
        match self {
            Self::Step {
                step, reference, ..
            } => match reference {
                Some(r) => format!("step {step} (reference {r})"),
                None => format!("step {step}"),
            },
            Self::Review(r) => format!("record of review: {} ({})", r.conclusion, r.action),
            Self::Action { description, owner } => format!("action for {owner}: {description}"),
            Self::Referral {
                agency, reference, ..
            } => match reference {
                Some(r) => format!("referral to {agency} (reference {r})"),
                None => format!("referral to {agency}"),
            },
            Self::ParentContact { who, method, .. } => format!("{who} informed ({method})"),
            Self::Note { text } => format!("note: {text}"),
            Self::Path { to, .. } => match to {
                Path::Illegal(kind) => format!("illegal path: {}", kind.describe()),
                Path::Internal => "internal procedure".to_owned(),
                Path::Undecided => "path undecided".to_owned(),
            },
            Self::Close { outcome, .. } => format!("closed: {outcome}"),
            Self::Reopen { reason } => format!("reopened: {reason}"),
        }
    }
}

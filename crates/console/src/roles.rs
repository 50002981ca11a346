//! What each role may do: one table, enforced on the server for every page
//! and API call, documented in `docs/console.md` and tested route by route.
//!
//! Need-to-know decides the table. Pupils' records (date of birth, UPN,
//! parents and carers) are for the safeguarding team, the headteacher and
//! the office that keeps them; the filtering manager sees people only as
//! names in lists, to place devices and groups; governors see no individual
//! pupil at all. The filtering log says who visited what, so searching it
//! is for the safeguarding team, the headteacher and the filtering manager
//! (who needs it to explain a block); governors see the dashboard's counts,
//! which name nobody. A role held in one school gives nothing in another; a role
//! held without a school (a trust's) holds in every school.

use serde::Serialize;
use sheepdog_store::{Account, StaffRole};

/// Something the console lets some roles do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Lists of pupils, staff and parents by year and class (names only).
    SeePeople,
    /// One person's record: UPN, date of birth, parents and carers. Every
    /// view is audited.
    SeePersonRecord,
    /// Upload a roster export from the MIS.
    ImportRoster,
    /// Groups and the filtering profile each applies.
    SeeGroups,
    /// The device registry.
    SeeDevices,
    /// Register and edit devices.
    ManageDevices,
    /// The audit log and its export.
    SeeAudit,
    /// Add people to groups and take them out: membership decides the
    /// filtering profile, so this is the filtering manager's (F8).
    ManageGroups,
    /// Counts of filtering decisions and alerts: no individual is named.
    SeeDashboard,
    /// Search and export the decision log, which says who visited what.
    /// Every search is audited.
    SearchLogs,
    /// Send text from other sources (device agents, chat exports) to
    /// monitoring through the API.
    SubmitMonitoring,
    /// The monitoring alert queue: matched text, acknowledging, dismissing
    /// and escalating. The safeguarding team's alone (M3).
    TriageAlerts,
    /// Log a safeguarding concern: every member of staff, and governors,
    /// may; they get a reference back, not the record.
    LogConcern,
    /// The list of incidents; each incident is still shown only to those
    /// its route names, and never to the person it is about (R4).
    SeeIncidents,
    /// The governance registers: training, policies and the yearly
    /// filtering and monitoring review (G4–G6).
    SeeGovernance,
    /// Keep them: publish agreements and record signatures, record
    /// training, consent, policies and reviews (G2–G6).
    ManageGovernance,
    /// Who may appear in images, by class and purpose (G3): for the staff
    /// who take and publish photographs.
    SeeImageConsent,
    /// The hardware and software inventory, disposals and leavers'
    /// equipment (G7).
    ManageAssets,
    /// Ask for a blocked site for a lesson, and follow one's own requests.
    RequestUnblock,
    /// Approve or reject unblock requests (F8, F11).
    DecideRequests,
    /// Change filtering: over-blocking reports, exceptions, group
    /// membership. The filtering manager's alone; every change is audited.
    ChangeFiltering,
    /// The change log of filtering and its export.
    SeeFilteringChanges,
    /// The filtering policy document (F14).
    SeeFilteringPolicy,
}

impl Permission {
    pub const ALL: &'static [Permission] = &[
        Self::SeePeople,
        Self::SeePersonRecord,
        Self::ImportRoster,
        Self::SeeGroups,
        Self::SeeDevices,
        Self::ManageDevices,
        Self::SeeAudit,
        Self::ManageGroups,
        Self::SeeDashboard,
        Self::SearchLogs,
        Self::SubmitMonitoring,
        Self::TriageAlerts,
        Self::LogConcern,
        Self::SeeIncidents,
        Self::SeeGovernance,
        Self::ManageGovernance,
        Self::SeeImageConsent,
        Self::ManageAssets,
        Self::RequestUnblock,
        Self::DecideRequests,
        Self::ChangeFiltering,
        Self::SeeFilteringChanges,
        Self::SeeFilteringPolicy,
    ];

    /// How the permission reads in the matrix.
    pub fn describe(self) -> &'static str {
        match self {
            Self::SeePeople => "see lists of pupils, staff and parents",
            Self::SeePersonRecord => "open a person's record (audited)",
            Self::ImportRoster => "import a roster from the MIS",
            Self::SeeGroups => "see groups and their filtering profiles",
            Self::SeeDevices => "see the device registry",
            Self::ManageDevices => "register and edit devices",
            Self::SeeAudit => "read and export the audit log",
            Self::ManageGroups => "add people to groups and take them out",
            Self::SeeDashboard => "see the dashboard of filtering and alert counts",
            Self::SearchLogs => "search and export the filtering log (audited)",
            Self::SubmitMonitoring => "send text from other sources to monitoring",
            Self::TriageAlerts => "triage monitoring alerts (matched text is audited)",
            Self::LogConcern => "log a safeguarding concern",
            Self::SeeIncidents => "work on the safeguarding incidents you are allowed to open",
            Self::SeeGovernance => "see training, the policy register and filtering reviews",
            Self::ManageGovernance => {
                "keep agreements, image consent, training, policies and reviews"
            }
            Self::SeeImageConsent => "see who may appear in images",
            Self::ManageAssets => "keep the asset register",
            Self::RequestUnblock => "ask for a blocked site for a lesson",
            Self::DecideRequests => "approve or reject unblock requests",
            Self::ChangeFiltering => "change filtering (over-blocking reports, exceptions)",
            Self::SeeFilteringChanges => "read and export the filtering change log",
            Self::SeeFilteringPolicy => "read the filtering policy document",
        }
    }
}

/// Whether `role` grants `permission`: the permission matrix.
pub fn grants(role: StaffRole, permission: Permission) -> bool {
    use Permission::*;
    use StaffRole::*;
    match permission {
        SeePeople => matches!(
            role,
            Headteacher
                | Dsl
                | DeputyDsl
                | Technician
                | Teacher
                | TeachingAssistant
                | Office
                | TrustAdministrator
        ),
        SeePersonRecord => matches!(
            role,
            Headteacher | Dsl | DeputyDsl | Office | TrustAdministrator
        ),
        ImportRoster => matches!(role, Headteacher | Office | TrustAdministrator),
        SeeGroups => matches!(
            role,
            Headteacher
                | Dsl
                | DeputyDsl
                | Technician
                | Governor
                | SafeguardingGovernor
                | ChairOfGovernors
                | TrustAdministrator
        ),
        SeeDevices => matches!(
            role,
            Headteacher | Dsl | DeputyDsl | Technician | TrustAdministrator
        ),
        ManageDevices => matches!(role, Technician | TrustAdministrator),
        SeeAudit => matches!(role, Headteacher | Dsl | TrustAdministrator),
        ManageGroups => matches!(role, Technician | TrustAdministrator),
        SeeDashboard => matches!(
            role,
            Headteacher
                | Dsl
                | DeputyDsl
                | Technician
                | Governor
                | SafeguardingGovernor
                | ChairOfGovernors
                | TrustAdministrator
        ),
        SearchLogs => matches!(
            role,
            Headteacher | Dsl | DeputyDsl | Technician | TrustAdministrator
        ),
        SubmitMonitoring => matches!(role, Dsl | DeputyDsl | Technician | TrustAdministrator),
        TriageAlerts => matches!(role, Dsl | DeputyDsl),
        LogConcern => true,
        // The readers of some route: the store decides incident by incident.
        SeeIncidents => matches!(role, Headteacher | Dsl | DeputyDsl | ChairOfGovernors),
        SeeGovernance => matches!(
            role,
            Headteacher
                | Dsl
                | DeputyDsl
                | Office
                | Governor
                | SafeguardingGovernor
                | ChairOfGovernors
                | TrustAdministrator
        ),
        ManageGovernance => matches!(
            role,
            Headteacher | Dsl | DeputyDsl | Office | TrustAdministrator
        ),
        SeeImageConsent => matches!(
            role,
            Headteacher
                | Dsl
                | DeputyDsl
                | Office
                | Teacher
                | TeachingAssistant
                | TrustAdministrator
        ),
        ManageAssets => matches!(role, Headteacher | Technician | Office | TrustAdministrator),
        RequestUnblock => matches!(
            role,
            Headteacher
                | Dsl
                | DeputyDsl
                | Technician
                | Teacher
                | TeachingAssistant
                | TrustAdministrator
        ),
        // The store's `requests::APPROVERS`.
        DecideRequests => matches!(role, Dsl | DeputyDsl | Technician),
        // The store's `requests::FILTERING_MANAGERS`.
        ChangeFiltering => matches!(role, Technician | TrustAdministrator),
        SeeFilteringChanges => matches!(role, Headteacher | Dsl | Technician | TrustAdministrator),
        SeeFilteringPolicy => true,
    }
}

/// Whether `account` may do `permission` in `school_id`.
pub fn account_can(account: &Account, permission: Permission, school_id: i64) -> bool {
    !account.disabled
        && account.roles.iter().any(|held| {
            held.school_id.is_none_or(|school| school == school_id) && grants(held.role, permission)
        })
}

/// Whether `account` may do `permission` in any school at all.
pub fn account_can_somewhere(account: &Account, permission: Permission) -> bool {
    !account.disabled
        && account
            .roles
            .iter()
            .any(|held| grants(held.role, permission))
}

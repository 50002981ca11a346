//! The core records that every capability builds on.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::StoreError;

/// A school. A deployment may hold several: a trust.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct School {
    pub id: i64,
    /// The DfE unique reference number, where known.
    pub urn: Option<String>,
    pub name: String,
    pub timezone: String,
}

/// What a person is to the school.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PersonKind {
    Pupil,
    Staff,
    Parent,
    Governor,
    Visitor,
}

/// A person known to the school.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub id: i64,
    pub school_id: i64,
    #[serde(flatten)]
    pub details: PersonDetails,
}

/// A person's details, without the identity the store gives them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonDetails {
    pub kind: PersonKind,
    /// The MIS's own identifier (staff code, contact ID), for re-imports.
    pub external_id: Option<String>,
    /// Unique pupil number, for pupils.
    pub upn: Option<String>,
    pub given_name: String,
    pub family_name: String,
    /// ISO 8601 date, `YYYY-MM-DD`.
    pub date_of_birth: Option<String>,
    /// `N` (nursery), `R` (reception) or `1`–`13`.
    pub year_group: Option<String>,
    /// Registration group or class.
    pub class_name: Option<String>,
    pub email: Option<String>,
    /// Staff roles, for staff and governors.
    pub roles: Vec<StaffRole>,
    pub active: bool,
}

/// The safeguarding and governance roles a person can hold (G1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaffRole {
    Headteacher,
    Dsl,
    DeputyDsl,
    /// The filtering manager.
    Technician,
    Teacher,
    TeachingAssistant,
    Office,
    Governor,
    SafeguardingGovernor,
    /// Receives concerns about the headteacher (R4).
    ChairOfGovernors,
    TrustAdministrator,
}

/// A parent or carer's link to a pupil.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guardianship {
    pub parent_id: i64,
    pub pupil_id: i64,
    pub relationship: String,
    pub parental_responsibility: bool,
    pub contact_priority: Option<i64>,
}

/// What a group is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupKind {
    /// A filtering profile's group (EYFS, KS2, staff, guest…).
    Filtering,
    Year,
    Class,
    Custom,
}

/// A set of people; membership decides the filtering profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: i64,
    pub school_id: i64,
    pub name: String,
    pub kind: GroupKind,
    /// The policy group whose filtering applies to members.
    pub filtering_profile: Option<String>,
}

/// Who owns a device, which decides how it is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ownership {
    School,
    Byod,
    Guest,
}

/// A device on the school network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub id: i64,
    pub school_id: i64,
    #[serde(flatten)]
    pub details: DeviceDetails,
}

/// A device's details, without the identity the store gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceDetails {
    /// The device's name or asset tag.
    pub name: String,
    /// `aa:bb:cc:dd:ee:ff`, lower case.
    pub mac: Option<String>,
    /// An address (`10.0.4.17`) or a range (`10.0.4.0/24`).
    pub address: Option<String>,
    pub owner_id: Option<i64>,
    pub group_id: Option<i64>,
    pub ownership: Ownership,
}

/// A console sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub person_id: Option<i64>,
    pub disabled: bool,
    pub roles: Vec<AccountRole>,
}

/// A role held by an account, in one school or (without a school) across
/// the whole deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRole {
    pub school_id: Option<i64>,
    pub role: StaffRole,
}

/// Rows counted by kind, for status pages and the demo banner.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Census {
    pub schools: i64,
    pub pupils: i64,
    pub staff: i64,
    pub parents: i64,
    pub groups: i64,
    pub devices: i64,
    pub accounts: i64,
}

macro_rules! text_enum {
    ($type:ident, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $type {
            pub const ALL: &'static [$type] = &[$($type::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($type::$variant => $text),+ }
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $type {
            type Err = StoreError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($text => Ok($type::$variant),)+
                    other => Err(StoreError::invalid(
                        $what,
                        format!(
                            "`{other}` is not one of: {}",
                            [$($text),+].join(", ")
                        ),
                    )),
                }
            }
        }
    };
}

text_enum!(PersonKind, "person kind", {
    Pupil => "pupil", Staff => "staff", Parent => "parent",
    Governor => "governor", Visitor => "visitor",
});

text_enum!(StaffRole, "role", {
    Headteacher => "headteacher", Dsl => "dsl", DeputyDsl => "deputy_dsl",
    Technician => "technician", Teacher => "teacher",
    TeachingAssistant => "teaching_assistant", Office => "office",
    Governor => "governor", SafeguardingGovernor => "safeguarding_governor",
    ChairOfGovernors => "chair_of_governors", TrustAdministrator => "trust_administrator",
});

text_enum!(GroupKind, "group kind", {
    Filtering => "filtering", Year => "year", Class => "class", Custom => "custom",
});

text_enum!(Ownership, "ownership", {
    School => "school", Byod => "byod", Guest => "guest",
});

impl Account {
    /// Whether the account, enabled, holds one of `roles` in `school_id`
    /// (or across the deployment).
    pub fn holds(&self, school_id: i64, roles: &[StaffRole]) -> bool {
        !self.disabled
            && self.roles.iter().any(|held| {
                held.school_id.is_none_or(|s| s == school_id) && roles.contains(&held.role)
            })
    }

    /// Whether the account, enabled, holds any role in `school_id`.
    pub fn belongs_to(&self, school_id: i64) -> bool {
        !self.disabled
            && self
                .roles
                .iter()
                .any(|held| held.school_id.is_none_or(|s| s == school_id))
    }
}

impl PersonDetails {
    /// "Given Family", as lists and reports show a person.
    pub fn full_name(&self) -> String {
        format!("{} {}", self.given_name, self.family_name)
    }
}

impl DeviceDetails {
    /// Checks and tidies the MAC and address: a MAC is six pairs of hex
    /// digits (stored lower case with colons), an address an IP or a CIDR.
    pub fn normalised(mut self) -> Result<Self, StoreError> {
        if self.name.trim().is_empty() {
            return Err(StoreError::invalid(
                "device name",
                "a device needs a name or asset tag",
            ));
        }
        if let Some(mac) = &self.mac {
            let digits: String = mac.chars().filter(char::is_ascii_hexdigit).collect();
            let separators_ok = mac
                .chars()
                .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '-' | '.'));
            if digits.len() != 12 || !separators_ok {
                return Err(StoreError::invalid(
                    "MAC address",
                    format!("`{mac}` is not a MAC address; write it as aa:bb:cc:dd:ee:ff"),
                ));
            }
            let lower = digits.to_ascii_lowercase();
            let pairs: Vec<&str> = (0..6).map(|i| &lower[i * 2..i * 2 + 2]).collect();
            self.mac = Some(pairs.join(":"));
        }
        if let Some(address) = &self.address {
            let parsed = address
                .parse::<ipnet::IpNet>()
                .map(|net| net.trunc().to_string())
                .or_else(|_| address.parse::<std::net::IpAddr>().map(|ip| ip.to_string()));
            match parsed {
                Ok(canonical) => self.address = Some(canonical),
                Err(_) => {
                    return Err(StoreError::invalid(
                        "address",
                        format!(
                        "`{address}` is not an IP address or range; write 10.0.4.17 or 10.0.4.0/24"
                    ),
                    ))
                }
            }
        }
        Ok(self)
    }
}

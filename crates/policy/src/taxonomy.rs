//! The category taxonomy sheepdog ships.
//!
//! It covers the UK Safer Internet Centre's "appropriate filtering"
//! categories (standard F2), circumvention (F5), the categories schools
//! commonly choose, and the two illegal lists (F1). [`UT1_MAP`] says which
//! sheepdog category each UT1 category folder belongs to. Schools add their
//! own categories in the policy document.

use serde::{Deserialize, Serialize};

/// What kind of category this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CategoryKind {
    /// Illegal content: always blocked, for everyone, by law.
    Illegal,
    /// Content from the UKSIC list of harmful categories.
    Harmful,
    /// Ways around the filter.
    Circumvention,
    /// Categories a school decides on.
    SchoolChoice,
    /// Added by the school, or found in a list and not mapped.
    Local,
}

/// A category of the shipped taxonomy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShippedCategory {
    /// The identifier used in policies and logs.
    pub id: &'static str,
    /// A short title for people.
    pub title: &'static str,
    /// Its kind.
    pub kind: CategoryKind,
}

const fn c(id: &'static str, title: &'static str, kind: CategoryKind) -> ShippedCategory {
    ShippedCategory { id, title, kind }
}

use CategoryKind::{Circumvention, Harmful, Illegal, SchoolChoice};

/// The categories sheepdog ships, in display order.
pub const SHIPPED_CATEGORIES: &[ShippedCategory] = &[
    c("iwf", "Child sexual abuse content (IWF list)", Illegal),
    c("ctiru", "Unlawful terrorist content (CTIRU list)", Illegal),
    c("pornography", "Pornography", Harmful),
    c("gambling", "Gambling", Harmful),
    c("drugs", "Drugs and substance abuse", Harmful),
    c("extremism", "Extremism", Harmful),
    c("hate-speech", "Hate speech", Harmful),
    c("discrimination", "Discrimination", Harmful),
    c(
        "self-harm",
        "Self harm, suicide and eating disorders",
        Harmful,
    ),
    c("violence", "Violence", Harmful),
    c("malware", "Malware, hacking and phishing", Harmful),
    c("piracy", "Piracy and copyright theft", Harmful),
    c("misinformation", "Mis- and disinformation", Harmful),
    c("vpn", "VPN services", Circumvention),
    c("proxy", "Proxies and anonymisers", Circumvention),
    c("doh", "DNS-over-HTTPS resolvers", Circumvention),
    c("social-networking", "Social networking", SchoolChoice),
    c("games", "Games", SchoolChoice),
    c("dating", "Dating", SchoolChoice),
    c("chat", "Chat and messaging", SchoolChoice),
    c("webmail", "Webmail", SchoolChoice),
    c("streaming", "Audio and video streaming", SchoolChoice),
    c("generative-ai", "Generative AI tools", SchoolChoice),
    c("uncategorised", "Uncategorised list entries", SchoolChoice),
];

/// UT1 category folder names and the sheepdog category each belongs to.
/// UT1 folders not in this table keep their own name as a local category.
pub const UT1_MAP: &[(&str, &str)] = &[
    ("adult", "pornography"),
    ("porn", "pornography"),
    ("agressif", "violence"),
    ("aggressive", "violence"),
    ("violence", "violence"),
    ("dangerous_material", "violence"),
    ("gambling", "gambling"),
    ("arjel", "gambling"),
    ("drogue", "drugs"),
    ("drugs", "drugs"),
    ("hacking", "malware"),
    ("malware", "malware"),
    ("phishing", "malware"),
    ("cryptojacking", "malware"),
    ("ddos", "malware"),
    ("stalkerware", "malware"),
    ("warez", "piracy"),
    ("fakenews", "misinformation"),
    ("vpn", "vpn"),
    ("redirector", "proxy"),
    ("strict_redirector", "proxy"),
    ("strong_redirector", "proxy"),
    ("proxy", "proxy"),
    ("doh", "doh"),
    ("social_networks", "social-networking"),
    ("games", "games"),
    ("dating", "dating"),
    ("chat", "chat"),
    ("webmail", "webmail"),
    ("audio-video", "streaming"),
    ("ai", "generative-ai"),
];

/// The sheepdog category for a UT1 folder name, if the table has one.
pub fn ut1_category(name: &str) -> Option<&'static str> {
    UT1_MAP.iter().find(|(u, _)| *u == name).map(|(_, s)| *s)
}

/// A shipped category by identifier.
pub fn shipped(id: &str) -> Option<&'static ShippedCategory> {
    SHIPPED_CATEGORIES.iter().find(|c| c.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_the_uksic_categories_and_circumvention() {
        for id in [
            "pornography",
            "gambling",
            "drugs",
            "extremism",
            "hate-speech",
            "discrimination",
            "self-harm",
            "violence",
            "malware",
            "piracy",
            "misinformation",
            "vpn",
            "proxy",
            "doh",
            "social-networking",
            "games",
            "dating",
            "chat",
            "webmail",
            "streaming",
            "generative-ai",
        ] {
            assert!(shipped(id).is_some(), "{id} missing");
        }
        assert_eq!(shipped("iwf").map(|c| c.kind), Some(CategoryKind::Illegal));
        assert_eq!(
            shipped("ctiru").map(|c| c.kind),
            Some(CategoryKind::Illegal)
        );
    }

    #[test]
    fn ut1_map_targets_exist() {
        for (_, target) in UT1_MAP {
            assert!(shipped(target).is_some(), "{target}");
        }
    }
}

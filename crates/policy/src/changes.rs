//! What changed between two versions of the policy file, item by item, for
//! the change log (issue 9, F8).
//!
//! The comparison works on the document's canonical JSON rather than on
//! [`PolicyDocument`] itself, so a copy stored by an older version of
//! sheepdog, with fields since added or renamed, is still compared: a
//! field it lacks shows as added, one this version lacks as removed.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::PolicyDocument;

/// One changed item: `item` names it, `before` and `after` are its JSON
/// (absent when it is added or removed).
#[derive(Debug, Clone, PartialEq)]
pub struct ItemChange {
    pub item: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

impl PolicyDocument {
    /// The document as canonical JSON (object keys sorted), the form a
    /// copy is stored and compared in.
    pub fn canonical_json(&self) -> String {
        // A document always serialises to a JSON value; Null would only
        // compare as "everything changed", never hide a change.
        let value = serde_json::to_value(self).unwrap_or(Value::Null);
        value.to_string()
    }
}

/// The items that differ from `before` (canonical JSON of the copy last
/// applied) to `after`. A `before` that is not JSON compares as empty.
pub fn policy_changes(before: &str, after: &PolicyDocument) -> Vec<ItemChange> {
    let before: Value = serde_json::from_str(before).unwrap_or(Value::Null);
    let after = serde_json::to_value(after).unwrap_or(Value::Null);
    fold_groups(value_changes(&before, &after), &before, &after)
}

fn value_changes(before: &Value, after: &Value) -> Vec<ItemChange> {
    let old = items(before);
    let new = items(after);
    let mut names: Vec<&String> = old.keys().chain(new.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let (b, a) = (old.get(name), new.get(name));
            (b != a).then(|| ItemChange {
                item: name.clone(),
                before: b.cloned(),
                after: a.cloned(),
            })
        })
        .collect()
}

/// The items of a document, each named for people: a group's category
/// action, its schedule rules, safe search and exceptions; a list; a
/// category definition; a schedule… A group present on one side only is
/// one item, not one per field.
fn items(doc: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let Some(top) = doc.as_object() else {
        return out;
    };
    for (key, value) in top {
        match key.as_str() {
            "categories" => keyed(&mut out, "category", "id", value),
            "lists" => keyed(&mut out, "list", "name", value),
            "schedules" => keyed(&mut out, "schedule", "name", value),
            "groups" => {
                for (name, group) in by_key(value, "name") {
                    group_items(&mut out, &name, group);
                }
            }
            "ut1_map" | "local" | "school" => match value.as_object() {
                Some(fields) => {
                    for (field, v) in fields {
                        out.insert(format!("{key} {field}"), v.clone());
                    }
                }
                None => {
                    out.insert(key.clone(), value.clone());
                }
            },
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    out
}

fn group_items(out: &mut BTreeMap<String, Value>, name: &str, group: &Value) {
    let Some(fields) = group.as_object() else {
        out.insert(format!("group {name}"), group.clone());
        return;
    };
    // The group's existence, so that adding or removing it is one item
    // and its fields follow it.
    out.insert(format!("group {name}"), Value::Bool(true));
    for (field, value) in fields {
        match field.as_str() {
            "name" => {}
            "categories" => {
                if let Some(actions) = value.as_object() {
                    for (category, action) in actions {
                        out.insert(format!("group {name}: category {category}"), action.clone());
                    }
                }
            }
            _ => {
                out.insert(format!("group {name}: {field}"), value.clone());
            }
        }
    }
}

fn keyed(out: &mut BTreeMap<String, Value>, label: &str, key: &str, value: &Value) {
    for (name, item) in by_key(value, key) {
        out.insert(format!("{label} {name}"), item.clone());
    }
}

/// The entries of an array by the text of `key` in each; an entry without
/// one by its position.
fn by_key<'a>(value: &'a Value, key: &str) -> Vec<(String, &'a Value)> {
    value
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .enumerate()
                .map(|(i, entry)| {
                    let name = entry
                        .get(key)
                        .and_then(Value::as_str)
                        .map_or_else(|| format!("#{}", i + 1), str::to_owned);
                    (name, entry)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Folds the items of an added or removed group into the group's own item,
/// so the change log says "group ks5 added" with the whole group, not one
/// line per field.
fn fold_groups(changes: Vec<ItemChange>, before: &Value, after: &Value) -> Vec<ItemChange> {
    let groups = |doc: &Value| -> BTreeMap<String, Value> {
        doc.get("groups")
            .map(|g| {
                by_key(g, "name")
                    .into_iter()
                    .map(|(n, v)| (n, v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (old, new) = (groups(before), groups(after));
    let whole: Vec<(String, Option<Value>, Option<Value>)> = old
        .keys()
        .chain(new.keys())
        .filter(|name| old.contains_key(*name) != new.contains_key(*name))
        .map(|name| (name.clone(), old.get(name).cloned(), new.get(name).cloned()))
        .collect();
    let mut out: Vec<ItemChange> = changes
        .into_iter()
        .filter(|c| {
            !whole.iter().any(|(name, _, _)| {
                c.item == format!("group {name}") || c.item.starts_with(&format!("group {name}: "))
            })
        })
        .collect();
    for (name, before, after) in whole {
        out.push(ItemChange {
            item: format!("group {name}"),
            before,
            after,
        });
    }
    out.sort_by(|a, b| a.item.cmp(&b.item));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"
        [school]
        name = "Example Primary"
        [[categories]]
        id = "games"
        title = "Games"
        [[lists]]
        name = "school-deny"
        source = "lists/deny.txt"
        format = "domains"
        [[schedules]]
        name = "lunch"
        days = ["mon"]
        start = "12:00"
        end = "13:00"
        [[groups]]
        name = "ks2"
        default = "allow"
        categories = { adult = "block", games = "block" }
        [[groups]]
        name = "staff"
    "#;

    fn doc(text: &str) -> PolicyDocument {
        match PolicyDocument::from_toml(text) {
            Ok(doc) => doc,
            Err(e) => panic!("test policy: {e}"),
        }
    }

    #[test]
    fn the_same_policy_has_no_changes_and_its_json_is_canonical() {
        let a = doc(BEFORE);
        assert_eq!(a.canonical_json(), doc(BEFORE).canonical_json());
        assert!(policy_changes(&a.canonical_json(), &a).is_empty());
    }

    #[test]
    fn each_changed_item_is_named_with_before_and_after() {
        let before = doc(BEFORE).canonical_json();
        let edited = BEFORE
            .replace("games = \"block\"", "games = \"allow\", social = \"block\"")
            .replace(
                "source = \"lists/deny.txt\"",
                "source = \"lists/deny2.txt\"",
            )
            .replace("end = \"13:00\"", "end = \"13:15\"")
            .replace(
                "name = \"staff\"",
                "name = \"staff\"\n        safe_search = { google = false }",
            )
            + "\n        [[groups]]\n        name = \"ks5\"\n";
        let changes = policy_changes(&before, &doc(&edited));
        let named: Vec<&str> = changes.iter().map(|c| c.item.as_str()).collect();
        assert_eq!(
            named,
            [
                "group ks2: category games",
                "group ks2: category social",
                "group ks5",
                "group staff: safe_search",
                "list school-deny",
                "schedule lunch",
            ]
        );
        let games = &changes[0];
        assert_eq!(games.before, Some(Value::from("block")));
        assert_eq!(games.after, Some(Value::from("allow")));
        let social = &changes[1];
        assert_eq!(
            (social.before.clone(), social.after.clone()),
            (None, Some(Value::from("block")))
        );
        // A new group is one item holding the whole group.
        assert_eq!(changes[2].before, None);
        assert_eq!(
            changes[2].after.as_ref().and_then(|g| g.get("name")),
            Some(&Value::from("ks5"))
        );
        assert_eq!(
            changes[3].after.as_ref().and_then(|s| s.get("google")),
            Some(&Value::Bool(false))
        );
    }

    #[test]
    fn a_removed_group_and_category_are_one_item_each() {
        let before = doc(BEFORE).canonical_json();
        let edited = BEFORE
            .replace(
                "[[categories]]\n        id = \"games\"\n        title = \"Games\"",
                "",
            )
            .replace("games = \"block\"", "")
            .replace("[[groups]]\n        name = \"staff\"", "");
        let edited = edited.replace("adult = \"block\", ", "adult = \"block\"");
        let changes = policy_changes(&before, &doc(&edited));
        let named: Vec<(&str, bool)> = changes
            .iter()
            .map(|c| (c.item.as_str(), c.after.is_none()))
            .collect();
        assert_eq!(
            named,
            [
                ("category games", true),
                ("group ks2: category games", true),
                ("group staff", true)
            ]
        );
    }

    #[test]
    fn a_copy_that_is_not_json_compares_as_empty() {
        let changes = policy_changes("not json", &doc(BEFORE));
        assert!(changes.iter().any(|c| c.item == "group ks2"));
        assert!(changes.iter().all(|c| c.before.is_none()));
    }
}

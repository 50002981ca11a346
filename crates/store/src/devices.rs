use sqlx::any::AnyRow;
use sqlx::Row;

use crate::audit::{append, Change};
use crate::{Actor, Device, DeviceDetails, Store, StoreError};

fn device_from_row(row: &AnyRow) -> Result<Device, StoreError> {
    let ownership: String = row.try_get("ownership")?;
    Ok(Device {
        id: row.try_get("id")?,
        school_id: row.try_get("school_id")?,
        details: DeviceDetails {
            name: row.try_get("name")?,
            mac: row.try_get("mac")?,
            address: row.try_get("address")?,
            owner_id: row.try_get("owner_id")?,
            group_id: row.try_get("group_id")?,
            ownership: ownership.parse()?,
        },
    })
}

impl Store {
    /// Registers a device, or updates the one with the same name. A
    /// device's address, owner and group decide whose filtering applies to
    /// it, so a change needs a reason, kept in its audit entry.
    pub async fn save_device(
        &self,
        actor: &Actor,
        school_id: i64,
        details: DeviceDetails,
        reason: &str,
    ) -> Result<Device, StoreError> {
        let details = details.normalised()?;
        let reason = crate::groups::change_reason(reason)?;
        let mut write = self.begin_write().await?;
        let result = async {
        let existing = sqlx::query("SELECT * FROM devices WHERE school_id = $1 AND name = $2")
            .bind(school_id)
            .bind(&details.name)
            .fetch_optional(&mut *write.tx)
            .await?
            .map(|row| device_from_row(&row))
            .transpose()?;
        let now = crate::now();
        let device = match &existing {
            Some(before) => {
                sqlx::query(
                    "UPDATE devices SET mac = $1, address = $2, owner_id = $3, group_id = $4, \
                     ownership = $5, updated_at = $6 WHERE id = $7",
                )
                .bind(&details.mac)
                .bind(&details.address)
                .bind(details.owner_id)
                .bind(details.group_id)
                .bind(details.ownership.as_str())
                .bind(&now)
                .bind(before.id)
                .execute(&mut *write.tx)
                .await?;
                Device {
                    id: before.id,
                    school_id,
                    details,
                }
            }
            None => {
                let row = sqlx::query(
                    "INSERT INTO devices (school_id, name, mac, address, owner_id, group_id, \
                     ownership, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
                     RETURNING id",
                )
                .bind(school_id)
                .bind(&details.name)
                .bind(&details.mac)
                .bind(&details.address)
                .bind(details.owner_id)
                .bind(details.group_id)
                .bind(details.ownership.as_str())
                .bind(&now)
                .fetch_one(&mut *write.tx)
                .await?;
                Device {
                    id: row.try_get("id")?,
                    school_id,
                    details,
                }
            }
        };
        if existing.as_ref() != Some(&device) {
            let action = if existing.is_some() { "update" } else { "create" };
            let mut change = Change::new(action, "device", device.id).after(&device);
            if let Some(before) = &existing {
                change = change.before(before);
            }
            change.reason = Some(reason);
            append(&mut write.tx, actor, change).await?;
        }
        Ok(device)
        }
        .await;
        write.finish(result).await
    }

    pub async fn devices(&self, school_id: i64) -> Result<Vec<Device>, StoreError> {
        let rows = sqlx::query("SELECT * FROM devices WHERE school_id = $1 ORDER BY name")
            .bind(school_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(device_from_row).collect()
    }
}

//! Listing and deleting devices, blocked devices, backup codes used once, regeneration behind a factor.

use anyhow::Result;
use serde_json::json;
use twofold_tests::{enroll, oathtool, Daemon};
use twofold_wire::admin::AdminRequest;

use crate::step_margin;

#[tokio::test]
async fn devices_are_listed_blocked_and_deleted() -> Result<()> {
    let daemon = Daemon::start("")?;
    let mut admin = daemon.admin()?;
    let api = daemon.api_client()?.with_key(&admin.api_key("portal")?);
    step_margin(15).await;
    let lea = enroll(&mut admin, &api, "lea").await?;
    let list = api.get("/api/v1/users/lea/devices").await?;
    assert_eq!(list.status, 200, "{}", list.raw);
    let devices = list.body["devices"].as_array().cloned().unwrap_or_default();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["id"], lea.device.as_str());
    assert_eq!(devices[0]["status"], "active");
    assert!(devices[0]["created"].as_i64().is_some() && devices[0]["last_used"].as_i64().is_some());

    admin.ok(&AdminRequest::DeviceBlock {
        user: "lea".into(),
        device: lea.device.clone(),
    })?;
    let blocked = api
        .post(
            "/api/v1/verify",
            &json!({"user": "lea", "code": oathtool(&lea.secret, 0, &[])?}),
        )
        .await?;
    assert_eq!(
        blocked.body["result"], "reject",
        "a blocked device's codes are refused: {}",
        blocked.raw
    );
    admin.ok(&AdminRequest::DeviceUnblock {
        user: "lea".into(),
        device: lea.device.clone(),
    })?;
    let back = api
        .post(
            "/api/v1/verify",
            &json!({"user": "lea", "code": oathtool(&lea.secret, 30, &[])?}),
        )
        .await?;
    assert_eq!(back.body["result"], "accept", "{}", back.raw);

    let deleted = api
        .delete(&format!("/api/v1/users/lea/devices/{}", lea.device))
        .await?;
    assert_eq!(deleted.status, 200, "{}", deleted.raw);
    assert_eq!(deleted.body["devices"].as_array().map(Vec::len), Some(0));
    let gone = api
        .delete(&format!("/api/v1/users/lea/devices/{}", lea.device))
        .await?;
    assert_eq!(gone.status, 404, "{}", gone.raw);
    assert_eq!(gone.body["error"]["code"], "not_found");
    let missing_user = api.get("/api/v1/users/nobody/devices").await?;
    assert_eq!(missing_user.status, 404);
    Ok(())
}

#[tokio::test]
async fn backup_codes_work_once_and_regenerating_needs_a_factor() -> Result<()> {
    let daemon = Daemon::start("")?;
    let mut admin = daemon.admin()?;
    let api = daemon.api_client()?.with_key(&admin.api_key("portal")?);
    step_margin(15).await;
    let max = enroll(&mut admin, &api, "max").await?;
    let code = max.backup_codes[3].clone();
    let used = api
        .post(
            "/api/v1/verify",
            &json!({"user": "max", "code": code.to_uppercase()}),
        )
        .await?;
    assert_eq!(used.body["result"], "accept", "{}", used.raw);
    assert_eq!(used.body["factor"], "backup_code");
    assert_eq!(used.body["backup_codes_remaining"], 9);
    let twice = api
        .post("/api/v1/verify", &json!({"user": "max", "code": code}))
        .await?;
    assert_eq!(twice.body["result"], "reject", "{}", twice.raw);

    let refused = api
        .post("/api/v1/users/max/backup-codes", &json!({"code": "000000"}))
        .await?;
    assert_eq!(refused.status, 403, "{}", refused.raw);
    assert_eq!(refused.body["error"]["code"], "second_factor_required");
    let fresh = api
        .post(
            "/api/v1/users/max/backup-codes",
            &json!({"code": oathtool(&max.secret, 0, &[])?}),
        )
        .await?;
    assert_eq!(fresh.status, 200, "{}", fresh.raw);
    let new_codes: Vec<String> = fresh.body["backup_codes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str().map(str::to_owned))
        .collect();
    assert_eq!(new_codes.len(), 10);
    let old = api
        .post(
            "/api/v1/verify",
            &json!({"user": "max", "code": max.backup_codes[0]}),
        )
        .await?;
    assert_eq!(
        old.body["result"], "reject",
        "the old set stops working: {}",
        old.raw
    );
    let new = api
        .post(
            "/api/v1/verify",
            &json!({"user": "max", "code": new_codes[0]}),
        )
        .await?;
    assert_eq!(new.body["result"], "accept", "{}", new.raw);
    Ok(())
}

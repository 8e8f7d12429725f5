//! The words the console uses for the daemon's values: times in UTC, states, channels and rules. Pure
//! text, no drawing, so that the state (`app`) and the screens can both use them.

use twofold_wire::delivery::DeliveryState;
use twofold_wire::policy::{Channel, RestoreRule, TwoFactorRule};
use twofold_wire::{DeviceKind, DeviceOrigin, DeviceStatus, TwoFactorState};

/// `2026-11-22 17:44` in UTC (the console says so in its header), or the number if out of range.
pub fn time(t: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| t.to_string())
}

pub fn short_time(t: i64) -> String {
    let format = time::macros::format_description!("[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| t.to_string())
}

pub fn state_name(state: TwoFactorState) -> &'static str {
    match state {
        TwoFactorState::Enrolled => "enrolled",
        TwoFactorState::EnrollmentRequired => "must enroll",
        TwoFactorState::NotEnrolled => "not enrolled",
        TwoFactorState::Off => "2FA off",
    }
}

pub fn device_status(status: DeviceStatus) -> &'static str {
    match status {
        DeviceStatus::Active => "active",
        DeviceStatus::Blocked => "BLOCKED",
        DeviceStatus::Pending => "pending",
    }
}

pub fn device_origin(origin: DeviceOrigin) -> &'static str {
    match origin {
        DeviceOrigin::Enrolled => "user",
        DeviceOrigin::Admin => "admin",
        DeviceOrigin::Restored => "restored",
        DeviceOrigin::Duplicated => "paired",
    }
}

pub fn device_kind(kind: DeviceKind) -> &'static str {
    match kind {
        DeviceKind::Totp => "totp",
        DeviceKind::Sms => "sms",
        DeviceKind::Voice => "voice",
        DeviceKind::Email => "email",
    }
}

pub fn delivery_state(state: DeliveryState) -> &'static str {
    match state {
        DeliveryState::Queued => "queued",
        DeliveryState::Retrying => "retrying",
        DeliveryState::Delivered => "delivered",
        DeliveryState::Failed => "FAILED",
        DeliveryState::Cancelled => "cancelled",
    }
}

pub fn ago(now: i64, then: i64) -> String {
    let s = (now - then).max(0);
    match s {
        0..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        3600..86_400 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

pub fn channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Totp => "app",
        Channel::Sms => "sms",
        Channel::Voice => "voice",
        Channel::Email => "email",
        Channel::InPerson => "in person",
    }
}

pub fn rule_name(rule: TwoFactorRule) -> &'static str {
    match rule {
        TwoFactorRule::Required => "required",
        TwoFactorRule::Optional => "optional",
        TwoFactorRule::Off => "off",
    }
}

pub fn restore_name(rule: RestoreRule) -> &'static str {
    match rule {
        RestoreRule::Allowed => "allowed",
        RestoreRule::Prohibited => "admin only",
    }
}

pub fn channels(list: &[Channel]) -> String {
    list.iter()
        .map(|c| channel_name(*c))
        .collect::<Vec<_>>()
        .join(", ")
}

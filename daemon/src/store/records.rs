//! What the store keeps. Records are JSON inside the store: readable in a debugger, and serde's defaults
//! let a new optional field arrive without a migration.

use serde::{Deserialize, Serialize};
use twofold_wire::{DeviceInfo, DeviceKind, DeviceStatus, TwoFactorState};

use crate::crypto::BackupCodeSet;
use crate::totp::TotpParams;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Stable id; never reused, never changes when the username does.
    pub id: String,
    pub username: String,
    pub upn: Option<String>,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub mobile: Option<String>,
    pub voice: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    pub enabled: bool,
    /// `local` for users created through the admin socket.
    pub source: String,
    /// Set by policy: the user must enroll at next login.
    #[serde(default)]
    pub enrollment_required: bool,
    pub created: i64,
    #[serde(default)]
    pub devices: Vec<DeviceRecord>,
    #[serde(default)]
    pub backup_codes: Option<BackupCodeSet>,
}

impl UserRecord {
    pub fn state(&self) -> TwoFactorState {
        if self.devices.iter().any(|d| d.status != DeviceStatus::Pending) {
            TwoFactorState::Enrolled
        } else if self.enrollment_required {
            TwoFactorState::EnrollmentRequired
        } else {
            TwoFactorState::NotEnrolled
        }
    }

    pub fn device(&self, id: &str) -> Option<&DeviceRecord> {
        self.devices.iter().find(|d| d.id == id)
    }

    pub fn device_mut(&mut self, id: &str) -> Option<&mut DeviceRecord> {
        self.devices.iter_mut().find(|d| d.id == id)
    }

    pub fn backup_codes_remaining(&self) -> u32 {
        self.backup_codes.as_ref().map_or(0, BackupCodeSet::remaining)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub id: String,
    pub kind: DeviceKind,
    pub label: String,
    pub status: DeviceStatus,
    pub created: i64,
    pub last_used: Option<i64>,
    pub destination: Option<String>,
    pub totp: Option<TotpState>,
}

impl DeviceRecord {
    pub fn info(&self) -> DeviceInfo {
        DeviceInfo {
            id: self.id.clone(),
            kind: self.kind,
            label: self.label.clone(),
            status: self.status,
            created: self.created,
            last_used: self.last_used,
            destination: self.destination.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpState {
    pub params: TotpParams,
    /// The seed sealed under the master key (see `crypto::SecretBox`), base64.
    pub sealed_secret: String,
    /// Last accepted time step: no step at or before it is accepted again.
    pub last_step: Option<u64>,
    /// Steps between the device's clock and ours at the last accepted code (RFC 6238 §6).
    pub drift: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub name: String,
    pub created: i64,
}

//! The PBX's own (native) backup schedule, read only: `GET /xapi/v1/BackupSettings` and the
//! native backup that `GET Backups` lists beside the ones a client asked for.
//!
//! A healthy PBX backs itself up daily at 02:00, encrypted, keeping 5; its newest native backup
//! is 6 hours old whenever it is asked. The faults:
//!
//! | fault | effect |
//! |---|---|
//! | `native-backup-stale` | the newest native backup is 5 days old |
//! | `native-backup-disabled` | `ScheduleEnabled` is false (and the newest native backup is 5 days old) |
//! | `native-backup-unencrypted` | the schedule's `Contents.EncryptBackup` is false |

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use crate::state::BackupRecord;
use crate::Fault;

/// The name of the native backup the simulator lists.
pub const NATIVE_BACKUP_NAME: &str = "3CXScheduledBackup.zip";

/// The answer of `GET /xapi/v1/BackupSettings` under `fault`.
pub(crate) fn settings(fault: Option<Fault>) -> Value {
    json!({
        "@odata.context": "/xapi/v1/$metadata#BackupSettings",
        "ScheduleEnabled": fault != Some(Fault::NativeBackupDisabled),
        "Rotation": 5,
        "Contents": {
            "CallHistory": true, "Recordings": false, "VoiceMails": true, "Prompts": true,
            "License": true, "FQDN": true, "PhoneProvisioning": true,
            "DisableBackupCompression": false,
            "EncryptBackup": fault != Some(Fault::NativeBackupUnencrypted),
            "EncryptBackupPassword": {"Value": "", "Concealed": true}
        },
        "Schedule": {"ScheduleType": "Daily", "Day": "Sunday", "Time": "02:00", "RepeatHours": 0}
    })
}

/// The newest native backup on the disk at `now`, under `fault`.
pub(crate) fn newest(fault: Option<Fault>, now: DateTime<Utc>) -> BackupRecord {
    let age = match fault {
        Some(Fault::NativeBackupStale | Fault::NativeBackupDisabled) => Duration::days(5),
        _ => Duration::hours(6),
    };
    BackupRecord {
        file_name: NATIVE_BACKUP_NAME.to_owned(),
        created: now - age,
        size: 4096,
        encrypted: fault != Some(Fault::NativeBackupUnencrypted),
    }
}

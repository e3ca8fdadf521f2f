//! Bucket administration for the S3 vault: creating a bucket with Object Lock (first-time set-up
//! and tests) and the `doctor` probe that checks a bucket is fit to be the vault.

use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration, ObjectLockEnabled,
    VersioningConfiguration,
};

use super::{remote, S3Vault};
use crate::aws::emulator::{unparsed_success, xml_element};
use crate::aws::{code, status};
use crate::vault::VaultError;

impl S3Vault {
    /// Creates the bucket with Object Lock enabled (which implies versioning; it is also set
    /// explicitly, harmless on S3 and needed by some emulators). For first-time setup and tests.
    ///
    /// # Errors
    /// [`VaultError::Remote`] with S3's answer (e.g. `BucketAlreadyOwnedByYou`).
    pub async fn create_bucket_with_object_lock(&self) -> Result<(), VaultError> {
        let target = format!("bucket {}", self.bucket);
        let mut request = self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .object_lock_enabled_for_bucket(true);
        let region = self.client.config().region().map(|r| r.as_ref().to_owned());
        if let Some(region) = region.filter(|r| r != "us-east-1") {
            request = request.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region.as_str()))
                    .build(),
            );
        }
        request
            .send()
            .await
            .map_err(|e| remote("CreateBucket", &target, &e))?;
        self.client
            .put_bucket_versioning()
            .bucket(&self.bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| remote("PutBucketVersioning", &target, &e))?;
        Ok(())
    }

    /// The `doctor` probe: the bucket exists and is reachable, versioning is Enabled and Object
    /// Lock is Enabled. Returns a one-line description of the bucket.
    ///
    /// # Errors
    /// [`VaultError::Remote`] naming what is wrong and how to fix it.
    pub async fn check(&self) -> Result<String, VaultError> {
        let bucket = &self.bucket;
        let target = format!("bucket {bucket}");
        if let Err(e) = self.client.head_bucket().bucket(bucket).send().await {
            return Err(match status(&e) {
                Some(404) => VaultError::Remote(format!(
                    "bucket {bucket} does not exist: create it with Object Lock \
                     (aws s3api create-bucket --bucket {bucket} --object-lock-enabled-for-bucket)"
                )),
                Some(403) => VaultError::Remote(format!(
                    "access to bucket {bucket} denied: check the credentials and the bucket policy"
                )),
                _ => remote("HeadBucket", &target, &e),
            });
        }
        let no_lock = || {
            VaultError::Remote(format!(
                "bucket {bucket} has no Object Lock: create it with \
                 --object-lock-enabled-for-bucket (it cannot be added to this bucket here)"
            ))
        };
        let lock = match self
            .client
            .get_object_lock_configuration()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if code(&e) == Some("ObjectLockConfigurationNotFoundError") => {
                return Err(no_lock())
            }
            Err(e) => return Err(remote("GetObjectLockConfiguration", &target, &e)),
        };
        let config = lock.object_lock_configuration();
        if config.and_then(|c| c.object_lock_enabled()) != Some(&ObjectLockEnabled::Enabled) {
            return Err(no_lock());
        }
        let versioning = match self
            .client
            .get_bucket_versioning()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(out) => out.status().map(|s| s.as_str().to_owned()),
            Err(e) => match unparsed_success(&e) {
                Some(raw) => xml_element(raw.body().bytes().unwrap_or_default(), "Status"),
                None => return Err(remote("GetBucketVersioning", &target, &e)),
            },
        };
        if versioning.as_deref() != Some(BucketVersioningStatus::Enabled.as_str()) {
            return Err(VaultError::Remote(format!(
                "bucket {bucket} has versioning {}, not Enabled; Object Lock needs it: \
                 create the bucket with --object-lock-enabled-for-bucket",
                versioning.as_deref().unwrap_or("never enabled")
            )));
        }
        let default = config
            .and_then(|c| c.rule())
            .and_then(|r| r.default_retention())
            .map_or_else(
                || "no default retention (each object gets its own)".to_owned(),
                |d| {
                    let mode = d.mode().map_or("?", |m| m.as_str());
                    match (d.days(), d.years()) {
                        (Some(days), _) => format!("default retention {mode} {days} days"),
                        (_, Some(years)) => format!("default retention {mode} {years} years"),
                        _ => format!("default retention {mode}"),
                    }
                },
            );
        Ok(format!(
            "s3 bucket {bucket}: versioning Enabled, Object Lock Enabled, {default}"
        ))
    }
}

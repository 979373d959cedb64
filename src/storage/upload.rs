//! Uploading one queued file and verifying it: a single `PUT` up to [`MULTIPART_THRESHOLD`],
//! else a multipart upload through object_store's [`MultipartStore`] (explicit upload id and
//! part numbers, recorded in a [`Journal`] after each part, so a cut-off upload resumes from
//! its last part). The file's SHA-256 goes with the object as metadata (`x-amz-meta-sha256`);
//! the upload counts only once a HEAD shows the same size and checksum.

use std::num::NonZeroU64;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::{
    Attribute, AttributeValue, Attributes, GetOptions, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload,
};
use sha2::Digest;

use super::config::StorageConfig;
use super::journal::{Journal, Journals};
use super::queue::{FileKind, Pending};

/// Files larger than this go up in parts.
pub const MULTIPART_THRESHOLD: u64 = 8 * 1024 * 1024;
/// The size of each part (S3's minimum is 5 MiB).
pub const PART_SIZE: u64 = 8 * 1024 * 1024;
/// Parts being read and sent at once (each [`PART_SIZE`] in memory): one on the wire while
/// the next is read, so neither the disk nor the network waits for the other.
pub const PARTS_IN_FLIGHT: usize = 2;
/// The metadata key the file's SHA-256 (hex) is stored under.
pub const SHA256_METADATA: &str = "sha256";

/// A bucket: one object store with multipart uploads (S3, and later GCS or Azure).
pub trait Bucket: ObjectStore + MultipartStore {}

impl<T: ObjectStore + MultipartStore> Bucket for T {}

/// The bucket `[storage]` names. Nothing is contacted yet.
pub fn open(config: &StorageConfig) -> Result<Arc<dyn Bucket>, object_store::Error> {
    use object_store::aws::AmazonS3Builder;
    let mut b = match (&config.access_key_id, &config.secret_access_key) {
        (Some(id), Some(secret)) => AmazonS3Builder::new()
            .with_access_key_id(id.expose())
            .with_secret_access_key(secret.expose()),
        _ => AmazonS3Builder::from_env(),
    };
    b = b
        .with_region(&config.region)
        .with_bucket_name(&config.bucket)
        .with_virtual_hosted_style_request(!config.path_style)
        // A few quick tries inside one request; the queue's own backoff does the rest.
        .with_retry(object_store::RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(30),
            ..Default::default()
        })
        .with_client_options(
            object_store::ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(5))
                .with_timeout(Duration::from_secs(120)),
        );
    if let Some(endpoint) = &config.endpoint {
        b = b
            .with_endpoint(endpoint_for(endpoint, &config.bucket, config.path_style))
            .with_allow_http(endpoint.starts_with("http://"));
    }
    Ok(Arc::new(b.build()?))
}

/// The endpoint object_store wants: with virtual-hosted style, the bucket in the host name.
fn endpoint_for(endpoint: &str, bucket: &str, path_style: bool) -> String {
    if path_style {
        return endpoint.to_owned();
    }
    match reqwest::Url::parse(endpoint) {
        Ok(mut url) => {
            let host = url.host_str().unwrap_or_default().to_owned();
            if url.set_host(Some(&format!("{bucket}.{host}"))).is_ok() {
                url.to_string().trim_end_matches('/').to_owned()
            } else {
                endpoint.to_owned()
            }
        }
        Err(_) => endpoint.to_owned(),
    }
}

/// Why an upload failed: the label of `upload_failures_total{cause}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The storage refused the credentials (401/403).
    Credentials,
    /// The bucket does not exist.
    Bucket,
    /// The object's size or checksum is not the local file's.
    Checksum,
    /// The local file cannot be read (deleted meanwhile).
    LocalFile,
    /// The storage cannot be reached, answered 5xx or asked to slow down.
    Unavailable,
}

impl Cause {
    /// Its label in metrics and events.
    pub fn label(self) -> &'static str {
        match self {
            Cause::Credentials => "credentials",
            Cause::Bucket => "bucket",
            Cause::Checksum => "checksum",
            Cause::LocalFile => "local-file",
            Cause::Unavailable => "unavailable",
        }
    }

    /// Whether waiting may heal it (else the operator must act: logged as an error and
    /// told as `recording_upload_failed`).
    pub fn heals_by_waiting(self) -> bool {
        matches!(self, Cause::Unavailable)
    }
}

/// A failed upload.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", cause.label())]
pub struct UploadError {
    pub cause: Cause,
    pub message: String,
}

impl UploadError {
    fn new(cause: Cause, message: impl Into<String>) -> UploadError {
        UploadError {
            cause,
            message: message.into(),
        }
    }

    fn local(path: &Path, e: impl std::fmt::Display) -> UploadError {
        UploadError::new(Cause::LocalFile, format!("{}: {e}", path.display()))
    }
}

/// Sorts an object_store error by what can be done about it.
fn classify(e: object_store::Error) -> UploadError {
    use object_store::Error as E;
    let cause = match &e {
        E::Unauthenticated { .. } | E::PermissionDenied { .. } => Cause::Credentials,
        E::NotFound { .. } => Cause::Bucket,
        _ => Cause::Unavailable,
    };
    let message = match cause {
        Cause::Credentials => format!("the storage refused the credentials: {e}"),
        Cause::Bucket => format!("no such bucket (or key prefix refused): {e}"),
        _ => e.to_string(),
    };
    UploadError::new(cause, message)
}

/// What a verified upload was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub bytes: u64,
    pub sha256: String,
    /// The multipart upload id (none for a single `PUT`).
    pub upload_id: Option<String>,
    /// Parts that an earlier, cut-off try had uploaded already.
    pub resumed_parts: usize,
}

/// Uploads `item` and verifies it (size and SHA-256 by HEAD).
pub async fn upload(
    bucket: &dyn Bucket,
    journals: &Journals,
    item: &Pending,
    rate: Option<NonZeroU64>,
) -> Result<Uploaded, UploadError> {
    let key = object_store::path::Path::parse(&item.key)
        .map_err(|e| UploadError::new(Cause::Bucket, format!("bad key {:?}: {e}", item.key)))?;
    let size = std::fs::metadata(&item.path)
        .map_err(|e| UploadError::local(&item.path, e))?
        .len();
    let uploaded = if size <= MULTIPART_THRESHOLD {
        let path = item.path.clone();
        let (data, sha256) = blocking(move || {
            let data = std::fs::read(&path).map_err(|e| UploadError::local(&path, e))?;
            let sha256 = hex(&sha2::Sha256::digest(&data));
            Ok((data, sha256))
        })
        .await?;
        let opts = PutOptions::from(attributes(item, &sha256));
        let started = Instant::now();
        bucket
            .put_opts(&key, PutPayload::from(data), opts)
            .await
            .map_err(classify)?;
        pace(rate, started, size).await;
        Uploaded {
            bytes: size,
            sha256,
            upload_id: None,
            resumed_parts: 0,
        }
    } else {
        multipart(bucket, journals, item, &key, size, rate).await?
    };
    verify(bucket, &key, uploaded.bytes, &uploaded.sha256).await?;
    Ok(uploaded)
}

/// A multipart upload, begun or resumed from its journal.
async fn multipart(
    bucket: &dyn Bucket,
    journals: &Journals,
    item: &Pending,
    key: &object_store::path::Path,
    size: u64,
    rate: Option<NonZeroU64>,
) -> Result<Uploaded, UploadError> {
    let sha256 = {
        let path = item.path.clone();
        blocking(move || hash_file(&path)).await?
    };
    let resumable = match journals.load(&item.id) {
        Some(j)
            if j.size == size
                && j.sha256 == sha256
                && j.key == item.key
                && j.part_size == PART_SIZE =>
        {
            Some(j)
        }
        Some(stale) => {
            tracing::warn!(key = %item.key, upload_id = %stale.upload_id, "the file changed since its upload began; aborting that upload and starting over");
            let _ = bucket.abort_multipart(key, &stale.upload_id).await;
            journals.remove(&item.id);
            None
        }
        None => None,
    };
    let mut journal = match resumable {
        Some(j) => j,
        None => {
            let opts = PutMultipartOptions::from(attributes(item, &sha256));
            let upload_id = bucket
                .create_multipart_opts(key, opts)
                .await
                .map_err(classify)?;
            let j = Journal {
                id: item.id.clone(),
                key: item.key.clone(),
                upload_id,
                size,
                sha256,
                part_size: PART_SIZE,
                parts: Vec::new(),
            };
            journals
                .save(&j)
                .map_err(|e| UploadError::local(Path::new("multipart journal"), e))?;
            j
        }
    };
    let resumed_parts = journal.parts.len();
    if resumed_parts > 0 {
        tracing::info!(key = %item.key, upload_id = %journal.upload_id, parts_kept = resumed_parts, parts = journal.part_count(), "resuming a multipart upload");
    }
    let started = Instant::now();
    // PARTS_IN_FLIGHT parts read and sent at once (the next read while one is on the
    // wire); their answers are taken in order, so the journal stays a prefix of the parts.
    let (path, upload_id) = (item.path.clone(), journal.upload_id.clone());
    let first = resumed_parts as u64;
    let ranges: Vec<(u64, std::ops::Range<u64>)> = (first..journal.part_count())
        .map(|i| (i, journal.part_range(i)))
        .collect();
    let mut sending = futures_util::stream::iter(ranges)
        .map(|(i, range)| {
            let (path, upload_id) = (path.clone(), upload_id.clone());
            async move {
                let end = range.end;
                let data = blocking(move || read_range(&path, range))
                    .await
                    .map_err(PartFailed::Other)?;
                match bucket
                    .put_part(key, &upload_id, i as usize, PutPayload::from(data))
                    .await
                {
                    Ok(part) => Ok((part, end)),
                    // The upload id is gone (aborted, or expired by a lifecycle rule).
                    Err(object_store::Error::NotFound { .. }) => Err(PartFailed::Gone),
                    Err(e) => Err(PartFailed::Other(classify(e))),
                }
            }
        })
        .buffered(PARTS_IN_FLIGHT);
    while let Some(sent) = sending.next().await {
        match sent {
            Ok((part, end)) => {
                journal.parts.push(part.content_id);
                journals
                    .save(&journal)
                    .map_err(|e| UploadError::local(Path::new("multipart journal"), e))?;
                pace(rate, started, end - journal.part_range(first).start).await;
            }
            Err(PartFailed::Gone) => {
                tracing::warn!(key = %item.key, upload_id = %journal.upload_id, "the multipart upload is gone from the storage; starting over");
                journals.remove(&item.id);
                return Err(UploadError::new(
                    Cause::Unavailable,
                    format!("multipart upload {} is gone", journal.upload_id),
                ));
            }
            Err(PartFailed::Other(e)) => return Err(e),
        }
    }
    drop(sending);
    let parts = journal
        .parts
        .iter()
        .map(|etag| PartId {
            content_id: etag.clone(),
        })
        .collect();
    if let Err(e) = bucket
        .complete_multipart(key, &journal.upload_id, parts)
        .await
    {
        // Completed by an earlier try whose answer was lost? Then the object is there.
        if verify(bucket, key, size, &journal.sha256).await.is_err() {
            if matches!(e, object_store::Error::NotFound { .. }) {
                journals.remove(&item.id);
            }
            return Err(classify(e));
        }
    }
    journals.remove(&item.id);
    Ok(Uploaded {
        bytes: size,
        sha256: journal.sha256,
        upload_id: Some(journal.upload_id),
        resumed_parts,
    })
}

/// Why one part could not be sent.
enum PartFailed {
    /// The storage no longer knows the upload id.
    Gone,
    Other(UploadError),
}

/// With a `rate` (bytes per second): waits until `sent` bytes since `started` keep to it.
async fn pace(rate: Option<NonZeroU64>, started: Instant, sent: u64) {
    if let Some(rate) = rate {
        tokio::time::sleep_until((started + pace_time(rate, sent)).into()).await;
    }
}

/// How long `sent` bytes take at `rate` bytes per second.
fn pace_time(rate: NonZeroU64, sent: u64) -> Duration {
    Duration::from_secs_f64(sent as f64 / rate.get() as f64)
}

/// Checks by HEAD that the object at `key` has `size` bytes and the checksum `sha256`.
async fn verify(
    bucket: &dyn Bucket,
    key: &object_store::path::Path,
    size: u64,
    sha256: &str,
) -> Result<(), UploadError> {
    let head = GetOptions {
        head: true,
        ..Default::default()
    };
    let got = bucket.get_opts(key, head).await.map_err(classify)?;
    let remote = got
        .attributes
        .get(&Attribute::Metadata(SHA256_METADATA.into()))
        .map(|v| v.as_ref().to_owned());
    if got.meta.size != size || remote.as_deref() != Some(sha256) {
        return Err(UploadError::new(
            Cause::Checksum,
            format!(
                "the object {key} is {} bytes with sha256 {}, the local file {size} bytes with \
                 sha256 {sha256}: the local file is kept",
                got.meta.size,
                remote.as_deref().unwrap_or("(none)")
            ),
        ));
    }
    Ok(())
}

/// The object's attributes: its checksum and content type.
fn attributes(item: &Pending, sha256: &str) -> Attributes {
    let mut a = Attributes::new();
    a.insert(
        Attribute::Metadata(SHA256_METADATA.into()),
        AttributeValue::from(sha256.to_owned()),
    );
    let content_type = match item.kind {
        FileKind::Sidecar | FileKind::Manifest => "application/json",
        FileKind::Media if item.path.extension().is_some_and(|e| e == "mkv") => "video/x-matroska",
        FileKind::Media => "video/webm",
    };
    a.insert(Attribute::ContentType, AttributeValue::from(content_type));
    a
}

/// The SHA-256 (hex) of the file at `path`, read in 1 MiB pieces.
fn hash_file(path: &Path) -> Result<String, UploadError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| UploadError::local(path, e))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| UploadError::local(path, e))?;
        if n == 0 {
            return Ok(hex(&hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

/// The bytes of `range` of the file at `path`.
fn read_range(path: &Path, range: std::ops::Range<u64>) -> Result<Vec<u8>, UploadError> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).map_err(|e| UploadError::local(path, e))?;
    let mut data = vec![0u8; (range.end - range.start) as usize];
    f.read_exact_at(&mut data, range.start)
        .map_err(|e| UploadError::local(path, e))?;
    Ok(data)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs file IO on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, UploadError> + Send + 'static,
) -> Result<T, UploadError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| UploadError::new(Cause::LocalFile, e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_hosted_endpoints_carry_the_bucket() {
        assert_eq!(
            endpoint_for("https://s3.example.net:9000", "rec", false),
            "https://rec.s3.example.net:9000"
        );
        assert_eq!(
            endpoint_for("http://127.0.0.1:3900", "rec", true),
            "http://127.0.0.1:3900"
        );
    }

    #[test]
    fn a_rate_spaces_the_bytes_sent() {
        let rate = NonZeroU64::new(8 << 20).unwrap();
        assert_eq!(pace_time(rate, 8 << 20), Duration::from_secs(1));
        assert_eq!(pace_time(rate, 2 << 20), Duration::from_millis(250));
    }

    #[test]
    fn causes_that_heal_by_waiting_are_only_unavailability() {
        assert!(Cause::Unavailable.heals_by_waiting());
        for c in [
            Cause::Credentials,
            Cause::Bucket,
            Cause::Checksum,
            Cause::LocalFile,
        ] {
            assert!(!c.heals_by_waiting(), "{c:?}");
        }
    }
}

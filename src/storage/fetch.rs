//! Reading an uploaded recording back from the bucket, whole or one HTTP range of it: how
//! the API and the recordings page serve a recording whose local copy `keep_local` deleted.

use std::ops::Range;

use futures_util::stream::BoxStream;
use object_store::{GetOptions, GetRange};

use super::upload::Bucket;

/// Why an uploaded copy cannot be read.
#[derive(Debug)]
pub enum FetchError {
    /// The ledger has no upload of this file.
    NotUploaded,
    /// `[storage]` is not configured now (or cannot be used).
    NoStorage,
    /// The `Range` header asks for nothing the object has (HTTP 416); the object's size.
    Unsatisfiable(u64),
    /// The bucket failed or refused.
    Bucket(object_store::Error),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::NotUploaded => f.write_str("the file is neither here nor uploaded"),
            FetchError::NoStorage => {
                f.write_str("the file is only in object storage, and [storage] is not configured")
            }
            FetchError::Unsatisfiable(size) => write!(f, "the range is outside the {size} bytes"),
            FetchError::Bucket(e) => write!(f, "object storage: {e}"),
        }
    }
}

/// One read of an uploaded file.
pub struct Fetched {
    /// The whole object's size.
    pub size: u64,
    /// The bytes served: all of them, or the range asked for.
    pub range: Range<u64>,
    /// Whether a range was asked for (HTTP 206 rather than 200).
    pub partial: bool,
    pub body: BoxStream<'static, object_store::Result<bytes::Bytes>>,
}

/// Reads `key` from `bucket`, the one range of `range_header` (an HTTP `Range` value) if
/// given. A HEAD first learns the size the range is checked against, so an unsatisfiable
/// or multi-range header is answered as a file server would (416; the whole file).
pub async fn fetch(
    bucket: &dyn Bucket,
    key: &str,
    range_header: Option<&str>,
) -> Result<Fetched, FetchError> {
    let location = object_store::path::Path::parse(key)
        .map_err(|e| FetchError::Bucket(object_store::Error::from(e)))?;
    let head = GetOptions {
        head: true,
        ..Default::default()
    };
    let size = bucket
        .get_opts(&location, head)
        .await
        .map_err(FetchError::Bucket)?
        .meta
        .size;
    let wanted = match range_header {
        None => None,
        Some(h) => one_range(h, size)?,
    };
    let options = GetOptions {
        range: wanted.clone().map(GetRange::Bounded),
        ..Default::default()
    };
    let got = bucket
        .get_opts(&location, options)
        .await
        .map_err(FetchError::Bucket)?;
    Ok(Fetched {
        size: got.meta.size,
        range: got.range.clone(),
        partial: wanted.is_some(),
        body: got.into_stream(),
    })
}

/// The one byte range `header` asks of an object of `size` bytes: `None` for the whole
/// object (no range a file server would honour: several ranges, another unit, bad syntax).
fn one_range(header: &str, size: u64) -> Result<Option<Range<u64>>, FetchError> {
    let Ok(parsed) = http_range_header::parse_range_header(header) else {
        return Ok(None);
    };
    match parsed.validate(size) {
        Ok(ranges) if ranges.len() == 1 => {
            let r = &ranges[0];
            Ok(Some(*r.start()..r.end() + 1))
        }
        Ok(_) => Ok(None),
        Err(_) => Err(FetchError::Unsatisfiable(size)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_as_a_file_server_reads_them() {
        let r = |h: &str| one_range(h, 1000).map_err(|e| e.to_string());
        assert_eq!(r("bytes=0-99").unwrap(), Some(0..100));
        assert_eq!(r("bytes=900-").unwrap(), Some(900..1000));
        assert_eq!(r("bytes=-10").unwrap(), Some(990..1000));
        assert_eq!(r("bytes=990-5000").unwrap(), Some(990..1000));
        assert_eq!(r("bytes=0-1,5-6").unwrap(), None);
        assert_eq!(r("lines=1-2").unwrap(), None);
        assert!(r("bytes=1000-").is_err());
    }
}

//! Sequential verification of a log file: the scan recovery and `inspect --verify` share.
//!
//! The scan reads the file in chunks through a caller-supplied reader (start-up, tools, slow
//! paths), checks every batch — header, magic, length, CRC-32C, every record,
//! offset continuity — and stops at the first batch that fails, reporting why and where.

use std::path::Path;

use crate::error::{Error, Result};
use crate::record::{BatchView, DecodeError, LOG_OVERHEAD};

/// Bytes read per chunk.
pub const SCAN_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// A batch found by a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScannedBatch {
    /// Byte position in the file.
    pub position: u64,
    /// First offset.
    pub base_offset: u64,
    /// One past the last offset.
    pub next_offset: u64,
    /// Encoded length.
    pub len: u64,
    /// Largest record timestamp.
    pub max_timestamp: i64,
}

/// Why a scan stopped before the end of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanStop {
    /// A batch did not decode or verify.
    Invalid(DecodeError),
    /// A batch's base offset broke continuity.
    OffsetGap { expected: u64, found: i64 },
    /// The file ends inside a batch.
    Truncated { needed: u64, available: u64 },
}

impl std::fmt::Display for ScanStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanStop::Invalid(err) => write!(f, "{err}"),
            ScanStop::OffsetGap { expected, found } => {
                write!(f, "batch has base offset {found}, expected {expected}")
            }
            ScanStop::Truncated { needed, available } => {
                write!(f, "file ends inside a batch of {needed} bytes ({available} present)")
            }
        }
    }
}

/// Where a scan ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanEnd {
    /// End of the last valid batch.
    pub position: u64,
    /// One past the last valid offset.
    pub next_offset: u64,
    /// Why the scan stopped before `file_len`, if it did.
    pub stop: Option<ScanStop>,
}

/// Scan a log file from `position` (a batch boundary holding `offset`) up to `file_len`,
/// reading through `read(position, len)` and calling `on_batch` for every valid batch. I/O
/// errors are returned; invalid data ends the scan.
pub fn scan_log<B: AsRef<[u8]>>(
    mut read: impl FnMut(u64, usize) -> std::io::Result<B>,
    path: &Path,
    mut position: u64,
    mut offset: u64,
    file_len: u64,
    mut on_batch: impl FnMut(&BatchView<'_>, ScannedBatch),
) -> Result<ScanEnd> {
    let mut chunk: Option<B> = None;
    let mut chunk_at = position;
    loop {
        if position >= file_len {
            return Ok(ScanEnd { position, next_offset: offset, stop: None });
        }
        let in_chunk = (position - chunk_at) as usize;
        let bytes: &[u8] = chunk.as_ref().map_or(&[], |c| c.as_ref());
        let have = bytes.len().saturating_sub(in_chunk);
        // Enough bytes for the header's length field?
        let mut need = LOG_OVERHEAD;
        if have >= LOG_OVERHEAD {
            let bytes = &bytes[in_chunk..];
            let length = i32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            match usize::try_from(length) {
                Ok(length) => need = LOG_OVERHEAD.saturating_add(length),
                Err(_) => need = LOG_OVERHEAD, // BatchView::parse reports it
            }
        }
        let available = file_len - position;
        if (need as u64) > available {
            let stop = if have >= LOG_OVERHEAD {
                // Let the decoder judge a nonsense length (zeros, garbage) before calling it
                // a truncation.
                match BatchView::parse(&bytes[in_chunk..]) {
                    Err(
                        err @ (DecodeError::InvalidLength { .. }
                        | DecodeError::UnsupportedMagic { .. }),
                    ) => ScanStop::Invalid(err),
                    _ => ScanStop::Truncated { needed: need as u64, available },
                }
            } else {
                ScanStop::Truncated { needed: need as u64, available }
            };
            return Ok(ScanEnd { position, next_offset: offset, stop: Some(stop) });
        }
        if have < need {
            // Refill: read from `position`, at least the whole batch.
            let want = need.max(SCAN_CHUNK_BYTES).min(available as usize);
            let fresh = read(position, want).map_err(|source| Error::io("read", path, source))?;
            let got = fresh.as_ref().len();
            chunk = Some(fresh);
            chunk_at = position;
            if got < need.min(want) {
                let stop = ScanStop::Truncated { needed: need as u64, available: got as u64 };
                return Ok(ScanEnd { position, next_offset: offset, stop: Some(stop) });
            }
            continue;
        }
        let bytes = &bytes[in_chunk..];
        let batch = match BatchView::parse(bytes).and_then(|batch| batch.validate().map(|()| batch))
        {
            Ok(batch) => batch,
            Err(err) => {
                return Ok(ScanEnd {
                    position,
                    next_offset: offset,
                    stop: Some(ScanStop::Invalid(err)),
                });
            }
        };
        if batch.base_offset() != offset as i64 {
            let stop = ScanStop::OffsetGap { expected: offset, found: batch.base_offset() };
            return Ok(ScanEnd { position, next_offset: offset, stop: Some(stop) });
        }
        let len = batch.total_len() as u64;
        let next_offset = offset + batch.last_offset_delta() as u64 + 1;
        on_batch(
            &batch,
            ScannedBatch {
                position,
                base_offset: offset,
                next_offset,
                len,
                max_timestamp: batch.max_timestamp(),
            },
        );
        position += len;
        offset = next_offset;
    }
}

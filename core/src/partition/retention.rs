//! Periodic work: segment roll by age, retention by age and size, expiry of parked reads, and
//! a background `fdatasync` of data written since the last one (every maintenance interval,
//! one second by default).
//!
//! Retention deletes whole closed segments only — never the active one, never one still
//! closing — oldest first, and moves the log-start offset to the base of the oldest segment
//! kept. Kafka's rules: by age, a segment goes when its newest record is older than
//! `retention_ms`; by size, the oldest segments go while the partition would still hold at
//! least `retention_bytes` without them.

use crate::error::{Error, Result};
use crate::partition::Partition;
use crate::partition::io::ShardIo;
use crate::partition::recovery;

impl Partition {
    /// Periodic maintenance. Errors are reported and make the partition fail-stop only when
    /// they come from the write path (a roll); retention errors are logged and retried.
    pub fn tick(&mut self, io: &mut ShardIo<'_>) {
        let now = io.now_ms();
        self.serve_parked(io);
        if self.failed.is_none() {
            let active = self.active();
            let aged = active
                .rolling_base_ms
                .is_some_and(|base| now.saturating_sub(base) >= self.config.segment_age_ms as i64);
            if aged
                && !active.is_empty()
                && let Err(err) = self.roll(io)
            {
                self.fail(&err);
            }
        }
        if self.written_offset > self.active_synced_offset {
            self.sync_due = true;
        }
        if let Err(err) = self.apply_retention(io, now) {
            tracing::warn!(topic = %self.topic, partition = self.id, error = %err, "retention failed; will retry");
        }
        self.flush(io);
    }

    /// Delete closed segments as retention says; returns how many went.
    ///
    /// A segment's log is first taken aside in one step — kept as the next spare, or renamed
    /// to `<name>.deleted` (which opening removes) — and only then forgotten. If that step
    /// fails nothing has changed and the segment goes at a later tick. (Removing the files
    /// first could fail half-way and leave a log that the next open would bring back, with
    /// records retention had already deleted.) Removing the taken-aside and index files is
    /// best effort: what is left is removed on open.
    pub(crate) fn apply_retention(&mut self, io: &mut ShardIo<'_>, now_ms: i64) -> Result<usize> {
        let mut total: u64 = self.segments.iter().map(|s| s.size_bytes).sum();
        let mut deleted = 0;
        let mut first_error = None;
        // Candidates: closed and not closing, oldest first; the active one is always last.
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            if self.closing.iter().any(|c| c.segment == oldest.base_offset)
                || oldest.ops_in_flight > 0
                || oldest.reads_in_flight > 0
            {
                break;
            }
            let by_age = self.config.retention_ms.is_some_and(|ms| {
                oldest.max_timestamp != crate::segment::NO_TIMESTAMP
                    && now_ms.saturating_sub(oldest.max_timestamp) > ms as i64
            });
            let by_size =
                self.config.retention_bytes.is_some_and(|limit| total - oldest.size_bytes >= limit);
            if !by_age && !by_size {
                break;
            }
            let base = oldest.base_offset;
            let log_path = crate::segment::log_path(&self.dir, base);
            let file = self.segments[0].log.take();
            if !self.recycle_segment_file(io, file, &log_path) {
                let aside = self.dir.join(format!("{}.deleted", crate::segment::log_name(base)));
                if let Err(err) = io.storage.rename(&log_path, &aside) {
                    first_error.get_or_insert(Error::io("rename", &log_path, err));
                    break;
                }
                if let Err(err) = io.storage.remove_file(&aside) {
                    first_error.get_or_insert(Error::io("remove", &aside, err));
                }
            }
            let segment = self.segments.remove(0);
            total -= segment.size_bytes;
            self.log_start_offset = self.segments[0].base_offset;
            if let Err(err) = recovery::remove_segment_files(io, &self.dir, base) {
                first_error.get_or_insert(err);
            }
            deleted += 1;
            tracing::debug!(topic = %self.topic, partition = self.id, base, by_age, by_size, "retention deleted segment");
        }
        if deleted > 0 {
            let dir = self.dir.clone();
            if let Err(err) = io.storage.sync_dir(&dir) {
                first_error.get_or_insert(Error::io("sync directory", dir, err));
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(deleted),
        }
    }
}

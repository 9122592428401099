//! Offsets kept in small files of their own.
//!
//! Deleting records only moves the start forward logically, often inside a
//! segment that must be kept, so the start is stored in `log-start-offset`.
//! The cleaner keeps where its last pass ended (the first offset it has not
//! compacted) in `cleaner-offset`. Each is replaced atomically (write temp,
//! fsync, rename, fsync dir) so a crash leaves either the old or the new
//! value.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use crate::segment::sync_dir;

pub(crate) const LOG_START: &str = "log-start-offset";
pub(crate) const CLEANER: &str = "cleaner-offset";
/// An i64 in decimal plus a newline fits easily; garbage is read no further.
const MAX_FILE_LEN: u64 = 32;

/// The offset stored in file `name`, or `None` if there is none. A file
/// that does not parse is ignored with a warning: for the log start, the
/// log then starts at its first segment, which may expose records deleted
/// inside that segment, but the partition stays available.
pub(crate) fn read(dir: &Path, name: &str) -> io::Result<Option<i64>> {
    let file = match File::open(dir.join(name)) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut text = Vec::new();
    file.take(MAX_FILE_LEN).read_to_end(&mut text)?;
    let parsed = std::str::from_utf8(&text)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|&offset| offset >= 0);
    if parsed.is_none() {
        tracing::warn!(dir = %dir.display(), file = name, "ignoring an unreadable offset file");
    }
    Ok(parsed)
}

pub(crate) fn write(dir: &Path, name: &str, offset: i64) -> io::Result<()> {
    debug_assert!(offset >= 0);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(format!("{offset}\n").as_bytes())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_ignores_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path(), LOG_START).unwrap(), None);
        write(dir.path(), LOG_START, 17).unwrap();
        assert_eq!(read(dir.path(), LOG_START).unwrap(), Some(17));
        write(dir.path(), LOG_START, 18).unwrap();
        assert_eq!(read(dir.path(), LOG_START).unwrap(), Some(18));
        assert_eq!(read(dir.path(), CLEANER).unwrap(), None, "files are separate");
        fs::write(dir.path().join(LOG_START), b"\xffnope").unwrap();
        assert_eq!(read(dir.path(), LOG_START).unwrap(), None);
        fs::write(dir.path().join(LOG_START), b"-5\n").unwrap();
        assert_eq!(read(dir.path(), LOG_START).unwrap(), None);
    }
}

//! Sequential read-ahead over a file with positioned reads.
//!
//! Scanning batch headers one `pread` at a time would cost a syscall per
//! batch; this reads a chunk at a time and serves headers from memory. It
//! only needs `&File`, so readers never move a shared file cursor.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

pub(crate) struct ScanReader<'a> {
    file: &'a File,
    /// Logical end of the file; nothing at or beyond it is read.
    end: u64,
    chunk: usize,
    buf: Vec<u8>,
    /// File position of `buf[0]`.
    buf_start: u64,
}

impl<'a> ScanReader<'a> {
    pub(crate) fn new(file: &'a File, end: u64, chunk: usize) -> Self {
        debug_assert!(chunk > 0);
        Self {
            file,
            end,
            chunk,
            buf: Vec::new(),
            buf_start: 0,
        }
    }

    /// Changes how much later reads fetch ahead.
    pub(crate) fn set_chunk(&mut self, chunk: usize) {
        debug_assert!(chunk > 0);
        self.chunk = chunk;
    }

    /// Bytes `[pos, pos + len)`, or `None` if they reach past the end.
    pub(crate) fn get(&mut self, pos: u64, len: usize) -> io::Result<Option<&[u8]>> {
        let Some(want_end) = pos.checked_add(len as u64).filter(|&e| e <= self.end) else {
            return Ok(None);
        };
        let buffered = pos >= self.buf_start && want_end <= self.buf_start + self.buf.len() as u64;
        if !buffered {
            // Read ahead by a whole chunk, but never past the end: the caller
            // has already checked that `len` bytes exist.
            let read_len = (len.max(self.chunk) as u64).min(self.end - pos) as usize;
            self.buf.resize(read_len, 0);
            self.file.read_exact_at(&mut self.buf, pos)?;
            self.buf_start = pos;
        }
        let from = (pos - self.buf_start) as usize;
        Ok(Some(&self.buf[from..from + len]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn serves_ranges_across_chunks_and_stops_at_end() {
        let mut file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..=255).collect();
        file.write_all(&data).unwrap();
        let mut reader = ScanReader::new(&file, 200, 16);
        assert_eq!(reader.get(0, 4).unwrap().unwrap(), &data[0..4]);
        assert_eq!(reader.get(10, 10).unwrap().unwrap(), &data[10..20]);
        assert_eq!(reader.get(50, 100).unwrap().unwrap(), &data[50..150]);
        assert_eq!(reader.get(190, 10).unwrap().unwrap(), &data[190..200]);
        assert!(reader.get(190, 11).unwrap().is_none());
        assert!(reader.get(u64::MAX, 1).unwrap().is_none());
    }
}

//! The compression of trace-cmd's version 7 files: the algorithm the file names, and the
//! one place its data is inflated.

use alloc::format;
use alloc::vec::Vec;

use super::FileError;

/// The most bytes one compressed piece (a section, or a chunk of a CPU's data) may claim to
/// inflate to. trace-cmd 3.1.6 writes chunks of ten pages; a larger claim is a corrupt or
/// hostile file, refused before anything is allocated.
pub const MAX_INFLATED: usize = 256 << 20;

/// What a whole file may inflate to: this many times its own size, and at least
/// [`MIN_BUDGET`] (trace-cmd's zstd files inflate about 4 times; a hostile file whose
/// few bytes claim gigabytes is refused before they are allocated).
pub const MAX_RATIO: usize = 64;

/// The smallest budget of a file ([`Budget::for_file`]).
pub const MIN_BUDGET: usize = 64 << 20;

/// What is left to inflate for one file: every compressed piece is charged against it
/// before its memory is allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    left: usize,
}

impl Budget {
    /// The budget of a file of `len` bytes: [`MAX_RATIO`] times its size, at least
    /// [`MIN_BUDGET`].
    pub fn for_file(len: usize) -> Self {
        Self {
            left: len.saturating_mul(MAX_RATIO).max(MIN_BUDGET),
        }
    }

    /// Takes `n` bytes from the budget; false (and nothing taken) when fewer are left.
    fn take(&mut self, n: usize) -> bool {
        match self.left.checked_sub(n) {
            Some(left) => {
                self.left = left;
                true
            }
            None => false,
        }
    }
}

/// How a version 7 file's compressed sections and data are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// `none`: nothing may be compressed.
    None,
    /// `zstd`: Zstandard frames (what trace-cmd 3.1.6 writes with `--compression any`).
    Zstd,
}

impl Codec {
    /// The codec the file's compression header names.
    ///
    /// # Errors
    /// [`FileError::Unsupported`] for an algorithm this crate does not inflate (or `zstd`
    /// without the `zstd` feature).
    pub fn named(name: &str) -> Result<Self, FileError> {
        match name {
            "none" | "" => Ok(Self::None),
            "zstd" if cfg!(feature = "zstd") => Ok(Self::Zstd),
            "zstd" => Err(FileError::Unsupported(
                "a zstd-compressed file: build hyptrace-tracedat with its `zstd` feature".into(),
            )),
            other => Err(FileError::Unsupported(format!(
                "{other:?} compression (zstd and none are read: `trace-cmd convert \
                 --compression none` writes a file without)"
            ))),
        }
    }

    /// Inflates `data`, which must give exactly `expected` bytes, charged to `budget`;
    /// `what` and `at` name it in errors.
    ///
    /// # Errors
    /// [`FileError::Malformed`] when the file names no compression, `expected` is above
    /// [`MAX_INFLATED`] or what is left of `budget`, or the data does not inflate to exactly
    /// `expected` bytes.
    pub fn inflate(
        self,
        data: &[u8],
        expected: usize,
        budget: &mut Budget,
        what: &str,
        at: usize,
    ) -> Result<Vec<u8>, FileError> {
        let malformed = |why: &str| FileError::Malformed {
            what: format!("{what}: {why}"),
            at,
        };
        if expected > MAX_INFLATED {
            return Err(malformed(&format!(
                "claims {expected} bytes uncompressed, above the {MAX_INFLATED} accepted"
            )));
        }
        let Self::Zstd = self else {
            return Err(malformed("compressed, but the file names no compression"));
        };
        if !budget.take(expected) {
            return Err(malformed(&format!(
                "{expected} more bytes uncompressed is beyond what the file may inflate to \
                 ({MAX_RATIO} times its size, at least {MIN_BUDGET})"
            )));
        }
        let mut out = alloc::vec![0u8; expected];
        let written = zstd(data, &mut out).map_err(|e| malformed(&e))?;
        if written != expected {
            return Err(malformed(&format!(
                "inflates to {written} bytes, not the {expected} it claims"
            )));
        }
        Ok(out)
    }
}

/// Inflates the zstd frames of `data` into `out`; the bytes written.
#[cfg(feature = "zstd")]
fn zstd(data: &[u8], out: &mut [u8]) -> Result<usize, alloc::string::String> {
    let mut decoder = ruzstd::decoding::FrameDecoder::new();
    // A frame's window needs no more than what it inflates to; a larger claim is refused
    // rather than reserved.
    let window = out.len().next_power_of_two().max(8 << 20) as u64;
    decoder.set_max_window_size(window);
    decoder
        .decode_all(data, out)
        .map_err(|e| format!("zstd: {e}"))
}

#[cfg(not(feature = "zstd"))]
fn zstd(_data: &[u8], _out: &mut [u8]) -> Result<usize, alloc::string::String> {
    Err(alloc::string::String::from("zstd support is not built in"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "zstd")]
    fn only_none_and_zstd_are_named() {
        assert_eq!(Codec::named("none"), Ok(Codec::None));
        assert_eq!(Codec::named("zstd"), Ok(Codec::Zstd));
        let e = Codec::named("zlib").unwrap_err().to_string();
        assert!(e.contains("\"zlib\" compression"), "{e}");
    }

    #[test]
    #[cfg(not(feature = "zstd"))]
    fn without_the_feature_zstd_is_named_but_refused() {
        let e = Codec::named("zstd").unwrap_err().to_string();
        assert!(e.contains("`zstd` feature"), "{e}");
    }

    #[test]
    fn a_claim_beyond_the_bound_or_without_a_codec_is_refused() {
        let mut budget = Budget::for_file(0);
        let e = Codec::Zstd
            .inflate(&[], MAX_INFLATED + 1, &mut budget, "chunk", 7)
            .unwrap_err();
        assert!(e.to_string().contains("above the"), "{e}");
        let e = Codec::None
            .inflate(&[1], 1, &mut budget, "section", 7)
            .unwrap_err();
        assert!(e.to_string().contains("names no compression"), "{e}");
        assert_eq!(budget, Budget::for_file(0), "nothing charged for refusals");
    }

    #[test]
    fn a_file_inflates_to_at_most_its_budget() {
        let mut budget = Budget::for_file(1);
        assert_eq!(budget.left, MIN_BUDGET);
        assert!(budget.take(MIN_BUDGET - 10) && !budget.take(11) && budget.take(10));
        assert_eq!(Budget::for_file(MIN_BUDGET).left, MIN_BUDGET * MAX_RATIO);
        let mut nearly_spent = Budget { left: 5 };
        let e = Codec::Zstd
            .inflate(&[0], 12, &mut nearly_spent, "chunk", 3)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("beyond what the file may inflate to"),
            "{e}"
        );
        assert_eq!(nearly_spent.left, 5);
    }

    /// The zstd frame `printf 'hyptrace\n\n\n\n' | zstd -c --no-check` (zstd 1.5.4) writes.
    const FRAME: [u8; 21] = [
        0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58, 0x61, 0x00, 0x00, 0x68, 0x79, 0x70, 0x74, 0x72, 0x61,
        0x63, 0x65, 0x0a, 0x0a, 0x0a, 0x0a,
    ];

    #[test]
    #[cfg(feature = "zstd")]
    fn a_zstd_frame_inflates_to_exactly_its_claim() {
        let mut budget = Budget::for_file(0);
        let out = Codec::Zstd
            .inflate(&FRAME, 12, &mut budget, "section", 0)
            .unwrap();
        assert_eq!(out, b"hyptrace\n\n\n\n");
        let e = Codec::Zstd
            .inflate(&FRAME, 13, &mut budget, "section", 0)
            .unwrap_err();
        assert!(e.to_string().contains("inflates to 12 bytes"), "{e}");
        assert!(Codec::Zstd
            .inflate(&FRAME[..10], 12, &mut budget, "section", 0)
            .is_err());
    }
}

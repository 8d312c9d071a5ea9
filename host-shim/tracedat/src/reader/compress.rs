//! The compression of trace-cmd's version 7 files: the algorithm the file names, and the
//! one place its data is inflated.

use alloc::format;
use alloc::vec::Vec;

use super::FileError;

/// The most bytes one compressed piece (a section, or a chunk of a CPU's data) may claim to
/// inflate to. trace-cmd 3.1.6 writes chunks of ten pages; a larger claim is a corrupt or
/// hostile file, refused before anything is allocated.
pub const MAX_INFLATED: usize = 256 << 20;

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

    /// Inflates `data`, which must give exactly `expected` bytes; `what` and `at` name it in
    /// errors.
    ///
    /// # Errors
    /// [`FileError::Malformed`] when the file names no compression, `expected` is above
    /// [`MAX_INFLATED`], or the data does not inflate to exactly `expected` bytes.
    pub fn inflate(
        self,
        data: &[u8],
        expected: usize,
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
        match self {
            Self::None => Err(malformed("compressed, but the file names no compression")),
            Self::Zstd => {
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
    }
}

/// Inflates the zstd frames of `data` into `out`; the bytes written.
#[cfg(feature = "zstd")]
fn zstd(data: &[u8], out: &mut [u8]) -> Result<usize, alloc::string::String> {
    ruzstd::decoding::FrameDecoder::new()
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
        let e = Codec::Zstd
            .inflate(&[], MAX_INFLATED + 1, "chunk", 7)
            .unwrap_err();
        assert!(e.to_string().contains("above the"), "{e}");
        let e = Codec::None.inflate(&[1], 1, "section", 7).unwrap_err();
        assert!(e.to_string().contains("names no compression"), "{e}");
    }

    /// The zstd frame `printf 'hyptrace\n\n\n\n' | zstd -c --no-check` (zstd 1.5.4) writes.
    const FRAME: [u8; 21] = [
        0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58, 0x61, 0x00, 0x00, 0x68, 0x79, 0x70, 0x74, 0x72, 0x61,
        0x63, 0x65, 0x0a, 0x0a, 0x0a, 0x0a,
    ];

    #[test]
    #[cfg(feature = "zstd")]
    fn a_zstd_frame_inflates_to_exactly_its_claim() {
        let out = Codec::Zstd.inflate(&FRAME, 12, "section", 0).unwrap();
        assert_eq!(out, b"hyptrace\n\n\n\n");
        let e = Codec::Zstd.inflate(&FRAME, 13, "section", 0).unwrap_err();
        assert!(e.to_string().contains("inflates to 12 bytes"), "{e}");
        assert!(Codec::Zstd.inflate(&FRAME[..10], 12, "section", 0).is_err());
    }
}

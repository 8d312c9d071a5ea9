//! `hyp_printk`: text from the hypervisor, formatted by whoever reads it.
//!
//! A `hyp_printk!` call site (the macro lives in the `hyp` crate) does no formatting at EL2:
//! it writes one event holding the address of its [`Site`] — a `static` with the format,
//! converted to C at compile time — and its arguments as binary words. The event is ftrace's
//! own `ftrace:bprint`, the event the kernel's `trace_printk` writes, so trace-cmd and
//! KernelShark print the text with no plugin: trace.dat's *printk formats* section maps each
//! site address to its format, and its *kallsyms* section maps the same address to the call
//! site's module, which libtraceevent prints in front of the text (`%ps`).
//!
//! # Payload (pKVM header; 20 + 8 × n bytes)
//!
//! | Offset | Size | Field |
//! |---|---|---|
//! | 0 | 2 | `common_type` = [`ID`] |
//! | 2 | 2 | `nr_args`: number of arguments n (informative; readers count from the format) |
//! | 4 | 8 | `ip`: the site address (named in kallsyms) |
//! | 12 | 8 | `fmt`: the site address (named in printk formats) |
//! | 20 | 8 × n | `buf`: the arguments, each a little-endian u64 |
//!
//! Every argument is 8 bytes and every conversion the macro produces is a `ll` one, which
//! libtraceevent reads as 8 bytes at the next 4-byte boundary: the layout it expects.
//!
//! # Formats
//!
//! Placeholders, converted by [`c_format`] at compile time:
//!
//! | In the macro | In C | Argument |
//! |---|---|---|
//! | `{}` | `%llu` | unsigned integer or `bool` |
//! | `{:i}` | `%lld` | signed integer |
//! | `{:x}` | `%llx` | unsigned integer |
//! | `{:#x}` | `0x%llx` | unsigned integer |
//!
//! `{{` and `}}` are literal braces and `%` becomes `%%`. A format holds no `"`, `\` or
//! control character (trace.dat stores it quoted) and at most [`MAX_ARGS`] placeholders;
//! a mismatch between a placeholder and its argument's signedness fails to compile.
//!
//! # The format table
//!
//! The host fetches the sites with the `printk_formats(page, first)` hypercall, which fills
//! one host page with entries ([`write_entry`], [`entries`]):
//!
//! | Offset | Size | Field |
//! |---|---|---|
//! | 0 | 8 | the site address |
//! | 8 | 2 | format length f |
//! | 10 | 2 | location length l |
//! | 12 | 4 | zero |
//! | 16 | f | the C format (UTF-8) |
//! | 16 + f | l | the location (the module path of the call site) |
//!
//! each entry padded with zeros to a multiple of 8 bytes.

use core::fmt::{self, Write};

use crate::event_format::{EventDesc, FieldDesc, Header};

/// Event ID of `bprint` in hyptrace's ID namespace (after the hypervisor's events).
pub const ID: u16 = 8;
/// The event's name: ftrace's binary printk event.
pub const NAME: &str = "bprint";
/// The event's system: ftrace's own events, where libtraceevent looks for `bprint`.
pub const SYSTEM: &str = "ftrace";

/// Offset of `nr_args`.
pub const NR_ARGS_OFFSET: usize = 2;
/// Offset of `ip`.
pub const IP_OFFSET: usize = 4;
/// Offset of `fmt`.
pub const FMT_OFFSET: usize = 12;
/// Offset of the first argument (`buf`).
pub const ARGS_OFFSET: usize = 20;
/// Most arguments one call may pass.
pub const MAX_ARGS: usize = 8;
/// Longest C format a site may have.
pub const MAX_FORMAT_LEN: usize = 1024;
/// Longest location a site may have.
pub const MAX_LOCATION_LEN: usize = 256;

/// Bytes of a payload with `nr_args` arguments.
pub const fn payload_len(nr_args: usize) -> usize {
    ARGS_OFFSET + 8 * nr_args
}

/// The event's scalar fields, for lookups by ID or name and for `enable_event`. Its format
/// file also has the `buf` array: see [`write_format`].
pub const DESC: EventDesc = EventDesc {
    id: ID,
    name: NAME,
    header: Header::Pkvm,
    fields: &[
        FieldDesc {
            name: "nr_args",
            c_type: "unsigned short",
            size: 2,
            signed: false,
        },
        FieldDesc {
            name: "ip",
            c_type: "unsigned long",
            size: 8,
            signed: false,
        },
        FieldDesc {
            name: "fmt",
            c_type: "const char *",
            size: 8,
            signed: false,
        },
    ],
    print_fmt: "\"%ps: %s\", (void *)REC->ip, REC->fmt",
};

const _: () = {
    assert!(DESC.payload_len() == ARGS_OFFSET);
    assert!(ARGS_OFFSET.is_multiple_of(4));
};

/// Writes the event's ftrace format file (what trace.dat's ftrace section carries).
///
/// # Errors
/// Only those of `out`.
pub fn write_format(out: &mut (impl Write + ?Sized)) -> fmt::Result {
    write!(out, "name: {NAME}\nID: {ID}\nformat:\n")?;
    out.write_str("\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\n")?;
    for (i, f) in DESC.fields.iter().enumerate() {
        writeln!(
            out,
            "\tfield:{} {};\toffset:{};\tsize:{};\tsigned:0;",
            f.c_type,
            f.name,
            DESC.offset_of(i),
            f.size
        )?;
    }
    writeln!(
        out,
        "\tfield:u32 buf[];\toffset:{ARGS_OFFSET};\tsize:0;\tsigned:0;"
    )?;
    writeln!(out, "\nprint fmt: {}", DESC.print_fmt)
}

/// One `hyp_printk!` call site, in the hypervisor's format table. Its address identifies it
/// in events and in trace.dat.
#[derive(Debug)]
pub struct Site {
    /// The C format ([`c_format`]).
    pub format: &'static str,
    /// Where the call is: its module path (`hyp::psci`).
    pub location: &'static str,
    /// How many arguments it passes.
    pub nr_args: u16,
}

/// How a placeholder prints its argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spec {
    /// `{}`: unsigned decimal.
    Unsigned,
    /// `{:i}`: signed decimal.
    Signed,
    /// `{:x}`: hexadecimal.
    Hex,
    /// `{:#x}`: hexadecimal after `0x`.
    PrefixedHex,
}

impl Spec {
    /// The C conversion it becomes.
    pub const fn c_text(self) -> &'static str {
        match self {
            Self::Unsigned => "%llu",
            Self::Signed => "%lld",
            Self::Hex => "%llx",
            Self::PrefixedHex => "0x%llx",
        }
    }
}

const fn starts_with(b: &[u8], at: usize, p: &[u8]) -> bool {
    if at + p.len() > b.len() {
        return false;
    }
    let mut i = 0;
    while i < p.len() {
        if b[at + i] != p[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// What one step of the scan found at a position.
enum Token {
    /// Copy one input byte.
    Byte(u8),
    /// A literal `%` (written `%%`).
    Percent,
    /// A placeholder.
    Spec(Spec),
}

/// The token at `at` and the position after it. Panics (a compile error in the macro's
/// constant) on what a format may not hold.
const fn token(b: &[u8], at: usize) -> (Token, usize) {
    let c = b[at];
    if c == b'{' {
        if starts_with(b, at, b"{{") {
            return (Token::Byte(b'{'), at + 2);
        }
        if starts_with(b, at, b"{}") {
            return (Token::Spec(Spec::Unsigned), at + 2);
        }
        if starts_with(b, at, b"{:i}") {
            return (Token::Spec(Spec::Signed), at + 4);
        }
        if starts_with(b, at, b"{:x}") {
            return (Token::Spec(Spec::Hex), at + 4);
        }
        if starts_with(b, at, b"{:#x}") {
            return (Token::Spec(Spec::PrefixedHex), at + 5);
        }
        panic!("hyp_printk!: placeholders are {{}}, {{:i}}, {{:x}} and {{:#x}}");
    }
    if c == b'}' {
        if starts_with(b, at, b"}}") {
            return (Token::Byte(b'}'), at + 2);
        }
        panic!("hyp_printk!: unmatched `}}` (write `}}}}` for a brace)");
    }
    if c == b'%' {
        return (Token::Percent, at + 1);
    }
    if c == b'"' || c == b'\\' || c < 0x20 || c == 0x7f {
        panic!("hyp_printk!: a format holds no quote, backslash or control character");
    }
    (Token::Byte(c), at + 1)
}

/// Length of the C format of `fmt`.
///
/// # Panics
/// On an invalid format (see the module documentation): in a constant, a compile error.
pub const fn c_len(fmt: &str) -> usize {
    let b = fmt.as_bytes();
    let mut at = 0;
    let mut len = 0;
    while at < b.len() {
        let (t, next) = token(b, at);
        len += match t {
            Token::Byte(_) => 1,
            Token::Percent => 2,
            Token::Spec(s) => s.c_text().len(),
        };
        at = next;
    }
    assert!(len <= MAX_FORMAT_LEN, "hyp_printk!: format too long");
    len
}

/// Number of placeholders in `fmt`.
///
/// # Panics
/// On an invalid format or more than [`MAX_ARGS`] placeholders (a compile error in a
/// constant).
pub const fn arg_count(fmt: &str) -> usize {
    let b = fmt.as_bytes();
    let (mut at, mut n) = (0, 0);
    while at < b.len() {
        let (t, next) = token(b, at);
        if let Token::Spec(_) = t {
            n += 1;
        }
        at = next;
    }
    assert!(n <= MAX_ARGS, "hyp_printk!: more than 8 arguments");
    n
}

/// The placeholder `index` of `fmt`.
///
/// # Panics
/// On an invalid format, or if there is no placeholder `index` (a compile error in a
/// constant).
pub const fn spec(fmt: &str, index: usize) -> Spec {
    let b = fmt.as_bytes();
    let (mut at, mut n) = (0, 0);
    while at < b.len() {
        let (t, next) = token(b, at);
        if let Token::Spec(s) = t {
            if n == index {
                return s;
            }
            n += 1;
        }
        at = next;
    }
    panic!("hyp_printk!: more arguments than placeholders")
}

/// The C format of `fmt`, `N` = [`c_len`]`(fmt)` bytes.
///
/// # Panics
/// On an invalid format, or if `N` is not `c_len(fmt)` (a compile error in a constant).
pub const fn c_format<const N: usize>(fmt: &str) -> [u8; N] {
    let b = fmt.as_bytes();
    let mut out = [0u8; N];
    let (mut at, mut o) = (0, 0);
    while at < b.len() {
        let (t, next) = token(b, at);
        match t {
            Token::Byte(c) => {
                out[o] = c;
                o += 1;
            }
            Token::Percent => {
                out[o] = b'%';
                out[o + 1] = b'%';
                o += 2;
            }
            Token::Spec(s) => {
                let text = s.c_text().as_bytes();
                let mut i = 0;
                while i < text.len() {
                    out[o + i] = text[i];
                    i += 1;
                }
                o += text.len();
            }
        }
        at = next;
    }
    assert!(o == N, "c_format: N is not c_len(fmt)");
    out
}

/// A value `hyp_printk!` can pass: an integer or `bool`, stored as one 64-bit word (signed
/// ones sign-extended).
pub trait PrintkArg: Copy {
    /// Whether it prints with `{:i}`.
    const SIGNED: bool;
    /// The word stored in the event.
    fn word(self) -> u64;
}

macro_rules! printk_args {
    ($($ty:ty => $signed:literal;)*) => {$(
        impl PrintkArg for $ty {
            const SIGNED: bool = $signed;
            #[inline(always)]
            fn word(self) -> u64 {
                // Widening: zero-extension for unsigned, sign-extension for signed types.
                self as i128 as u64
            }
        }
    )*};
}

printk_args! {
    u8 => false; u16 => false; u32 => false; u64 => false; usize => false;
    i8 => true; i16 => true; i32 => true; i64 => true; isize => true;
}

impl PrintkArg for bool {
    const SIGNED: bool = false;
    #[inline(always)]
    fn word(self) -> u64 {
        self as u64
    }
}

/// Argument `v` as stored, checking at compile time that its signedness is the one its
/// placeholder prints (`SIGNED`: whether that placeholder is `{:i}`).
#[inline(always)]
pub fn arg<T: PrintkArg, const SIGNED: bool>(v: T) -> u64 {
    const {
        assert!(
            T::SIGNED == SIGNED,
            "hyp_printk!: a signed argument needs {{:i}}; an unsigned one {{}}, {{:x}} or {{:#x}}"
        );
    }
    v.word()
}

/// Writes the first 20 bytes of a payload (`common_type`, `nr_args`, `ip`, `fmt`) into
/// `out[..ARGS_OFFSET]`; returns `false`, writing nothing, if `out` is shorter.
pub fn encode_header(out: &mut [u8], site: u64, nr_args: u16) -> bool {
    let Some(h) = out.get_mut(..ARGS_OFFSET) else {
        return false;
    };
    h[..2].copy_from_slice(&ID.to_le_bytes());
    h[2..4].copy_from_slice(&nr_args.to_le_bytes());
    h[4..12].copy_from_slice(&site.to_le_bytes());
    h[12..20].copy_from_slice(&site.to_le_bytes());
    true
}

/// A decoded `bprint` payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// `nr_args` as written.
    pub nr_args: u16,
    /// `ip`.
    pub ip: u64,
    /// `fmt`: the site address to look the format up with.
    pub fmt: u64,
    /// The argument bytes (everything after offset 20).
    pub args: &'a [u8],
}

/// Decodes a `bprint` payload; `None` if it is shorter than its fixed part or not a
/// `bprint` event.
pub fn parse(payload: &[u8]) -> Option<Record<'_>> {
    let word = |at: usize| -> Option<u64> {
        let b: [u8; 8] = payload.get(at..at + 8)?.try_into().ok()?;
        Some(u64::from_le_bytes(b))
    };
    let id = u16::from_le_bytes(payload.get(..2)?.try_into().ok()?);
    if id != ID {
        return None;
    }
    Some(Record {
        nr_args: u16::from_le_bytes(payload.get(2..4)?.try_into().ok()?),
        ip: word(IP_OFFSET)?,
        fmt: word(FMT_OFFSET)?,
        args: payload.get(ARGS_OFFSET..)?,
    })
}

/// Header bytes of a format-table entry.
pub const ENTRY_HEADER_LEN: usize = 16;

/// Bytes of the entry for a format of `format_len` bytes at a location of `location_len`.
pub const fn entry_len(format_len: usize, location_len: usize) -> usize {
    (ENTRY_HEADER_LEN + format_len + location_len).next_multiple_of(8)
}

/// Writes the format-table entry of the site at `addr` at the start of `out`; returns its
/// length, or `None` (nothing written) if it does not fit or a string is too long.
pub fn write_entry(out: &mut [u8], addr: u64, format: &str, location: &str) -> Option<usize> {
    if format.len() > MAX_FORMAT_LEN || location.len() > MAX_LOCATION_LEN {
        return None;
    }
    let len = entry_len(format.len(), location.len());
    let e = out.get_mut(..len)?;
    e.fill(0);
    e[..8].copy_from_slice(&addr.to_le_bytes());
    e[8..10].copy_from_slice(&(format.len() as u16).to_le_bytes());
    e[10..12].copy_from_slice(&(location.len() as u16).to_le_bytes());
    let f = ENTRY_HEADER_LEN + format.len();
    e[ENTRY_HEADER_LEN..f].copy_from_slice(format.as_bytes());
    e[f..f + location.len()].copy_from_slice(location.as_bytes());
    Some(len)
}

/// One entry of the format table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The site address.
    pub addr: u64,
    /// Its C format.
    pub format: &'a str,
    /// Its location.
    pub location: &'a str,
}

/// Why a format-table entry was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryError {
    /// The entry at this offset runs past the bytes given.
    Truncated(usize),
    /// The entry at this offset has a string that is too long, not UTF-8, or holds what a
    /// format may not (a quote, backslash or control character), or non-zero reserved bytes.
    Malformed(usize),
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated(at) => write!(f, "printk format entry at byte {at} is truncated"),
            Self::Malformed(at) => write!(f, "printk format entry at byte {at} is malformed"),
        }
    }
}

impl core::error::Error for EntryError {}

fn printable(s: &str) -> bool {
    s.bytes()
        .all(|c| c != b'"' && c != b'\\' && c >= 0x20 && c != 0x7f)
}

/// The first `count` entries of a format-table page, each checked (the page comes from the
/// other side of a trust boundary). Stops after the first error.
pub fn entries(bytes: &[u8], count: usize) -> impl Iterator<Item = Result<Entry<'_>, EntryError>> {
    let mut at = 0usize;
    let mut left = count;
    core::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        left -= 1;
        let r = (|| {
            let h = bytes
                .get(at..at + ENTRY_HEADER_LEN)
                .ok_or(EntryError::Truncated(at))?;
            let addr = u64::from_le_bytes(h[..8].try_into().unwrap_or_default());
            let f = usize::from(u16::from_le_bytes([h[8], h[9]]));
            let l = usize::from(u16::from_le_bytes([h[10], h[11]]));
            if h[12..16] != [0; 4] || f > MAX_FORMAT_LEN || l > MAX_LOCATION_LEN {
                return Err(EntryError::Malformed(at));
            }
            let len = entry_len(f, l);
            let body = bytes.get(at..at + len).ok_or(EntryError::Truncated(at))?;
            let text = |r: core::ops::Range<usize>| {
                core::str::from_utf8(&body[r])
                    .ok()
                    .filter(|s| printable(s))
                    .ok_or(EntryError::Malformed(at))
            };
            let format = text(ENTRY_HEADER_LEN..ENTRY_HEADER_LEN + f)?;
            let location = text(ENTRY_HEADER_LEN + f..ENTRY_HEADER_LEN + f + l)?;
            at += len;
            Ok(Entry {
                addr,
                format,
                location,
            })
        })();
        if r.is_err() {
            left = 0;
        }
        Some(r)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: &str = "swap cpu={} lost={:i} at {:#x} {:x} 100% {{ok}}";

    #[test]
    fn formats_convert_to_c() {
        const N: usize = c_len(F);
        const C: [u8; N] = c_format::<N>(F);
        assert_eq!(
            core::str::from_utf8(&C).unwrap(),
            "swap cpu=%llu lost=%lld at 0x%llx %llx 100%% {ok}"
        );
        assert_eq!(arg_count(F), 4);
        assert_eq!(spec(F, 0), Spec::Unsigned);
        assert_eq!(spec(F, 1), Spec::Signed);
        assert_eq!(spec(F, 2), Spec::PrefixedHex);
        assert_eq!(spec(F, 3), Spec::Hex);
    }

    #[test]
    fn arguments_widen_by_signedness() {
        assert_eq!(arg::<i32, true>(-2), (-2i64) as u64);
        assert_eq!(arg::<u32, false>(u32::MAX), 0xffff_ffff);
        assert_eq!(arg::<bool, false>(true), 1);
        assert_eq!(arg::<isize, true>(-1), u64::MAX);
    }

    #[test]
    fn payload_round_trip_renders_like_c() {
        let mut p = [0u8; payload_len(2)];
        assert!(encode_header(&mut p, 0x4000_1234, 2));
        p[20..28].copy_from_slice(&3u64.to_le_bytes());
        p[28..36].copy_from_slice(&(-7i64).to_le_bytes());
        let r = parse(&p).unwrap();
        assert_eq!((r.nr_args, r.ip, r.fmt), (2, 0x4000_1234, 0x4000_1234));
        let mut s = String::new();
        crate::printf::write_binary(&mut s, "cpu=%llu err=%lld", r.args).unwrap();
        assert_eq!(s, "cpu=3 err=-7");
        assert_eq!(parse(&p[..19]), None);
        let mut other = p;
        other[0] = 7;
        assert_eq!(parse(&other), None);
    }

    #[test]
    fn format_file_has_the_buf_array() {
        let mut s = String::new();
        write_format(&mut s).unwrap();
        assert_eq!(
            s,
            "name: bprint\nID: 8\nformat:\n\
             \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\n\
             \tfield:unsigned short nr_args;\toffset:2;\tsize:2;\tsigned:0;\n\
             \tfield:unsigned long ip;\toffset:4;\tsize:8;\tsigned:0;\n\
             \tfield:const char * fmt;\toffset:12;\tsize:8;\tsigned:0;\n\
             \tfield:u32 buf[];\toffset:20;\tsize:0;\tsigned:0;\n\n\
             print fmt: \"%ps: %s\", (void *)REC->ip, REC->fmt\n"
        );
    }

    #[test]
    fn table_entries_round_trip_and_refuse_garbage() {
        let mut page = [0u8; 256];
        let a = write_entry(&mut page, 0x10, "a=%llu", "hyp::psci").unwrap();
        let b = write_entry(&mut page[a..], 0x20, "", "x").unwrap();
        assert_eq!(a, entry_len(6, 9));
        assert_eq!(a % 8, 0);
        let got: Vec<_> = entries(&page, 2).map(Result::unwrap).collect();
        assert_eq!(got[0].format, "a=%llu");
        assert_eq!(got[0].location, "hyp::psci");
        assert_eq!((got[1].addr, got[1].format), (0x20, ""));
        assert!(write_entry(&mut page[..20], 0, "long enough", "x").is_none());
        // Asked for more than there is: the third is truncated (zeros decode as an empty
        // entry, so cut the page).
        let e: Vec<_> = entries(&page[..a + b], 3).collect();
        assert_eq!(e[2], Err(EntryError::Truncated(a + b)));
        let mut bad = page;
        bad[ENTRY_HEADER_LEN] = b'"';
        assert_eq!(entries(&bad, 1).next(), Some(Err(EntryError::Malformed(0))));
        let mut bad = page;
        bad[8] = 0xff;
        bad[9] = 0xff;
        assert_eq!(entries(&bad, 1).next(), Some(Err(EntryError::Malformed(0))));
    }
}

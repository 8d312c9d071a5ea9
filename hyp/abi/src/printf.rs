//! C `printf` conversions as libtraceevent applies them, without allocation.
//!
//! Event formats (`print fmt:`) and `hyp_printk` formats ([`crate::printk`]) are C format
//! strings. Readers on both sides render them with this module: the host's trace.dat report
//! (which has an allocator) and the hypervisor's flight recorder (which has none), so a value
//! prints the same everywhere, and as trace-cmd prints it.
//!
//! Supported: the flags `- + space # 0`, a decimal width and precision, the length modifiers
//! `hh h l ll z j t L q`, and the conversions `d i u x X o c`. `*` widths and other
//! conversions are refused ([`ConvError`]).

use core::fmt::{self, Write};

/// A conversion's length modifier, as the width of the C type it casts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Length {
    /// `hh`: char.
    Char,
    /// `h`: short.
    Short,
    /// none: int.
    Int,
    /// `l`, `ll`, `z`, `j`, `t`, `L`, `q`: 64 bits (LP64).
    Long,
}

impl Length {
    /// Bits of the C type.
    pub const fn bits(self) -> u32 {
        match self {
            Self::Char => 8,
            Self::Short => 16,
            Self::Int => 32,
            Self::Long => 64,
        }
    }

    /// Bytes a binary-printf argument of this length occupies (libtraceevent's
    /// `make_bprint_args`: 4 up to `int`, 8 for `long` and `long long`).
    pub const fn arg_size(self) -> usize {
        match self {
            Self::Long => 8,
            _ => 4,
        }
    }
}

/// One `%` conversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conversion {
    /// `-`
    pub left: bool,
    /// `+`
    pub plus: bool,
    /// ` `
    pub space: bool,
    /// `#`
    pub alt: bool,
    /// `0`
    pub zero: bool,
    /// Minimum width.
    pub width: usize,
    /// Minimum digits.
    pub precision: Option<usize>,
    /// Length modifier.
    pub length: Length,
    /// `d i u x X o c`.
    pub conv: u8,
}

/// Why a conversion could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvError {
    /// `*` as width or precision.
    StarWidth,
    /// The format ends inside a conversion.
    Unterminated,
    /// A conversion character this module does not render (`%s`, `%p`, ...).
    Unsupported(u8),
    /// A width or precision too large to be meant.
    TooWide,
}

impl fmt::Display for ConvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StarWidth => f.write_str("`*` widths and precisions are not supported"),
            Self::Unterminated => f.write_str("format ends inside a conversion"),
            Self::Unsupported(c) => write!(f, "conversion %{} is not supported", *c as char),
            Self::TooWide => f.write_str("width or precision above 4096"),
        }
    }
}

impl core::error::Error for ConvError {}

/// Largest width or precision accepted: a page's worth.
const MAX_WIDTH: usize = 4096;

/// Parses the conversion that starts right after a `%` at `bytes[at..]` (not `%%`: the
/// caller handles that). Returns it and the index after it.
///
/// # Errors
/// [`ConvError`] for what this module does not render.
pub fn parse_conversion(bytes: &[u8], mut at: usize) -> Result<(Conversion, usize), ConvError> {
    let mut c = Conversion {
        left: false,
        plus: false,
        space: false,
        alt: false,
        zero: false,
        width: 0,
        precision: None,
        length: Length::Int,
        conv: 0,
    };
    while let Some(&f) = bytes.get(at) {
        match f {
            b'-' => c.left = true,
            b'+' => c.plus = true,
            b' ' => c.space = true,
            b'#' => c.alt = true,
            b'0' => c.zero = true,
            _ => break,
        }
        at += 1;
    }
    let number = |at: &mut usize| -> Result<Option<usize>, ConvError> {
        if bytes.get(*at) == Some(&b'*') {
            return Err(ConvError::StarWidth);
        }
        let mut n: Option<usize> = None;
        while let Some(d) = bytes.get(*at).filter(|b| b.is_ascii_digit()) {
            let v = n.unwrap_or(0) * 10 + usize::from(d - b'0');
            if v > MAX_WIDTH {
                return Err(ConvError::TooWide);
            }
            n = Some(v);
            *at += 1;
        }
        Ok(n)
    };
    c.width = number(&mut at)?.unwrap_or(0);
    if bytes.get(at) == Some(&b'.') {
        at += 1;
        c.precision = Some(number(&mut at)?.unwrap_or(0));
    }
    let rest = bytes.get(at..).unwrap_or(&[]);
    let (length, n) = if rest.starts_with(b"hh") {
        (Length::Char, 2)
    } else if rest.starts_with(b"ll") {
        (Length::Long, 2)
    } else {
        match rest.first() {
            Some(b'h') => (Length::Short, 1),
            Some(b'l' | b'z' | b'j' | b't' | b'L' | b'q') => (Length::Long, 1),
            _ => (Length::Int, 0),
        }
    };
    c.length = length;
    at += n;
    let conv = *bytes.get(at).ok_or(ConvError::Unterminated)?;
    if !matches!(conv, b'd' | b'i' | b'u' | b'x' | b'X' | b'o' | b'c') {
        return Err(ConvError::Unsupported(conv));
    }
    c.conv = conv;
    Ok((c, at + 1))
}

/// A piece of a C format string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Literal text (`%%` already turned into `%`).
    Text(&'a str),
    /// A conversion, taking the next argument.
    Value(Conversion),
}

/// The pieces of a C format string, in order; an error ends the iteration.
#[derive(Clone, Debug)]
pub struct Pieces<'a> {
    fmt: &'a str,
    at: usize,
    failed: bool,
}

/// Splits `fmt` into literal text and conversions.
pub fn pieces(fmt: &str) -> Pieces<'_> {
    Pieces {
        fmt,
        at: 0,
        failed: false,
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = Result<Piece<'a>, ConvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let bytes = self.fmt.as_bytes();
        let start = self.at;
        if start >= bytes.len() {
            return None;
        }
        if bytes[start] != b'%' {
            let end = bytes[start..]
                .iter()
                .position(|&b| b == b'%')
                .map_or(bytes.len(), |p| start + p);
            self.at = end;
            // `%` is ASCII, so `start..end` lies on character boundaries.
            return Some(Ok(Piece::Text(&self.fmt[start..end])));
        }
        if bytes.get(start + 1) == Some(&b'%') {
            self.at = start + 2;
            return Some(Ok(Piece::Text("%")));
        }
        match parse_conversion(bytes, start + 1) {
            Ok((c, next)) => {
                self.at = next;
                Some(Ok(Piece::Value(c)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Digits of `v` in `radix` (8, 10 or 16), most significant first, in `buf`'s tail.
fn digits(mut v: u64, radix: u64, upper: bool, buf: &mut [u8; 24]) -> &str {
    let table: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = table[(v % radix) as usize];
        v /= radix;
        if v == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    core::str::from_utf8(&buf[at..]).unwrap_or("")
}

fn repeat(out: &mut (impl Write + ?Sized), c: char, n: usize) -> fmt::Result {
    for _ in 0..n {
        out.write_char(c)?;
    }
    Ok(())
}

/// Writes one value as C's printf would, after the cast libtraceevent applies: `raw` is
/// truncated to the conversion's length and, for `d`/`i`, sign-extended from it.
///
/// # Errors
/// Only those of `out`.
pub fn write_value(out: &mut (impl Write + ?Sized), c: &Conversion, raw: u64) -> fmt::Result {
    let bits = c.length.bits();
    let value = if bits == 64 {
        raw
    } else {
        raw & ((1u64 << bits) - 1)
    };
    let mut buf = [0u8; 24];
    let (negative, magnitude) = if matches!(c.conv, b'd' | b'i') {
        let shift = 64 - bits;
        let signed = ((value << shift) as i64) >> shift;
        (signed < 0, signed.unsigned_abs())
    } else {
        (false, value)
    };
    let mut char_buf = [0u8; 4];
    let body: &str = match c.conv {
        b'c' => char::from(value as u8).encode_utf8(&mut char_buf),
        b'x' => digits(magnitude, 16, false, &mut buf),
        b'X' => digits(magnitude, 16, true, &mut buf),
        b'o' => digits(magnitude, 8, false, &mut buf),
        _ => digits(magnitude, 10, false, &mut buf),
    };
    let numeric = c.conv != b'c';
    // Precision: minimum digits; `.0` prints nothing for zero.
    let (body, precision_zeros) = match c.precision {
        Some(0) if numeric && magnitude == 0 => ("", 0),
        Some(p) if numeric => (body, p.saturating_sub(body.len())),
        _ => (body, 0),
    };
    let prefix = match c.conv {
        b'd' | b'i' if negative => "-",
        b'd' | b'i' if c.plus => "+",
        b'd' | b'i' if c.space => " ",
        b'x' if c.alt && magnitude != 0 => "0x",
        b'X' if c.alt && magnitude != 0 => "0X",
        b'o' if c.alt && precision_zeros == 0 && !body.starts_with('0') => "0",
        _ => "",
    };
    let len = prefix.len() + precision_zeros + body.len();
    let fill = c.width.saturating_sub(len);
    let zero_fill = c.zero && !c.left && c.precision.is_none() && numeric;
    if !c.left && !zero_fill {
        repeat(out, ' ', fill)?;
    }
    out.write_str(prefix)?;
    if zero_fill {
        repeat(out, '0', fill)?;
    }
    repeat(out, '0', precision_zeros)?;
    out.write_str(body)?;
    if c.left {
        repeat(out, ' ', fill)?;
    }
    Ok(())
}

/// Renders the binary-printf format `fmt` with its arguments packed in `args` the way
/// libtraceevent reads a `bprint` record's `buf`: each argument 4-byte aligned, 4 bytes up to
/// `int`, 8 for `long`. An argument past the end of `args` ends the text with
/// `[truncated]`; a conversion this module does not render ends it with `[bad format]`.
///
/// # Errors
/// Only those of `out`.
pub fn write_binary(out: &mut (impl Write + ?Sized), fmt: &str, args: &[u8]) -> fmt::Result {
    let mut at = 0usize;
    for piece in pieces(fmt) {
        match piece {
            Ok(Piece::Text(t)) => out.write_str(t)?,
            Ok(Piece::Value(c)) => {
                at = at.next_multiple_of(4);
                let size = c.length.arg_size();
                let Some(bytes) = at.checked_add(size).and_then(|end| args.get(at..end)) else {
                    return out.write_str("[truncated]");
                };
                let mut raw = [0u8; 8];
                raw[..size].copy_from_slice(bytes);
                write_value(out, &c, u64::from_le_bytes(raw))?;
                at += size;
            }
            Err(_) => return out.write_str("[bad format]"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(fmt: &str, raw: u64) -> String {
        let (c, end) = parse_conversion(fmt.as_bytes(), 1).unwrap();
        assert_eq!(end, fmt.len(), "{fmt}");
        let mut s = String::new();
        write_value(&mut s, &c, raw).unwrap();
        s
    }

    #[test]
    fn values_print_as_c_does() {
        assert_eq!(one("%d", (-4i64) as u64), "-4");
        assert_eq!(one("%u", (-4i64) as u64), "4294967292");
        assert_eq!(one("%llu", u64::MAX), "18446744073709551615");
        assert_eq!(one("%lld", i64::MIN as u64), "-9223372036854775808");
        assert_eq!(one("%x", 0xdead_beef_cafe), "beefcafe");
        assert_eq!(one("%#llx", 0xdead_beef_cafe), "0xdeadbeefcafe");
        assert_eq!(one("%#x", 0), "0");
        assert_eq!(one("%#X", 255), "0XFF");
        assert_eq!(one("%o", 8), "10");
        assert_eq!(one("%#o", 8), "010");
        assert_eq!(one("%08x", 0xab), "000000ab");
        assert_eq!(one("%-5d", 3), "3    ");
        assert_eq!(one("%5d", -3i64 as u64), "   -3");
        assert_eq!(one("%05d", -3i64 as u64), "-0003");
        assert_eq!(one("%+d", 3), "+3");
        assert_eq!(one("% d", 3), " 3");
        assert_eq!(one("%.3d", 7), "007");
        assert_eq!(one("%.0d", 0), "");
        assert_eq!(one("%8.3x", 0xa), "     00a");
        assert_eq!(one("%hhu", 0x1ff), "255");
        assert_eq!(one("%hd", 0xffff), "-1");
        assert_eq!(one("%c", b'A' as u64), "A");
    }

    #[test]
    fn refusals_are_typed() {
        assert_eq!(parse_conversion(b"%*d", 1), Err(ConvError::StarWidth));
        assert_eq!(parse_conversion(b"%ll", 1), Err(ConvError::Unterminated));
        assert_eq!(
            parse_conversion(b"%s", 1),
            Err(ConvError::Unsupported(b's'))
        );
        assert_eq!(parse_conversion(b"%99999d", 1), Err(ConvError::TooWide));
    }

    #[test]
    fn pieces_split_text_and_conversions() {
        let p: Vec<_> = pieces("a=%u 100%% b=%llx").map(Result::unwrap).collect();
        assert_eq!(p.len(), 6);
        assert_eq!(p[0], Piece::Text("a="));
        assert!(matches!(p[1], Piece::Value(c) if c.conv == b'u'));
        assert_eq!(p[2], Piece::Text(" 100"));
        assert_eq!(p[3], Piece::Text("%"));
        assert_eq!(p[4], Piece::Text(" b="));
        assert!(matches!(p[5], Piece::Value(c) if c.conv == b'x' && c.length == Length::Long));
    }

    #[test]
    fn binary_arguments_are_four_byte_aligned() {
        let mut args = Vec::new();
        args.extend_from_slice(&7u32.to_le_bytes());
        args.extend_from_slice(&0x1_0000_0000u64.to_le_bytes());
        args.extend_from_slice(&(-2i64).to_le_bytes());
        let mut s = String::new();
        write_binary(&mut s, "a=%u b=%llx c=%lld", &args).unwrap();
        assert_eq!(s, "a=7 b=100000000 c=-2");
        let mut s = String::new();
        write_binary(&mut s, "a=%u b=%llu", &args[..8]).unwrap();
        assert_eq!(s, "a=7 b=[truncated]");
        let mut s = String::new();
        write_binary(&mut s, "x=%s", &args).unwrap();
        assert_eq!(s, "x=[bad format]");
    }
}

//! Event format texts (`name:`, `ID:`, `field:` lines, `print fmt:`) and the printf subset
//! their print formats use, rendered the way libtraceevent (1.7, under trace-cmd 3.1.6) does.
//!
//! Supported in a print format: literal text with C escapes, `%%`, and integer conversions
//! `%[flags][width][.precision][length](d|i|u|x|X|o|c)` with flags `-+ #0` and lengths
//! `hh h l ll z j t`, each taking an argument `REC->field`. Anything else (`%s`, `%p`, `*`
//! widths, expressions, helper functions) is refused with the construct named, when the file
//! is parsed.
//!
//! Values follow libtraceevent: a field is read as an unsigned number of its size (no sign
//! extension), then cast to the conversion's width (`int` without a length, `long` with `l`,
//! ...), then printed signed (`d`, `i`) or unsigned.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::{self, Write as _};

/// One field of an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The field's name.
    pub name: String,
    /// Its C declaration without the name (`u32`, `unsigned short`).
    pub c_type: String,
    /// Offset in the payload.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
    /// Whether the format says it is signed.
    pub signed: bool,
    /// Whether it is an array (`name[N]`): not printable by this reader.
    pub array: bool,
}

/// A parsed event format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventFormat {
    /// Event ID (`common_type`).
    pub id: u16,
    /// Event name.
    pub name: String,
    /// The system it belongs to (`hyp`, `ftrace`).
    pub system: String,
    /// Every field, common ones included, in format order.
    pub fields: Vec<Field>,
    /// The `print fmt:` text as stored.
    pub print_fmt_text: String,
    /// The parsed print format.
    pub print: PrintFmt,
}

/// A conversion's length modifier, as the width of the C type it casts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Length {
    /// `hh`: char.
    Char,
    /// `h`: short.
    Short,
    /// none: int.
    Int,
    /// `l`, `ll`, `z`, `j`, `t`: 64 bits.
    Long,
}

impl Length {
    fn bits(self) -> u32 {
        match self {
            Self::Char => 8,
            Self::Short => 16,
            Self::Int => 32,
            Self::Long => 64,
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

/// A piece of a print format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Literal text.
    Text(String),
    /// A conversion of the field with this index in [`EventFormat::fields`].
    Value(Conversion, usize),
}

/// A print format: pieces to concatenate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrintFmt(pub Vec<Piece>);

/// Why a payload could not be rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderError {
    /// The field that lies outside the payload.
    pub field: String,
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field {} lies outside the payload", self.field)
    }
}

impl core::error::Error for RenderError {}

/// Why an event format (or its print format) was refused: what is wrong, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatError(pub String);

impl FormatError {
    /// Whether the description mentions `what` (for tests and callers that match on it).
    pub fn contains(&self, what: &str) -> bool {
        self.0.contains(what)
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl core::error::Error for FormatError {}

impl From<String> for FormatError {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for FormatError {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

/// Parses one event format text.
///
/// # Errors
/// A description of the first line that is not a valid `name:`, `ID:`, `field:` or
/// `print fmt:` line, or of a print format this crate cannot render.
pub fn parse_format(text: &str, system: &str) -> Result<EventFormat, FormatError> {
    let mut name = None;
    let mut id = None;
    let mut fields = Vec::new();
    let mut print_fmt_text = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("name:") {
            name = Some(v.trim().to_string());
        } else if let Some(v) = t.strip_prefix("ID:") {
            let v = v.trim();
            id = Some(v.parse::<u16>().map_err(|_| format!("bad ID {v:?}"))?);
        } else if t.starts_with("field:") {
            fields.push(parse_field(t)?);
        } else if let Some(v) = t.strip_prefix("print fmt:") {
            print_fmt_text = Some(v.trim().to_string());
        }
    }
    let name = name.ok_or("no name: line")?;
    let id = id.ok_or_else(|| format!("{name}: no ID: line"))?;
    let print_fmt_text = print_fmt_text.ok_or_else(|| format!("{name}: no print fmt: line"))?;
    let print = parse_print_fmt(&print_fmt_text, &fields)
        .map_err(|e| format!("{name}: print fmt {print_fmt_text:?}: {e}"))?;
    Ok(EventFormat {
        id,
        name,
        system: system.to_string(),
        fields,
        print_fmt_text,
        print,
    })
}

/// `field:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;`
fn parse_field(line: &str) -> Result<Field, String> {
    let decl = line
        .strip_prefix("field:")
        .and_then(|r| r.split(';').next())
        .ok_or_else(|| format!("bad field line {line:?}"))?
        .trim();
    let (decl, array) = match decl.find('[') {
        Some(i) => (decl[..i].trim_end(), true),
        None => (decl, false),
    };
    let split = decl
        .rfind(|c: char| c.is_whitespace() || c == '*')
        .ok_or_else(|| format!("field without a type: {line:?}"))?;
    let name = decl[split + 1..].to_string();
    let c_type = decl[..=split].trim().to_string();
    let offset =
        crate::reader::attr(line, "offset").ok_or_else(|| format!("no offset: {line:?}"))?;
    let size = crate::reader::attr(line, "size").ok_or_else(|| format!("no size: {line:?}"))?;
    let signed = crate::reader::attr(line, "signed").unwrap_or(0) != 0;
    if name.is_empty() {
        return Err(format!("field without a name: {line:?}"));
    }
    Ok(Field {
        name,
        c_type,
        offset: offset as usize,
        size: size as usize,
        signed,
        array,
    })
}

/// Splits `"format", arg, arg` into the unescaped format and the argument texts.
fn split_print_fmt(text: &str) -> Result<(String, Vec<String>), String> {
    let rest = text
        .strip_prefix('"')
        .ok_or("does not start with a quoted string")?;
    let mut fmt = String::new();
    let mut chars = rest.char_indices();
    let end = loop {
        let (i, c) = chars.next().ok_or("unterminated string")?;
        match c {
            '"' => break i,
            '\\' => {
                let (_, e) = chars.next().ok_or("unterminated escape")?;
                fmt.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '0' => '\0',
                    other => other,
                });
            }
            c => fmt.push(c),
        }
    };
    let tail = rest[end + 1..].trim();
    let args = if tail.is_empty() {
        Vec::new()
    } else {
        let tail = tail
            .strip_prefix(',')
            .ok_or_else(|| format!("unexpected {tail:?} after the format string"))?;
        tail.split(',').map(|a| a.trim().to_string()).collect()
    };
    Ok((fmt, args))
}

/// Parses a print format against the event's fields.
///
/// # Errors
/// The construct refused (see the module documentation), or an argument that names no field.
pub fn parse_print_fmt(text: &str, fields: &[Field]) -> Result<PrintFmt, FormatError> {
    let (fmt, args) = split_print_fmt(text)?;
    let mut args = args.iter();
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let bytes = fmt.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = fmt[i..].chars().next().unwrap_or('\0');
        if c != '%' {
            lit.push(c);
            i += c.len_utf8();
            continue;
        }
        i += 1;
        if bytes.get(i) == Some(&b'%') {
            lit.push('%');
            i += 1;
            continue;
        }
        let mut conv = Conversion {
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
        while let Some(&f) = bytes.get(i) {
            match f {
                b'-' => conv.left = true,
                b'+' => conv.plus = true,
                b' ' => conv.space = true,
                b'#' => conv.alt = true,
                b'0' => conv.zero = true,
                _ => break,
            }
            i += 1;
        }
        let digits = |i: &mut usize| {
            let start = *i;
            while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            fmt[start..*i].parse::<usize>().ok()
        };
        if bytes.get(i) == Some(&b'*') {
            return Err("`*` widths are not supported".into());
        }
        conv.width = digits(&mut i).unwrap_or(0);
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            if bytes.get(i) == Some(&b'*') {
                return Err("`*` precisions are not supported".into());
            }
            conv.precision = Some(digits(&mut i).unwrap_or(0));
        }
        let rest = &bytes[i..];
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
        conv.length = length;
        i += n;
        let c = *bytes.get(i).ok_or("format ends inside a conversion")?;
        i += 1;
        if !matches!(c, b'd' | b'i' | b'u' | b'x' | b'X' | b'o' | b'c') {
            return Err(format!("conversion %{} is not supported", c as char).into());
        }
        conv.conv = c;
        let arg = args
            .next()
            .ok_or("more conversions than arguments")?
            .as_str();
        let field = arg
            .strip_prefix("REC->")
            .filter(|f| f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .ok_or_else(|| format!("argument {arg:?} is not REC->field"))?;
        let index = fields
            .iter()
            .position(|f| f.name == field)
            .ok_or_else(|| format!("no field {field}"))?;
        let f = &fields[index];
        if f.array || !matches!(f.size, 1 | 2 | 4 | 8) {
            return Err(format!(
                "field {field} ({} bytes{}) is not a scalar",
                f.size,
                if f.array { ", an array" } else { "" }
            )
            .into());
        }
        if !lit.is_empty() {
            pieces.push(Piece::Text(core::mem::take(&mut lit)));
        }
        pieces.push(Piece::Value(conv, index));
    }
    if let Some(extra) = args.next() {
        return Err(format!("more arguments than conversions ({extra:?})").into());
    }
    if !lit.is_empty() {
        pieces.push(Piece::Text(lit));
    }
    Ok(PrintFmt(pieces))
}

/// Reads field `f` from `payload` as an unsigned little-endian number.
fn read_raw(payload: &[u8], f: &Field) -> Option<u64> {
    let b = payload.get(f.offset..f.offset.checked_add(f.size)?)?;
    let mut a = [0u8; 8];
    a[..b.len()].copy_from_slice(b);
    Some(u64::from_le_bytes(a))
}

/// Formats one value as C's printf would, after the cast libtraceevent applies.
pub fn format_value(out: &mut String, c: &Conversion, raw: u64) {
    let bits = c.length.bits();
    let value = if bits == 64 {
        raw
    } else {
        raw & ((1u64 << bits) - 1)
    };
    if c.conv == b'c' {
        let ch = char::from(value as u8);
        pad(out, c, "", &ch.to_string(), false);
        return;
    }
    let (negative, magnitude) = if matches!(c.conv, b'd' | b'i') {
        let shift = 64 - bits;
        let signed = ((value << shift) as i64) >> shift;
        (signed < 0, signed.unsigned_abs())
    } else {
        (false, value)
    };
    let mut digits = match c.conv {
        b'x' => format!("{magnitude:x}"),
        b'X' => format!("{magnitude:X}"),
        b'o' => format!("{magnitude:o}"),
        _ => magnitude.to_string(),
    };
    if let Some(p) = c.precision {
        if p == 0 && magnitude == 0 {
            digits.clear();
        }
        while digits.len() < p {
            digits.insert(0, '0');
        }
    }
    let prefix = match c.conv {
        b'd' | b'i' if negative => "-",
        b'd' | b'i' if c.plus => "+",
        b'd' | b'i' if c.space => " ",
        b'x' if c.alt && magnitude != 0 => "0x",
        b'X' if c.alt && magnitude != 0 => "0X",
        b'o' if c.alt && !digits.starts_with('0') => "0",
        _ => "",
    };
    pad(out, c, prefix, &digits, c.precision.is_none());
}

/// Pads `prefix` + `digits` to the conversion's width.
fn pad(out: &mut String, c: &Conversion, prefix: &str, digits: &str, zero_ok: bool) {
    let len = prefix.len() + digits.len();
    let fill = c.width.saturating_sub(len);
    if c.left {
        out.push_str(prefix);
        out.push_str(digits);
        out.extend(core::iter::repeat_n(' ', fill));
    } else if c.zero && zero_ok {
        out.push_str(prefix);
        out.extend(core::iter::repeat_n('0', fill));
        out.push_str(digits);
    } else {
        out.extend(core::iter::repeat_n(' ', fill));
        out.push_str(prefix);
        out.push_str(digits);
    }
}

impl EventFormat {
    /// Appends the event's info text (its print format applied to `payload`) to `out`.
    ///
    /// # Errors
    /// [`RenderError`] when a field lies outside `payload` (a truncated record).
    pub fn render(&self, payload: &[u8], out: &mut String) -> Result<(), RenderError> {
        for piece in &self.print.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Value(c, index) => {
                    let f = &self.fields[*index];
                    let raw = read_raw(payload, f).ok_or_else(|| RenderError {
                        field: f.name.clone(),
                    })?;
                    format_value(out, c, raw);
                }
            }
        }
        Ok(())
    }

    /// The field with this name.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Reads a field as a number, sign-extended if the format says it is signed.
    pub fn read_field(&self, payload: &[u8], f: &Field) -> Option<i128> {
        let raw = read_raw(payload, f)?;
        Some(if f.signed && f.size < 8 {
            let shift = 64 - 8 * f.size as u32;
            i128::from(((raw << shift) as i64) >> shift)
        } else if f.signed {
            i128::from(raw as i64)
        } else {
            i128::from(raw)
        })
    }
}

/// Writes `"{name}: "` followed by the padding trace-cmd puts after event names, so that
/// names shorter than 20 characters line up (`print_event_name` in trace-read.c).
pub fn write_event_name(out: &mut String, name: &str) {
    // Writing to a String cannot fail.
    let _ = write!(out, " {name}: ");
    let len = name.len();
    if len < 20 {
        out.extend(core::iter::repeat_n(' ', 20 - len));
    }
}

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
//! ...), then printed signed (`d`, `i`) or unsigned. The conversions themselves are
//! `hyptrace_abi::printf`'s, which the hypervisor's own readers share.
//!
//! ftrace's `bprint` (`hyp_printk`'s event) is the exception libtraceevent makes too: its
//! print format is not used; its records print as the kallsyms symbol of their `ip`, then
//! the printk format their `fmt` names applied to their binary arguments
//! ([`EventFormat::render_with`]).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::{self, Write as _};

use hyptrace_abi::printf;

use crate::symbols::{Kallsyms, PrintkFormats};
/// A conversion and its length modifier: `hyptrace_abi`'s, shared with every other reader.
pub use hyptrace_abi::printf::{Conversion, Length};

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
    /// The parsed print format (empty for `ftrace:bprint`, which libtraceevent prints its
    /// own way: see [`EventFormat::bprint`]).
    pub print: PrintFmt,
    /// Why the print format could not be parsed, if it could not: the event's records then
    /// print `[FAILED TO PARSE]` and their raw fields, as libtraceevent prints an event whose
    /// print format it failed to parse ([`EventFormat::render_with`]).
    pub print_error: Option<FormatError>,
    /// For ftrace's `bprint` (system `ftrace`, name `bprint`), its fields libtraceevent reads.
    pub bprint: Option<Bprint>,
}

/// The fields of an `ftrace:bprint` event, which libtraceevent (`make_bprint_args`,
/// `get_bprint_format`) finds by name, as indices into [`EventFormat::fields`]. Its records
/// print as `SYMBOL: TEXT`: the kallsyms symbol of `ip` (`%ps`), then the printk format that
/// `fmt` names, applied to the binary arguments in `buf`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bprint {
    /// `ip`: the call site.
    pub ip: usize,
    /// `fmt`: the address of the format.
    pub fmt: usize,
    /// `buf`: the arguments, each at the next 4-byte boundary.
    pub buf: usize,
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
    /// The field that could not be rendered (`buf` for a `bprint` record's arguments).
    pub field: String,
    /// What is wrong with it.
    pub problem: RenderProblem,
}

/// What is wrong with a field that could not be rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RenderProblem {
    /// It lies (partly) outside the payload: a truncated record.
    OutsidePayload,
    /// A `bprint` record holds fewer argument bytes than its format reads. (libtraceevent
    /// prints garbage for it, and `[FAILED TO PARSE]` for every later `bprint` record.)
    TooFewArguments {
        /// The record's printk format.
        format: String,
        /// Bytes of arguments the format reads.
        needed: usize,
        /// Bytes of arguments the record holds.
        held: usize,
    },
    /// A `bprint` record's printk format has a conversion this crate does not render.
    Format {
        /// The format.
        format: String,
        /// The conversion's problem.
        error: printf::ConvError,
    },
}

impl RenderError {
    fn outside(field: &Field) -> Self {
        Self {
            field: field.name.clone(),
            problem: RenderProblem::OutsidePayload,
        }
    }
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = &self.field;
        match &self.problem {
            RenderProblem::OutsidePayload => write!(f, "field {field} lies outside the payload"),
            RenderProblem::TooFewArguments {
                format,
                needed,
                held,
            } => write!(
                f,
                "field {field} holds {held} bytes of arguments, but the format {format:?} reads \
                 {needed}"
            ),
            RenderProblem::Format { format, error } => {
                write!(f, "field {field}: the format {format:?}: {error}")
            }
        }
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
    // libtraceevent prints ftrace's `bprint` with its own code, whatever its print fmt says.
    let (print, bprint) = if system == "ftrace" && name == "bprint" {
        let layout = bprint_layout(&fields).map_err(|e| format!("{name}: {e}"))?;
        (PrintFmt::default(), Some(layout))
    } else {
        match parse_print_fmt(&print_fmt_text, &fields) {
            Ok(print) => (print, None),
            Err(e) => {
                let e = FormatError(format!("{name}: print fmt {print_fmt_text:?}: {e}"));
                return Ok(EventFormat {
                    id,
                    name,
                    system: system.to_string(),
                    fields,
                    print_fmt_text,
                    print: PrintFmt::default(),
                    print_error: Some(e),
                    bprint: None,
                });
            }
        }
    };
    Ok(EventFormat {
        id,
        name,
        system: system.to_string(),
        fields,
        print_fmt_text,
        print,
        print_error: None,
        bprint,
    })
}

/// The `ip`, `fmt` and `buf` fields of a `bprint` format.
fn bprint_layout(fields: &[Field]) -> Result<Bprint, String> {
    let find = |name: &str, scalar: bool| {
        let i = fields
            .iter()
            .position(|f| f.name == name)
            .ok_or_else(|| format!("no field {name}"))?;
        let f = &fields[i];
        if scalar && (f.array || !matches!(f.size, 1 | 2 | 4 | 8)) {
            return Err(format!("field {name} ({} bytes) is not a scalar", f.size));
        }
        Ok(i)
    };
    Ok(Bprint {
        ip: find("ip", true)?,
        fmt: find("fmt", true)?,
        buf: find("buf", false)?,
    })
}

/// Bytes of binary arguments `format` reads (each at the next 4-byte boundary, as
/// [`printf::write_binary`] reads them).
fn binary_args_len(format: &str) -> Result<usize, printf::ConvError> {
    let mut at = 0usize;
    for piece in printf::pieces(format) {
        if let printf::Piece::Value(c) = piece? {
            at = at.next_multiple_of(4) + c.length.arg_size();
        }
    }
    Ok(at)
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
    for piece in printf::pieces(&fmt) {
        let conv = match piece.map_err(|e| e.to_string())? {
            printf::Piece::Text(t) => {
                lit.push_str(t);
                continue;
            }
            printf::Piece::Value(c) => c,
        };
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
    if f.size > 8 {
        return None;
    }
    let b = payload.get(f.offset..f.offset.checked_add(f.size)?)?;
    let mut a = [0u8; 8];
    a[..b.len()].copy_from_slice(b);
    Some(u64::from_le_bytes(a))
}

/// One field's value as libtraceevent's `tep_print_field_content` prints it.
fn raw_field(out: &mut String, f: &Field, payload: &[u8]) {
    let dynamic = f.c_type.starts_with("__data_loc") || f.c_type.starts_with("__rel_loc");
    if !f.array && !dynamic && !matches!(f.size, 1 | 2 | 4 | 8) {
        // libtraceevent reads a number of another size as 0.
        out.push('0');
        return;
    }
    if f.array || dynamic {
        let span = if dynamic {
            read_raw(payload, f).map(|v| {
                let (mut at, len) = ((v & 0xffff) as usize, ((v >> 16) & 0xffff) as usize);
                if f.c_type.starts_with("__rel_loc") {
                    at += f.offset + f.size;
                }
                (at, len)
            })
        } else {
            Some((f.offset, f.size))
        };
        let Some(bytes) = span.and_then(|(at, len)| payload.get(at..at.checked_add(len)?)) else {
            return;
        };
        let text = bytes.split(|&b| b == 0).next().unwrap_or(&[]);
        let printable = text
            .iter()
            .all(|&b| b.is_ascii_graphic() || b == b' ' || (b'\t'..=b'\r').contains(&b));
        // libtraceevent's `field_is_string`: a char, u8 or s8 array.
        let string = ["char", "u8", "s8"].iter().any(|t| f.c_type.contains(t));
        if string && printable {
            out.push_str(&String::from_utf8_lossy(text));
        } else {
            out.push_str("ARRAY[");
            for (i, b) in bytes.iter().enumerate() {
                let sep = if i == 0 { "" } else { ", " };
                let _ = write!(out, "{sep}{b:02x}");
            }
            out.push(']');
        }
        return;
    }
    let Some(raw) = read_raw(payload, f) else {
        return;
    };
    let ty = f.c_type.trim();
    // libtraceevent's `field_is_long`: any type that says long.
    let long = ty.contains("long");
    let _ = if ty.ends_with('*') {
        write!(out, "0x{raw:x}")
    } else if f.signed {
        match f.size {
            4 if long => write!(out, "0x{:x}", raw as u32),
            4 => write!(out, "{}", raw as u32 as i32),
            2 => write!(out, "{:2}", raw as u16 as i16),
            1 => write!(out, "{}", raw as u8 as i8),
            _ => write!(out, "{}", raw as i64),
        }
    } else if long {
        write!(out, "0x{raw:x}")
    } else {
        write!(out, "{raw}")
    };
}

/// Formats one value as C's printf would, after the cast libtraceevent applies
/// ([`printf::write_value`], appending to a `String`).
pub fn format_value(out: &mut String, c: &Conversion, raw: u64) {
    // Writing to a String cannot fail.
    let _ = printf::write_value(out, c, raw);
}

impl EventFormat {
    /// Appends the event's info text (its print format applied to `payload`) to `out`.
    ///
    /// # Errors
    /// [`RenderError`] when a field lies outside `payload` (a truncated record).
    ///
    /// A `bprint` event renders here without symbols or formats (`0x…: (NO FORMAT FOUND
    /// at …)`): [`EventFormat::render_with`] takes the file's.
    pub fn render(&self, payload: &[u8], out: &mut String) -> Result<(), RenderError> {
        self.render_with(
            payload,
            &Kallsyms::default(),
            &PrintkFormats::default(),
            out,
        )
    }

    /// [`EventFormat::render`], with the kallsyms and printk formats of the file, which a
    /// `bprint` record is rendered with as trace-cmd 3.1.6 renders it: the symbol of `ip`
    /// (`0x` and the address without one), `: `, then the format `fmt` names applied to the
    /// arguments (`(NO FORMAT FOUND at ADDR)` and a newline without one).
    ///
    /// # Errors
    /// [`RenderError`] when a field lies outside `payload` (a truncated record), or, for
    /// `bprint`, when the arguments are fewer than the format reads or the format has a
    /// conversion [`printf`] does not render. Nothing is written then.
    pub fn render_with(
        &self,
        payload: &[u8],
        kallsyms: &Kallsyms,
        printk: &PrintkFormats,
        out: &mut String,
    ) -> Result<(), RenderError> {
        if let Some(b) = &self.bprint {
            return self.render_bprint(b, payload, kallsyms, printk, out);
        }
        if self.print_error.is_some() {
            self.render_raw(payload, out);
            return Ok(());
        }
        let start = out.len();
        for piece in &self.print.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Value(c, index) => {
                    let f = &self.fields[*index];
                    let Some(raw) = read_raw(payload, f) else {
                        out.truncate(start);
                        return Err(RenderError::outside(f));
                    };
                    format_value(out, c, raw);
                }
            }
        }
        Ok(())
    }

    /// `[FAILED TO PARSE]` and every field after the common ones as ` name=value`, as
    /// libtraceevent (`tep_print_fields`) prints an event whose print format it could not
    /// parse: char, u8 and s8 arrays holding text as text, other arrays as `ARRAY[xx, ...]`,
    /// pointers and longs (any type that says long) in hex, numbers of 1, 2, 4 or 8 bytes in
    /// decimal (signed as their size), others as 0. A field outside the payload prints as
    /// nothing. One difference: libtraceevent prints a string field as an array in every
    /// record after the first that was not text; this decides per record.
    fn render_raw(&self, payload: &[u8], out: &mut String) {
        out.push_str("[FAILED TO PARSE]");
        for f in self
            .fields
            .iter()
            .filter(|f| !f.name.starts_with("common_"))
        {
            let _ = write!(out, " {}=", f.name);
            raw_field(out, f, payload);
        }
    }

    fn render_bprint(
        &self,
        b: &Bprint,
        payload: &[u8],
        kallsyms: &Kallsyms,
        printk: &PrintkFormats,
        out: &mut String,
    ) -> Result<(), RenderError> {
        let read = |i: usize| {
            let f = &self.fields[i];
            read_raw(payload, f).ok_or_else(|| RenderError::outside(f))
        };
        let (ip, fmt) = (read(b.ip)?, read(b.fmt)?);
        // libtraceevent aligns each argument in memory, where the payload is 4-byte
        // aligned: relative to the payload, from `buf` on.
        let args = self.fields[b.buf]
            .offset
            .checked_next_multiple_of(4)
            .and_then(|at| payload.get(at..))
            .unwrap_or(&[]);
        let format = printk.format(fmt);
        if let Some(format) = format {
            let problem = match binary_args_len(format) {
                Ok(needed) if needed <= args.len() => None,
                Ok(needed) => Some(RenderProblem::TooFewArguments {
                    format: format.to_string(),
                    needed,
                    held: args.len(),
                }),
                Err(error) => Some(RenderProblem::Format {
                    format: format.to_string(),
                    error,
                }),
            };
            if let Some(problem) = problem {
                return Err(RenderError {
                    field: self.fields[b.buf].name.clone(),
                    problem,
                });
            }
        }
        // Writing to a String cannot fail.
        let _ = match kallsyms.function(ip) {
            Some(name) => write!(out, "{name}: "),
            None => write!(out, "{ip:#x}: "),
        };
        let _ = match format {
            Some(format) => printf::write_binary(out, format, args),
            None => writeln!(out, "(NO FORMAT FOUND at {fmt:x})"),
        };
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
/// names shorter than 20 characters line up (`print_event_name` in trace-read.c): the ABI
/// crate's [`write_event_name`](hyptrace_abi::event_format::write_event_name), which the
/// hypervisor's flight recorder prints with too.
pub fn write_event_name(out: &mut String, name: &str) {
    // Writing to a String cannot fail.
    let _ = hyptrace_abi::event_format::write_event_name(out, name);
}

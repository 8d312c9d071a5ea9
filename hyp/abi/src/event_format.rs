//! How an event is described once and turned into bytes and into ftrace format text.
//!
//! An event's payload is packed little-endian, without padding: a common header that starts
//! with the u16 `common_type` (the event ID) at offset 0, then the fields in declaration order.
//! The header is one of two ([`Header`]): pKVM's, which is `common_type` alone (the
//! hypervisor's events), or ftrace's full one with flags, preempt count and pid (the host's). [`define_events!`] turns one
//! declaration per event into a payload struct implementing [`Event`] (what the hypervisor
//! writes), and an [`EventDesc`] (what readers decode with and what trace.dat's format files are
//! generated from), so the writer, the trace.dat writer and the decoder cannot disagree.
//!
//! [`define_events!`]: crate::define_events

use core::fmt::{self, Write};

/// A scalar type an event field may have.
pub trait FieldType: Copy {
    /// The C type name used in format files (`u32`, `s64`, ...).
    const C_TYPE: &'static str;
    /// Size in bytes.
    const SIZE: usize;
    /// Whether it is signed.
    const SIGNED: bool;
    /// Writes the value little-endian into `out[..SIZE]`.
    fn write_le(self, out: &mut [u8]);
}

macro_rules! field_types {
    ($($ty:ty => $c:literal, $signed:literal;)*) => {$(
        impl FieldType for $ty {
            const C_TYPE: &'static str = $c;
            const SIZE: usize = core::mem::size_of::<$ty>();
            const SIGNED: bool = $signed;
            #[inline(always)]
            fn write_le(self, out: &mut [u8]) {
                out[..Self::SIZE].copy_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}

field_types! {
    u8 => "u8", false;
    u16 => "u16", false;
    u32 => "u32", false;
    u64 => "u64", false;
    i32 => "s32", true;
    i64 => "s64", true;
}

/// Size of pKVM's common header: the u16 `common_type` alone.
pub const COMMON_SIZE: usize = 2;

/// Size of ftrace's common header: `common_type`, `common_flags`, `common_preempt_count`,
/// `common_pid`.
pub const FTRACE_COMMON_SIZE: usize = 8;

/// Offset of `common_pid` in ftrace's common header.
pub const FTRACE_PID_OFFSET: usize = 4;

/// The common header an event's payload starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// pKVM's: `unsigned short common_type` at offset 0 and nothing else; fields start at
    /// offset 2. What the hypervisor writes, as Android's hypervisor does.
    Pkvm,
    /// The kernel's (`struct trace_entry`): `unsigned short common_type` at 0, `unsigned char
    /// common_flags` at 2, `unsigned char common_preempt_count` at 3, `int common_pid` at 4;
    /// fields start at offset 8. What the host writes for its own events.
    Ftrace,
}

impl Header {
    /// Bytes of the header.
    pub const fn size(self) -> usize {
        match self {
            Self::Pkvm => COMMON_SIZE,
            Self::Ftrace => FTRACE_COMMON_SIZE,
        }
    }

    /// The common fields' lines of a format file (without the blank line after them).
    fn write_fields(self, out: &mut (impl Write + ?Sized)) -> fmt::Result {
        out.write_str("\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n")?;
        if self == Self::Ftrace {
            out.write_str(
                "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\
                 \tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\
                 \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n",
            )?;
        }
        Ok(())
    }
}

/// Stores `pid` in the `common_pid` of an ftrace-header payload encoded by [`Event::encode`]
/// (which leaves it 0). Does nothing to a payload too short to hold it.
#[inline(always)]
pub fn set_common_pid(payload: &mut [u8], pid: i32) {
    if let Some(at) = payload.get_mut(FTRACE_PID_OFFSET..FTRACE_COMMON_SIZE) {
        at.copy_from_slice(&pid.to_le_bytes());
    }
}

/// One field of an event, as described in its format file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldDesc {
    /// Field name.
    pub name: &'static str,
    /// C type name (`u8`, `u32`, `s64`, ...).
    pub c_type: &'static str,
    /// Size in bytes.
    pub size: usize,
    /// Whether the value is signed.
    pub signed: bool,
}

/// Everything a reader needs to know about one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventDesc {
    /// Event ID (`common_type`).
    pub id: u16,
    /// Event name.
    pub name: &'static str,
    /// The common header the payload starts with.
    pub header: Header,
    /// Fields after the common header, in payload order.
    pub fields: &'static [FieldDesc],
    /// The `print fmt:` line's text: a quoted format and its arguments.
    pub print_fmt: &'static str,
}

/// The event of `table` with ID `id`.
pub fn find_id(table: &'static [EventDesc], id: u16) -> Option<&'static EventDesc> {
    table.iter().find(|e| e.id == id)
}

/// The event of `table` named `name`.
pub fn find_name(table: &'static [EventDesc], name: &str) -> Option<&'static EventDesc> {
    table.iter().find(|e| e.name == name)
}

/// A field value decoded from a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValue {
    /// An unsigned field.
    Unsigned(u64),
    /// A signed field.
    Signed(i64),
}

impl EventDesc {
    /// Bytes of a payload, the common header included.
    pub const fn payload_len(&self) -> usize {
        let mut len = self.header.size();
        let mut i = 0;
        while i < self.fields.len() {
            len += self.fields[i].size;
            i += 1;
        }
        len
    }

    /// Offset of field `index` in the payload.
    pub fn offset_of(&self, index: usize) -> usize {
        self.header.size() + self.fields[..index].iter().map(|f| f.size).sum::<usize>()
    }

    /// Decodes field `index` from `payload`; `None` if the payload is too short.
    pub fn field(&self, payload: &[u8], index: usize) -> Option<FieldValue> {
        let desc = self.fields.get(index)?;
        let start = self.offset_of(index);
        let bytes = payload.get(start..start + desc.size)?;
        let mut raw = [0u8; 8];
        raw[..desc.size].copy_from_slice(bytes);
        let value = u64::from_le_bytes(raw);
        Some(if desc.signed {
            let shift = 64 - 8 * desc.size as u32;
            FieldValue::Signed(((value << shift) as i64) >> shift)
        } else {
            FieldValue::Unsigned(value)
        })
    }

    /// Writes the ftrace format file of this event (the text trace.dat stores and
    /// `trace-cmd` parses): `name`, `ID`, the common fields, the event's fields, `print fmt`.
    ///
    /// An event without fields gets the two consecutive blank lines libtraceevent needs to see
    /// an empty field list.
    ///
    /// # Errors
    /// Only those of `out` (writing to a `String` cannot fail).
    pub fn write_format(&self, out: &mut (impl Write + ?Sized)) -> fmt::Result {
        write!(out, "name: {}\nID: {}\nformat:\n", self.name, self.id)?;
        self.header.write_fields(out)?;
        out.write_str("\n")?;
        for (i, f) in self.fields.iter().enumerate() {
            writeln!(
                out,
                "\tfield:{} {};\toffset:{};\tsize:{};\tsigned:{};",
                f.c_type,
                f.name,
                self.offset_of(i),
                f.size,
                f.signed as u8
            )?;
        }
        writeln!(out, "\nprint fmt: {}", self.print_fmt)
    }
}

impl EventDesc {
    /// Writes the event's info text — its `print fmt` applied to `payload` — as
    /// libtraceevent prints it, without allocating. A field outside the payload prints
    /// `[truncated]`; a print format this renderer does not take (only `"..."` followed by
    /// `REC->field` arguments is) prints `[bad format]`.
    ///
    /// # Errors
    /// Only those of `out`.
    pub fn write_info(&self, payload: &[u8], out: &mut (impl Write + ?Sized)) -> fmt::Result {
        use crate::printf::{pieces, write_value, Piece};
        let text = self.print_fmt.trim();
        let Some((fmt, mut args)) = text
            .strip_prefix('"')
            .and_then(|t| t.split_once('"'))
            .map(|(f, rest)| (f, rest.split(',').skip(1)))
        else {
            return out.write_str("[bad format]");
        };
        for piece in pieces(fmt) {
            match piece {
                Ok(Piece::Text(t)) => out.write_str(t)?,
                Ok(Piece::Value(c)) => {
                    let index = args
                        .next()
                        .and_then(|a| a.trim().strip_prefix("REC->"))
                        .and_then(|name| self.fields.iter().position(|f| f.name == name));
                    let Some(index) = index else {
                        return out.write_str("[bad format]");
                    };
                    let raw = match self.field(payload, index) {
                        Some(FieldValue::Unsigned(v)) => v,
                        Some(FieldValue::Signed(v)) => v as u64,
                        None => return out.write_str("[truncated]"),
                    };
                    write_value(out, &c, raw)?;
                }
                Err(_) => return out.write_str("[bad format]"),
            }
        }
        Ok(())
    }
}

/// Writes `" {name}: "` followed by the padding trace-cmd puts after event names, so that
/// names shorter than 20 characters line up (`print_event_name` in trace-cmd's
/// trace-read.c).
///
/// # Errors
/// Only those of `out`.
pub fn write_event_name(out: &mut (impl Write + ?Sized), name: &str) -> fmt::Result {
    write!(out, " {name}: ")?;
    for _ in name.len()..20 {
        out.write_char(' ')?;
    }
    Ok(())
}

/// Writes a timestamp as trace-cmd prints it by default: ` {seconds:5}.{microseconds:06}:`,
/// the microseconds rounded to nearest.
///
/// # Errors
/// Only those of `out`.
pub fn write_timestamp_us(out: &mut (impl Write + ?Sized), ts_ns: u64) -> fmt::Result {
    let us = ts_ns / 1000 + u64::from(ts_ns % 1000 >= 500);
    write!(out, " {:5}.{:06}:", us / 1_000_000, us % 1_000_000)
}

/// A payload the hypervisor can write: generated by [`define_events!`](crate::define_events).
pub trait Event {
    /// This event's description.
    const DESC: EventDesc;
    /// Bytes of the payload, the common header included.
    const PAYLOAD_LEN: usize = Self::DESC.payload_len();
    /// Writes the whole payload (ID first) into `out[..PAYLOAD_LEN]`.
    fn encode(&self, out: &mut [u8]);
}

/// Declares hyptrace's events, each once. For every `id => name as Type { field: type, ... }
/// print "..."` it generates `pub struct Type` with those public fields, `impl Event for Type`,
/// and adds an [`EventDesc`] to `pub const ALL: &[EventDesc]` in declaration order.
///
/// The payloads start with pKVM's common header ([`Header::Pkvm`]) unless the list begins
/// with `header: Ftrace;` ([`Header::Ftrace`]: `encode` then leaves flags, preempt count and
/// pid 0; see [`set_common_pid`]).
#[macro_export]
macro_rules! define_events {
    (header: $header:ident; $($rest:tt)*) => {
        $crate::__define_events_with_header! { $header; $($rest)* }
    };
    ($($rest:tt)*) => {
        $crate::__define_events_with_header! { Pkvm; $($rest)* }
    };
}

/// [`define_events!`] with the header named: not for direct use.
#[doc(hidden)]
#[macro_export]
macro_rules! __define_events_with_header {
    ($header:ident; $(
        $(#[$meta:meta])*
        $id:literal => $name:ident as $ty:ident { $($field:ident : $fty:ty),* $(,)? }
        print $fmt:literal;
    )*) => {
        $(
            $(#[$meta])*
            #[derive(Clone, Copy, Debug, PartialEq, Eq)]
            pub struct $ty {
                $(
                    #[allow(missing_docs)]
                    pub $field: $fty,
                )*
            }

            impl $crate::event_format::Event for $ty {
                const DESC: $crate::event_format::EventDesc =
                    $crate::event_format::EventDesc {
                        id: $id,
                        name: stringify!($name),
                        header: $crate::event_format::Header::$header,
                        fields: &[$(
                            $crate::event_format::FieldDesc {
                                name: stringify!($field),
                                c_type: <$fty as $crate::event_format::FieldType>::C_TYPE,
                                size: <$fty as $crate::event_format::FieldType>::SIZE,
                                signed: <$fty as $crate::event_format::FieldType>::SIGNED,
                            },
                        )*],
                        print_fmt: $fmt,
                    };

                #[inline(always)]
                #[allow(unused_mut, unused_variables, unused_assignments)]
                fn encode(&self, out: &mut [u8]) {
                    const HEADER: usize = $crate::event_format::Header::$header.size();
                    out[..2].copy_from_slice(&($id as u16).to_le_bytes());
                    out[2..HEADER].fill(0);
                    let mut offset = HEADER;
                    $(
                        $crate::event_format::FieldType::write_le(
                            self.$field,
                            &mut out[offset..],
                        );
                        offset += <$fty as $crate::event_format::FieldType>::SIZE;
                    )*
                }
            }
        )*

        /// Every event, in declaration order.
        pub const ALL: &[$crate::event_format::EventDesc] = &[
            $(<$ty as $crate::event_format::Event>::DESC,)*
        ];
    };
}

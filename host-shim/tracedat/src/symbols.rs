//! The kallsyms and printk formats sections of a trace.dat, read as libtraceevent (1.7,
//! under trace-cmd 3.1.6) reads them, and looked up as it looks them up.
//!
//! - [`Kallsyms`]: `/proc/kallsyms` lines, `ADDR TYPE NAME[\t[MODULE]]`
//!   (`tep_parse_kallsyms`). An address names the symbol at or below it, as long as another
//!   symbol follows; past the last symbol only its exact address does (`find_func`).
//! - [`PrintkFormats`]: the kernel's `printk_formats` lines, `0xADDR : "FORMAT"`
//!   (`tep_parse_printk_formats`), looked up by exact address.
//!
//! `bprint` records name their call site (`ip`, printed with `%ps`) through the first and
//! their format (`fmt`) through the second.

use alloc::string::String;
use alloc::vec::Vec;

/// The symbols of a kallsyms section, sorted by address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kallsyms {
    symbols: Vec<(u64, String)>,
}

/// `sscanf`'s `%16llx`: blanks, an optional `0x`, then hex digits, at most 16 characters
/// after the blanks. The value and the rest.
fn scan_hex16(s: &str) -> Option<(u64, &str)> {
    let s = s.trim_start();
    let b = s.as_bytes();
    let mut at = 0;
    if b.len() > 2 && b[0] == b'0' && matches!(b[1], b'x' | b'X') && b[2].is_ascii_hexdigit() {
        at = 2;
    }
    let start = at;
    let mut v: u64 = 0;
    while at < b.len().min(16) && b[at].is_ascii_hexdigit() {
        v = (v << 4) | u64::from(char::from(b[at]).to_digit(16)?);
        at += 1;
    }
    (at > start).then(|| (v, &s[at..]))
}

impl Kallsyms {
    /// Reads a kallsyms text as `tep_parse_kallsyms` does: one symbol per line; symbols of
    /// type `A`/`a` (absolute) and names starting with `$` are left out; reading stops at
    /// the first line it cannot read (the symbols before it are kept, as libtraceevent keeps
    /// them). Only the name is kept, not the module.
    pub fn parse(text: &str) -> Self {
        let mut symbols = Vec::new();
        for line in text.split('\n').filter(|l| !l.is_empty()) {
            // "%16llx %c %s"
            let Some((addr, rest)) = scan_hex16(line) else {
                break;
            };
            let rest = rest.trim_start();
            let Some(kind) = rest.chars().next() else {
                break;
            };
            let rest = rest[kind.len_utf8()..].trim_start();
            let Some(name) = rest.split_whitespace().next() else {
                break;
            };
            if !name.starts_with('$') && kind != 'A' && kind != 'a' {
                symbols.push((addr, String::from(name)));
            }
        }
        symbols.sort_by_key(|s| s.0);
        Self { symbols }
    }

    /// The symbol `addr` lies in, as libtraceevent's `find_func` finds it: the one at `addr`,
    /// or the last one below `addr` when another symbol follows it. (`%ps` prints its name;
    /// without one, `0x` and the address in hex.)
    pub fn function(&self, addr: u64) -> Option<&str> {
        let above = self.symbols.partition_point(|s| s.0 <= addr);
        let (at, name) = self.symbols.get(above.checked_sub(1)?)?;
        (*at == addr || above < self.symbols.len()).then_some(name.as_str())
    }

    /// The symbols, by address.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &str)> {
        self.symbols.iter().map(|(a, n)| (*a, n.as_str()))
    }

    /// How many symbols there are.
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }
}

/// The formats of a printk formats section, sorted by address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrintkFormats {
    formats: Vec<(u64, String)>,
}

/// `strtoull(s, NULL, 16)`: blanks, an optional `0x`, hex digits; 0 without any, the
/// maximum on overflow.
fn strtoull16(s: &str) -> u64 {
    let s = s.trim_start();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .filter(|r| r.starts_with(|c: char| c.is_ascii_hexdigit()))
        .unwrap_or(s);
    let mut v: u64 = 0;
    for d in s.chars().map_while(|c| c.to_digit(16)) {
        v = match v.checked_mul(16) {
            Some(m) => m + u64::from(d),
            None => return u64::MAX,
        };
    }
    v
}

/// The text libtraceevent prints for a format: `\n`, `\t`, `\r` and `\\` are the
/// characters, a backslash before any other character drops out.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

impl PrintkFormats {
    /// Reads a printk formats text as `tep_parse_printk_formats` does: per line, the
    /// address in hex before the first `:`, then (after one more character, the blank) the
    /// format with its quotes and a final `\n` taken off. Formats are kept as libtraceevent
    /// prints them, escapes resolved. Lines without a `:` are left out; reading stops at a
    /// line with nothing before its `:`.
    pub fn parse(text: &str) -> Self {
        let mut formats = Vec::new();
        for line in text.split('\n').filter(|l| !l.is_empty()) {
            // strtok_r(line, ":"): leading `:`s are skipped.
            let line = line.trim_start_matches(':');
            if line.is_empty() {
                break;
            }
            let Some((addr, rest)) = line.split_once(':') else {
                continue;
            };
            let mut rest = rest.chars();
            if rest.next().is_none() {
                continue;
            }
            let quoted = rest.as_str();
            let f = quoted.strip_prefix('"').unwrap_or(quoted);
            let f = match f.strip_suffix('"') {
                Some(f) => f.strip_suffix("\\n").unwrap_or(f),
                None => f,
            };
            formats.push((strtoull16(addr), unescape(f)));
        }
        formats.sort_by_key(|f| f.0);
        Self { formats }
    }

    /// The format registered at `addr` exactly.
    pub fn format(&self, addr: u64) -> Option<&str> {
        let i = self.formats.binary_search_by_key(&addr, |f| f.0).ok()?;
        Some(self.formats[i].1.as_str())
    }

    /// The formats, by address.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &str)> {
        self.formats.iter().map(|(a, f)| (*a, f.as_str()))
    }

    /// How many formats there are.
    pub fn len(&self) -> usize {
        self.formats.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.formats.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kallsyms_lookup_is_libtraceevents_range_search() {
        let k = Kallsyms::parse(
            "0000000040001200 t hyp::trace\n\
             0000000040001000 t hyp::main\n\
             ffff800010000000 T _text\n\
             0000000000000010 A absolute\n\
             0000000000000020 t $x.1\n\
             ffffffffc0a00000 t mod_fn\t[some_mod]\n",
        );
        assert_eq!(k.len(), 4, "{k:?}");
        assert_eq!(k.function(0x4000_1000), Some("hyp::main"));
        // Between two symbols: the lower one.
        assert_eq!(k.function(0x4000_1150), Some("hyp::main"));
        assert_eq!(k.function(0x4000_1200), Some("hyp::trace"));
        // Below the first, or past the last one's address: none.
        assert_eq!(k.function(0xfff), None);
        assert_eq!(k.function(0x10), None);
        assert_eq!(k.function(0xffff_ffff_c0a0_0000), Some("mod_fn"));
        assert_eq!(k.function(0xffff_ffff_c0a0_0001), None);
        assert_eq!(Kallsyms::default().function(0), None);
    }

    #[test]
    fn kallsyms_reading_stops_at_a_bad_line() {
        let k = Kallsyms::parse("0000000000001000 t a\nzzz t b\n0000000000003000 t c\n");
        assert_eq!(k.iter().collect::<Vec<_>>(), [(0x1000, "a")]);
        let k = Kallsyms::parse("0000000000001000 t a\n0000000000002000 t \n");
        assert_eq!(k.len(), 1, "a line without a name ends the reading");
        // %16llx: at most 16 digits, a 0x prefix allowed.
        let k = Kallsyms::parse("0x10 t b\n");
        assert_eq!(k.function(0x10), Some("b"));
    }

    #[test]
    fn printk_formats_strip_quotes_and_a_final_newline() {
        let p = PrintkFormats::parse(
            "0x40001100 : \"cpu=%llu\"\n\
             0xffffffff82000000 : \"kernel says %d\\n\"\n\
             0x10 : \"a\\tb\\\\c\\qd\"\n\
             no colon here\n\
             0x20 : unquoted\n",
        );
        assert_eq!(p.len(), 4);
        assert_eq!(p.format(0x4000_1100), Some("cpu=%llu"));
        assert_eq!(p.format(0xffff_ffff_8200_0000), Some("kernel says %d"));
        assert_eq!(p.format(0x10), Some("a\tb\\cqd"));
        assert_eq!(p.format(0x20), Some("unquoted"));
        assert_eq!(p.format(0x4000_1101), None, "exact addresses only");
        assert_eq!(PrintkFormats::parse("::\n0x1 : \"x\"\n").len(), 0);
    }
}

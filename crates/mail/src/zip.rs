//! Just enough of ZIP (PKWARE APPNOTE) to tell what an attached archive holds: entry names,
//! the encryption flag, and the bytes of a member, inflated under a hard limit.
//!
//! The central directory is the authority; when there is none (a message cut at the size cap
//! truncates its last attachment) the local headers are walked from the start instead. Every
//! offset read from the file is bounds-checked, entry counts are bounded by the bytes present,
//! and nothing is allocated in proportion to a size the file merely claims. ZIP64 sizes are
//! not followed: such members are larger than anything inflated here.

/// One archive entry, as its directory record describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) flags: u16,
    pub(crate) method: u16,
    pub(crate) compressed_size: u64,
    pub(crate) uncompressed_size: u64,
    /// The entry's local header, or where its data starts when it came from the local walk.
    location: Location,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Location {
    LocalHeader(usize),
    Data(usize),
}

impl Entry<'_> {
    /// General-purpose flag bit 0: the entry is encrypted.
    pub(crate) fn encrypted(&self) -> bool {
        self.flags & 1 == 1
    }

    /// Whether the name ends with `suffix`, ignoring ASCII case (OOXML part names are
    /// case-insensitive).
    pub(crate) fn name_ends_with(&self, suffix: &str) -> bool {
        let suffix = suffix.as_bytes();
        self.name.len() >= suffix.len()
            && self.name[self.name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
    }
}

const LOCAL_HEADER: &[u8; 4] = b"PK\x03\x04";
const CENTRAL_HEADER: &[u8; 4] = b"PK\x01\x02";
const END_OF_DIRECTORY: &[u8; 4] = b"PK\x05\x06";
const METHOD_STORED: u16 = 0;
/// Entries read per archive; the rest are not looked at.
const MAX_ENTRIES: usize = 65_536;
const METHOD_DEFLATE: u16 = 8;

/// Whether the bytes start like a ZIP (§7 tests `PK`).
pub(crate) fn is_zip(data: &[u8]) -> bool {
    data.starts_with(b"PK")
}

/// The entries of an archive: from the central directory, else from the local headers.
pub(crate) fn entries(data: &[u8]) -> Vec<Entry<'_>> {
    central_directory(data).unwrap_or_else(|| local_headers(data))
}

fn central_directory(data: &[u8]) -> Option<Vec<Entry<'_>>> {
    let end = find_end_of_directory(data)?;
    let mut at = read_u32(data, end + 16)? as usize;
    let mut entries = Vec::new();
    while entries.len() < MAX_ENTRIES && data.get(at..at + 4) == Some(CENTRAL_HEADER) {
        let name_len = usize::from(read_u16(data, at + 28)?);
        let extra_len = usize::from(read_u16(data, at + 30)?);
        let comment_len = usize::from(read_u16(data, at + 32)?);
        entries.push(Entry {
            name: data.get(at + 46..at + 46 + name_len)?,
            flags: read_u16(data, at + 8)?,
            method: read_u16(data, at + 10)?,
            compressed_size: u64::from(read_u32(data, at + 20)?),
            uncompressed_size: u64::from(read_u32(data, at + 24)?),
            location: Location::LocalHeader(read_u32(data, at + 42)? as usize),
        });
        at += 46 + name_len + extra_len + comment_len;
    }
    (!entries.is_empty()).then_some(entries)
}

/// The end-of-central-directory record: the last signature within the comment's reach.
fn find_end_of_directory(data: &[u8]) -> Option<usize> {
    let last = data.len().checked_sub(22)?;
    let first = last.saturating_sub(u16::MAX as usize);
    (first..=last)
        .rev()
        .find(|&at| data[at..].starts_with(END_OF_DIRECTORY))
}

fn local_headers(data: &[u8]) -> Vec<Entry<'_>> {
    let mut entries = Vec::new();
    let mut at = 0;
    while entries.len() < MAX_ENTRIES && data.get(at..at + 4) == Some(LOCAL_HEADER) {
        let Some(entry) = local_entry(data, at) else {
            break;
        };
        let Location::Data(start) = entry.location else {
            break;
        };
        let next = start.checked_add(entry.compressed_size as usize);
        // Sizes in a trailing data descriptor are unknown here: the walk cannot go on.
        let unknown_size = entry.flags & 0x08 != 0 && entry.compressed_size == 0;
        entries.push(entry);
        match next {
            Some(next) if !unknown_size => at = next,
            _ => break,
        }
    }
    entries
}

fn local_entry(data: &[u8], at: usize) -> Option<Entry<'_>> {
    let name_len = usize::from(read_u16(data, at + 26)?);
    let extra_len = usize::from(read_u16(data, at + 28)?);
    Some(Entry {
        name: data.get(at + 30..at + 30 + name_len)?,
        flags: read_u16(data, at + 6)?,
        method: read_u16(data, at + 8)?,
        compressed_size: u64::from(read_u32(data, at + 18)?),
        uncompressed_size: u64::from(read_u32(data, at + 22)?),
        location: Location::Data(at + 30 + name_len + extra_len),
    })
}

/// The member's stored bytes, as far as they are present.
fn compressed_data<'a>(data: &'a [u8], entry: &Entry<'_>) -> Option<&'a [u8]> {
    let start = match entry.location {
        Location::Data(start) => start,
        Location::LocalHeader(at) => {
            if data.get(at..at + 4) != Some(LOCAL_HEADER) {
                return None;
            }
            let name_len = usize::from(read_u16(data, at + 26)?);
            let extra_len = usize::from(read_u16(data, at + 28)?);
            at + 30 + name_len + extra_len
        }
    };
    let end = start.checked_add(usize::try_from(entry.compressed_size).ok()?)?;
    data.get(start..end.min(data.len()))
}

/// The member's bytes when it is stored or deflated, its declared size is at most `limit` and
/// its declared ratio at most `max_ratio`; the inflater stops at the declared size, so a member
/// that lies about its size fails instead of growing.
pub(crate) fn extract(
    data: &[u8],
    entry: &Entry<'_>,
    limit: u64,
    max_ratio: u64,
) -> Option<Vec<u8>> {
    let declared = entry.uncompressed_size;
    if declared > limit || declared > entry.compressed_size.saturating_mul(max_ratio) {
        return None;
    }
    let stored = compressed_data(data, entry)?;
    let declared = usize::try_from(declared).ok()?;
    match entry.method {
        METHOD_STORED => stored.get(..declared).map(<[u8]>::to_vec),
        METHOD_DEFLATE => miniz_oxide::inflate::decompress_to_vec_with_limit(stored, declared).ok(),
        _ => None,
    }
}

fn read_u16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        data.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        data.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

#[cfg(test)]
pub(crate) mod build {
    //! A ZIP writer for tests: stored or deflated members with chosen flags.

    /// One member: name, content, deflate or store, general-purpose flags.
    pub(crate) struct Member<'a> {
        pub(crate) name: &'a str,
        pub(crate) content: &'a [u8],
        pub(crate) deflate: bool,
        pub(crate) flags: u16,
    }

    pub(crate) fn zip(members: &[Member<'_>]) -> Vec<u8> {
        let (mut out, mut directory) = (Vec::new(), Vec::new());
        for m in members {
            let data = if m.deflate {
                miniz_oxide::deflate::compress_to_vec(m.content, 6)
            } else {
                m.content.to_vec()
            };
            let offset = out.len() as u32;
            let method: u16 = if m.deflate { 8 } else { 0 };
            let fixed = |sig: &[u8]| {
                let mut h = sig.to_vec();
                h.extend_from_slice(&20u16.to_le_bytes());
                h
            };
            let mut common = Vec::new();
            common.extend_from_slice(&m.flags.to_le_bytes());
            common.extend_from_slice(&method.to_le_bytes());
            common.extend_from_slice(&[0; 8]); // time, date, crc (unchecked here)
            common.extend_from_slice(&(data.len() as u32).to_le_bytes());
            common.extend_from_slice(&(m.content.len() as u32).to_le_bytes());
            common.extend_from_slice(&(m.name.len() as u16).to_le_bytes());
            common.extend_from_slice(&0u16.to_le_bytes());

            out.extend(fixed(b"PK\x03\x04"));
            out.extend_from_slice(&common);
            out.extend_from_slice(m.name.as_bytes());
            out.extend_from_slice(&data);

            directory.extend(fixed(b"PK\x01\x02"));
            directory.extend_from_slice(&20u16.to_le_bytes());
            directory.extend_from_slice(&common);
            directory.extend_from_slice(&[0; 10]); // comment, disk, attributes
            directory.extend_from_slice(&offset.to_le_bytes());
            directory.extend_from_slice(m.name.as_bytes());
        }
        let directory_offset = out.len() as u32;
        out.extend_from_slice(&directory);
        out.extend_from_slice(b"PK\x05\x06\0\0\0\0");
        out.extend_from_slice(&(members.len() as u16).to_le_bytes());
        out.extend_from_slice(&(members.len() as u16).to_le_bytes());
        out.extend_from_slice(&(directory.len() as u32).to_le_bytes());
        out.extend_from_slice(&directory_offset.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::build::{Member, zip};
    use super::*;

    fn sample() -> Vec<u8> {
        zip(&[
            Member {
                name: "a.txt",
                content: b"stored text",
                deflate: false,
                flags: 0,
            },
            Member {
                name: "word/vbaProject.BIN",
                content: &[7; 5000],
                deflate: true,
                flags: 0,
            },
            Member {
                name: "secret",
                content: b"x",
                deflate: false,
                flags: 1,
            },
        ])
    }

    #[test]
    fn central_directory_entries() {
        let data = sample();
        let entries = entries(&data);
        let names: Vec<&[u8]> = entries.iter().map(|e| e.name).collect();
        assert_eq!(names, [&b"a.txt"[..], b"word/vbaProject.BIN", b"secret"]);
        assert!(entries[1].name_ends_with("vbaproject.bin"));
        assert_eq!(
            entries.iter().map(Entry::encrypted).collect::<Vec<_>>(),
            [false, false, true]
        );
        assert!(matches!(entries[0].location, Location::LocalHeader(0)));
        assert_eq!(
            extract(&data, &entries[0], 100, 100).unwrap(),
            b"stored text"
        );
        assert_eq!(
            extract(&data, &entries[1], 10_000, 1000).unwrap(),
            vec![7; 5000]
        );
    }

    #[test]
    fn without_a_directory_the_local_headers_are_walked() {
        let data = sample();
        let cut = &data[..data.len() - 30];
        let truncated = &cut[..cut.len() - 150];
        let entries = entries(truncated);
        assert!(
            entries
                .iter()
                .all(|e| matches!(e.location, Location::Data(_)))
        );
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[2].name, b"secret");
        assert_eq!(
            extract(truncated, &entries[1], 10_000, 1000).unwrap(),
            vec![7; 5000]
        );
    }

    #[test]
    fn limits_refuse_before_inflating() {
        let data = sample();
        let entries = entries(&data);
        assert_eq!(extract(&data, &entries[1], 4999, 1000), None);
        // 5000 bytes of one value deflate far below 1/10.
        assert_eq!(extract(&data, &entries[1], 10_000, 10), None);
    }

    #[test]
    fn a_member_that_lies_about_its_size_fails() {
        let mut data = zip(&[Member {
            name: "x",
            content: &[0; 100_000],
            deflate: true,
            flags: 0,
        }]);
        let directory = data.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        data[directory + 24..directory + 28].copy_from_slice(&1000u32.to_le_bytes());
        let entries = entries(&data);
        assert_eq!(entries[0].uncompressed_size, 1000);
        assert_eq!(extract(&data, &entries[0], 10_000, 100), None);
    }

    #[test]
    fn garbage_has_no_entries() {
        assert!(entries(b"PK").is_empty());
        let end_record = [&b"PK\x05\x06"[..], &[0xff; 18]].concat();
        assert!(entries(&end_record).is_empty());
        let mut far = sample();
        let len = far.len();
        // A directory offset past the end falls back to the local walk.
        far[len - 6..len - 2].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(entries(&far).len(), 3);
    }
}

//! Just enough of the OLE compound file format (MS-CFB) to list the storages and streams of
//! an attached legacy Office file: the header, the FAT (through the DIFAT), and the directory
//! sector chain.
//!
//! Stream contents are never read, so the mini stream is not needed. Every sector number is
//! checked against the sectors present, chain walks stop after as many steps as there are
//! sectors (a cyclic chain cannot loop), and tables are sized by the bytes present, never by a
//! count the header claims. Directory entries are read in chain order, reachable from the
//! root's tree or not: an entry an attacker unlinked is still evidence.

/// The OLE compound file signature (§7).
pub(crate) const MAGIC: [u8; 8] = [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

const HEADER_LEN: usize = 512;
const DIFAT_IN_HEADER: usize = 109;
const DIR_ENTRY_LEN: usize = 128;
/// Sector numbers from here up are markers (free, end of chain, FAT, DIFAT), not sectors.
const MAX_REGULAR_SECTOR: u32 = 0xFFFF_FFFA;

const TYPE_STORAGE: u8 = 1;
const TYPE_STREAM: u8 = 2;

/// What the directory says that §7 cares about.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Findings {
    /// A `Macros`, `_VBA_PROJECT_CUR` or `VBA` storage: a VBA project.
    pub(crate) macros: bool,
    /// An `EncryptedPackage` stream: password-protected OOXML (MS-OFFCRYPTO).
    pub(crate) encrypted_package: bool,
}

/// Whether the bytes start with the compound file signature.
pub(crate) fn is_ole(data: &[u8]) -> bool {
    data.starts_with(&MAGIC)
}

/// The findings of a compound file's directory; `None` when it is not one we can read.
pub(crate) fn scan(data: &[u8]) -> Option<Findings> {
    let file = CompoundFile::open(data)?;
    let mut findings = Findings::default();
    for sector in file.chain(read_u32(data, 0x30)?) {
        let Some(bytes) = file.sector(sector) else {
            break;
        };
        for entry in bytes.chunks_exact(DIR_ENTRY_LEN) {
            match (entry[0x42], entry_name(entry)) {
                (TYPE_STORAGE, Some(name)) => {
                    findings.macros |= ["Macros", "_VBA_PROJECT_CUR", "VBA"]
                        .iter()
                        .any(|wanted| name.eq_ignore_ascii_case(wanted));
                }
                (TYPE_STREAM, Some(name)) => {
                    findings.encrypted_package |= name.eq_ignore_ascii_case("EncryptedPackage");
                }
                _ => {}
            }
        }
    }
    Some(findings)
}

/// An entry's name: UTF-16LE, its length in bytes counting the terminating NUL.
fn entry_name(entry: &[u8]) -> Option<String> {
    let len = usize::from(u16::from_le_bytes([entry[0x40], entry[0x41]]));
    if !(2..=64).contains(&len) || !len.is_multiple_of(2) {
        return None;
    }
    let units = entry[..len - 2]
        .chunks_exact(2)
        .map(|u| u16::from_le_bytes([u[0], u[1]]));
    Some(
        char::decode_utf16(units)
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect(),
    )
}

struct CompoundFile<'a> {
    data: &'a [u8],
    sector_size: usize,
    /// Whole sectors present after the header sector.
    sector_count: usize,
    fat: Vec<u32>,
}

impl<'a> CompoundFile<'a> {
    fn open(data: &'a [u8]) -> Option<CompoundFile<'a>> {
        if !is_ole(data) || data.len() < HEADER_LEN {
            return None;
        }
        let sector_size = match read_u16(data, 0x1E)? {
            9 => 512,
            12 => 4096,
            _ => return None,
        };
        let sector_count = (data.len() / sector_size).saturating_sub(1);
        let mut file = CompoundFile {
            data,
            sector_size,
            sector_count,
            fat: Vec::new(),
        };
        file.fat = file.read_fat()?;
        Some(file)
    }

    fn sector(&self, n: u32) -> Option<&'a [u8]> {
        let n = n as usize;
        if n >= self.sector_count {
            return None;
        }
        let start = (n + 1) * self.sector_size;
        self.data.get(start..start + self.sector_size)
    }

    /// FAT sector numbers from the header's DIFAT, then the DIFAT sector chain; the FAT is
    /// their concatenation, cut to one entry per sector present.
    fn read_fat(&self) -> Option<Vec<u32>> {
        let fat_sectors = self.fat_sector_numbers()?;
        let mut fat = Vec::new();
        for n in fat_sectors {
            if fat.len() >= self.sector_count {
                break;
            }
            let Some(sector) = self.sector(n) else {
                continue;
            };
            fat.extend(
                sector
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
        }
        fat.truncate(self.sector_count);
        Some(fat)
    }

    fn fat_sector_numbers(&self) -> Option<Vec<u32>> {
        let declared = read_u32(self.data, 0x2C)? as usize;
        let wanted = declared.min(self.sector_count);
        let mut numbers: Vec<u32> = (0..DIFAT_IN_HEADER)
            .filter_map(|i| read_u32(self.data, 0x4C + 4 * i))
            .take(wanted)
            .collect();
        let mut next = read_u32(self.data, 0x44)?;
        let mut steps = 0;
        while numbers.len() < wanted && next < MAX_REGULAR_SECTOR && steps < self.sector_count {
            let Some(sector) = self.sector(next) else {
                break;
            };
            let (entries, link) = sector.split_at(self.sector_size - 4);
            let entries = entries
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
            numbers.extend(entries.take(wanted - numbers.len()));
            next = u32::from_le_bytes([link[0], link[1], link[2], link[3]]);
            steps += 1;
        }
        Some(numbers)
    }

    /// The sector chain from `start`, at most one step per sector present.
    fn chain(&self, start: u32) -> impl Iterator<Item = u32> + '_ {
        let mut next = Some(start);
        std::iter::from_fn(move || {
            let current =
                next.filter(|&n| n < MAX_REGULAR_SECTOR && (n as usize) < self.sector_count)?;
            next = self.fat.get(current as usize).copied();
            Some(current)
        })
        .take(self.sector_count)
    }
}

fn read_u16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
pub(crate) mod build {
    //! A compound file writer for tests: version 3, 512-byte sectors, one FAT sector, the
    //! directory spread over non-adjacent sectors so that reading it needs the FAT. Streams
    //! are empty (they start at end-of-chain), which MS-CFB allows.

    const FREE: u32 = 0xFFFF_FFFF;
    const END_OF_CHAIN: u32 = 0xFFFF_FFFE;
    const FAT_SECTOR: u32 = 0xFFFF_FFFD;

    /// Entries below the root: (name, object type 1 storage / 2 stream).
    pub(crate) fn compound_file(entries: &[(&str, u8)]) -> Vec<u8> {
        let mut dir: Vec<[u8; 128]> = vec![entry("Root Entry", 5, 1)];
        for (i, (name, kind)) in entries.iter().enumerate() {
            let mut e = entry(name, *kind, FREE);
            // A right-leaning chain of siblings: a valid (if unbalanced) tree.
            let right = if i + 1 < entries.len() {
                i as u32 + 2
            } else {
                FREE
            };
            e[72..76].copy_from_slice(&right.to_le_bytes());
            dir.push(e);
        }
        while !dir.len().is_multiple_of(4) {
            dir.push(entry("", 0, FREE));
        }
        // Sector 0 is the FAT; directory sectors at 1, 3, 5, ... with a filler between.
        let dir_sectors: Vec<u32> = (0..dir.len() / 4).map(|i| 1 + 2 * i as u32).collect();
        let total = dir_sectors.last().map_or(1, |last| last + 1);
        let mut fat = vec![FREE; 128];
        fat[0] = FAT_SECTOR;
        for pair in dir_sectors.windows(2) {
            fat[pair[0] as usize] = pair[1];
        }
        fat[*dir_sectors.last().unwrap() as usize] = END_OF_CHAIN;

        let mut out = header(dir_sectors[0]);
        let mut sectors = vec![[0u8; 512]; total as usize];
        for (i, value) in fat.iter().enumerate() {
            sectors[0][4 * i..4 * i + 4].copy_from_slice(&value.to_le_bytes());
        }
        for (chunk, &at) in dir.chunks(4).zip(&dir_sectors) {
            for (j, e) in chunk.iter().enumerate() {
                sectors[at as usize][128 * j..128 * j + 128].copy_from_slice(e);
            }
        }
        sectors.iter().for_each(|s| out.extend_from_slice(s));
        out
    }

    fn header(first_dir_sector: u32) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..8].copy_from_slice(&super::MAGIC);
        h[0x18..0x1A].copy_from_slice(&0x3Eu16.to_le_bytes());
        h[0x1A..0x1C].copy_from_slice(&3u16.to_le_bytes());
        h[0x1C..0x1E].copy_from_slice(&0xFFFEu16.to_le_bytes());
        h[0x1E..0x20].copy_from_slice(&9u16.to_le_bytes());
        h[0x20..0x22].copy_from_slice(&6u16.to_le_bytes());
        h[0x2C..0x30].copy_from_slice(&1u32.to_le_bytes());
        h[0x30..0x34].copy_from_slice(&first_dir_sector.to_le_bytes());
        h[0x38..0x3C].copy_from_slice(&4096u32.to_le_bytes());
        h[0x3C..0x40].copy_from_slice(&END_OF_CHAIN.to_le_bytes());
        h[0x44..0x48].copy_from_slice(&END_OF_CHAIN.to_le_bytes());
        for i in 0..109 {
            let value = if i == 0 { 0 } else { FREE };
            h[0x4C + 4 * i..0x50 + 4 * i].copy_from_slice(&value.to_le_bytes());
        }
        h
    }

    fn entry(name: &str, kind: u8, child: u32) -> [u8; 128] {
        let mut e = [0u8; 128];
        let units: Vec<u16> = name.encode_utf16().collect();
        for (i, u) in units.iter().enumerate() {
            e[2 * i..2 * i + 2].copy_from_slice(&u.to_le_bytes());
        }
        if kind != 0 {
            e[0x40..0x42].copy_from_slice(&((units.len() as u16 + 1) * 2).to_le_bytes());
        }
        e[0x42] = kind;
        e[0x43] = 1; // black
        e[0x44..0x48].copy_from_slice(&FREE.to_le_bytes());
        e[0x48..0x4C].copy_from_slice(&FREE.to_le_bytes());
        e[0x4C..0x50].copy_from_slice(&child.to_le_bytes());
        e[0x74..0x78].copy_from_slice(&END_OF_CHAIN.to_le_bytes());
        e
    }
}

#[cfg(test)]
mod tests {
    use super::build::compound_file;
    use super::*;

    #[test]
    fn storages_and_streams_found_across_the_directory_chain() {
        // Eight entries with the root: the wanted ones sit in the second directory sector.
        let file = compound_file(&[
            ("WordDocument", 2),
            ("1Table", 2),
            ("\u{5}SummaryInformation", 2),
            ("Data", 2),
            ("Macros", 1),
            ("EncryptedPackage", 2),
        ]);
        assert_eq!(
            scan(&file),
            Some(Findings {
                macros: true,
                encrypted_package: true
            })
        );
    }

    #[test]
    fn each_macro_storage_name_counts_and_streams_of_that_name_do_not() {
        for name in ["Macros", "_VBA_PROJECT_CUR", "VBA", "vba"] {
            assert!(scan(&compound_file(&[(name, 1)])).unwrap().macros, "{name}");
        }
        let findings = scan(&compound_file(&[("VBA", 2), ("EncryptedPackage", 1)])).unwrap();
        assert_eq!(findings, Findings::default());
    }

    #[test]
    fn an_ordinary_document_has_no_findings() {
        let file = compound_file(&[("WordDocument", 2), ("1Table", 2)]);
        assert_eq!(scan(&file), Some(Findings::default()));
    }

    #[test]
    fn a_cyclic_directory_chain_terminates() {
        let mut file = compound_file(&[("a", 2), ("b", 2), ("c", 2), ("d", 2), ("VBA", 1)]);
        // FAT entry of the second directory sector (3) points back to the first (1).
        file[512 + 12..512 + 16].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(
            scan(&file),
            Some(Findings {
                macros: true,
                encrypted_package: false
            })
        );
    }

    #[test]
    fn malformed_files_are_refused_or_read_partially() {
        assert_eq!(scan(&MAGIC), None);
        let file = compound_file(&[("Macros", 1)]);
        let mut bad_shift = file.clone();
        bad_shift[0x1E] = 10;
        assert_eq!(scan(&bad_shift), None);
        let mut huge_counts = file.clone();
        huge_counts[0x2C..0x30].copy_from_slice(&u32::MAX.to_le_bytes());
        huge_counts[0x30..0x34].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        assert_eq!(scan(&huge_counts), Some(Findings::default()));
        // Cut inside the directory: the header and FAT still read.
        assert_eq!(scan(&file[..1024]), Some(Findings::default()));
    }
}

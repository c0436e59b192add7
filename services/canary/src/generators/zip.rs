//! A ZIP writer for stored (uncompressed) entries with one fixed timestamp, enough for an OOXML
//! package and byte-identical on every run.

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), as ZIP uses it.
pub(super) fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

/// MS-DOS time and date of every entry: 2025-10-02 09:14:00.
const DOS_TIME: u16 = (9 << 11) | (14 << 5);
const DOS_DATE: u16 = ((2025 - 1980) << 9) | (10 << 5) | 2;

fn u16le(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn u32le(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).expect("artifact entries are far below 4 GiB")
}

/// A ZIP archive of `entries` (name, content), stored, in the given order.
pub(super) fn stored(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = len32(out.len());
        let crc = crc32(data);
        let size = len32(data.len());
        let name_len = u16::try_from(name.len()).expect("short entry names");
        // Local file header.
        u32le(&mut out, 0x0403_4b50);
        u16le(&mut out, 20); // version needed: 2.0
        u16le(&mut out, 0); // flags
        u16le(&mut out, 0); // method: stored
        u16le(&mut out, DOS_TIME);
        u16le(&mut out, DOS_DATE);
        u32le(&mut out, crc);
        u32le(&mut out, size); // compressed
        u32le(&mut out, size); // uncompressed
        u16le(&mut out, name_len);
        u16le(&mut out, 0); // extra length
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        // Central directory header.
        u32le(&mut central, 0x0201_4b50);
        u16le(&mut central, 20); // version made by: MS-DOS, 2.0
        u16le(&mut central, 20); // version needed
        u16le(&mut central, 0);
        u16le(&mut central, 0);
        u16le(&mut central, DOS_TIME);
        u16le(&mut central, DOS_DATE);
        u32le(&mut central, crc);
        u32le(&mut central, size);
        u32le(&mut central, size);
        u16le(&mut central, name_len);
        u16le(&mut central, 0); // extra length
        u16le(&mut central, 0); // comment length
        u16le(&mut central, 0); // disk number start
        u16le(&mut central, 0); // internal attributes
        u32le(&mut central, 0); // external attributes
        u32le(&mut central, offset);
        central.extend_from_slice(name.as_bytes());
    }
    let count = u16::try_from(entries.len()).expect("few entries");
    let central_offset = len32(out.len());
    let central_size = len32(central.len());
    out.extend_from_slice(&central);
    // End of central directory record.
    u32le(&mut out, 0x0605_4b50);
    u16le(&mut out, 0); // this disk
    u16le(&mut out, 0); // disk with the central directory
    u16le(&mut out, count);
    u16le(&mut out, count);
    u32le(&mut out, central_size);
    u32le(&mut out, central_offset);
    u16le(&mut out, 0); // comment length
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }
}

//! What an attachment's bytes reveal (SMTP.md §7 `attachment_macros`,
//! `attachment_password_protected`): archive and Office container formats, told by magic
//! bytes and read with the bounded readers of [`crate::zip`] and [`crate::ole`].
//!
//! Only one level of nesting is opened: a member of an attached ZIP is looked into when it has
//! an Office name, and nothing inside that member is opened further. Inflation is bounded per
//! member (§7: 10 MiB, ratio 100) and, beyond §7, per message, so that an archive of many
//! ratio-100 members cannot turn a 10 MiB message into gigabytes of work.

use crate::{ole, zip};

/// A member inflated for case (c) may be at most this large (§7).
pub(crate) const MAX_MEMBER_BYTES: u64 = 10 * 1024 * 1024;
/// Declared uncompressed size over compressed size, at most (§7).
pub(crate) const MAX_RATIO: u64 = 100;
/// Bytes inflated per message, over all attachments.
pub(crate) const INFLATE_BUDGET: u64 = 64 * 1024 * 1024;

const SEVEN_ZIP_MAGIC: &[u8] = &[0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C];
const RAR_MAGIC: &[u8] = &[0x52, 0x61, 0x72, 0x21, 0x1A, 0x07];

/// Members of a ZIP that are opened as Office documents (case (c)).
const OFFICE_EXTENSIONS: &[&str] = &[
    ".doc", ".dot", ".docx", ".docm", ".dotx", ".dotm", ".xls", ".xlt", ".xla", ".xlsx", ".xlsm",
    ".xlsb", ".xltx", ".xltm", ".xlam", ".ppt", ".pot", ".pps", ".ppa", ".pptx", ".pptm", ".potx",
    ".potm", ".ppsx", ".ppsm", ".ppam", ".sldx", ".sldm",
];

/// The two attachment verdicts of one message, accumulated over its attachments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Inspector {
    pub(crate) macros: bool,
    pub(crate) password_protected: bool,
    budget: u64,
}

impl Default for Inspector {
    fn default() -> Self {
        Inspector {
            macros: false,
            password_protected: false,
            budget: INFLATE_BUDGET,
        }
    }
}

impl Inspector {
    /// Fold one attachment's bytes into the verdicts.
    pub(crate) fn inspect(&mut self, bytes: &[u8]) {
        if bytes.starts_with(SEVEN_ZIP_MAGIC) || bytes.starts_with(RAR_MAGIC) {
            self.password_protected = true;
        } else if zip::is_zip(bytes) {
            self.inspect_zip(bytes);
        } else if ole::is_ole(bytes)
            && let Some(findings) = ole::scan(bytes)
        {
            self.macros |= findings.macros;
            // An ordinary legacy Office file is a compound file too; only this stream says
            // "password-protected OOXML".
            self.password_protected |= findings.encrypted_package;
        }
    }

    fn inspect_zip(&mut self, bytes: &[u8]) {
        let entries = zip::entries(bytes);
        self.password_protected |= entries.iter().any(zip::Entry::encrypted);
        if has_vba_project(&entries) {
            self.macros = true;
            return;
        }
        for entry in entries.iter().filter(|e| is_office_name(e)) {
            if self.macros {
                return;
            }
            if entry.uncompressed_size > self.budget {
                continue;
            }
            self.budget -= entry.uncompressed_size;
            let Some(member) = zip::extract(bytes, entry, MAX_MEMBER_BYTES, MAX_RATIO) else {
                continue;
            };
            self.macros = member_has_macros(&member);
        }
    }
}

/// Cases (a) and (b) on a member, without opening anything inside it.
fn member_has_macros(member: &[u8]) -> bool {
    if zip::is_zip(member) {
        has_vba_project(&zip::entries(member))
    } else {
        ole::is_ole(member) && ole::scan(member).is_some_and(|f| f.macros)
    }
}

fn has_vba_project(entries: &[zip::Entry<'_>]) -> bool {
    entries.iter().any(|e| e.name_ends_with("vbaProject.bin"))
}

fn is_office_name(entry: &zip::Entry<'_>) -> bool {
    OFFICE_EXTENSIONS
        .iter()
        .any(|ext| entry.name_ends_with(ext))
}

/// §7 `attachment_extensions` for one decoded file name: from the last `.`, lower-cased; none
/// without a dot or when the name ends in one.
pub(crate) fn extension(file_name: &str) -> Option<String> {
    let dot = file_name.rfind('.')?;
    let extension = &file_name[dot..];
    (extension.len() > 1).then(|| extension.to_lowercase())
}

/// Names of attachments that are HTML-like documents for `html_smuggling` (§7).
pub(crate) fn is_html_like(file_name: &str) -> bool {
    let lower = file_name.to_lowercase();
    [".htm", ".html", ".shtml", ".xhtml", ".svg"]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ole::build::compound_file;
    use crate::zip::build::{Member, zip};

    fn verdict(bytes: &[u8]) -> (bool, bool) {
        let mut inspector = Inspector::default();
        inspector.inspect(bytes);
        (inspector.macros, inspector.password_protected)
    }

    fn member<'a>(name: &'a str, content: &'a [u8]) -> Member<'a> {
        Member {
            name,
            content,
            deflate: true,
            flags: 0,
        }
    }

    #[test]
    fn magic_formats() {
        assert_eq!(
            verdict(&[0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C, 0, 4]),
            (false, true)
        );
        assert_eq!(verdict(b"Rar!\x1a\x07\x01\x00"), (false, true));
        assert_eq!(verdict(b"Rar!\x1a\x06"), (false, false));
        assert_eq!(verdict(b"%PDF-1.7"), (false, false));
    }

    #[test]
    fn ooxml_with_a_vba_project_and_encrypted_entries() {
        let docm = zip(&[
            member("[Content_Types].xml", b"<x/>"),
            member("word/vbaProject.bin", b"v"),
        ]);
        assert_eq!(verdict(&docm), (true, false));
        let locked = zip(&[Member {
            name: "a.pdf",
            content: b"x",
            deflate: false,
            flags: 1,
        }]);
        assert_eq!(verdict(&locked), (false, true));
        assert_eq!(
            verdict(&zip(&[member("word/document.xml", b"<x/>")])),
            (false, false)
        );
    }

    #[test]
    fn compound_files() {
        assert_eq!(
            verdict(&compound_file(&[("WordDocument", 2), ("Macros", 1)])),
            (true, false)
        );
        let encrypted = compound_file(&[("EncryptionInfo", 2), ("EncryptedPackage", 2)]);
        assert_eq!(verdict(&encrypted), (false, true));
        assert_eq!(
            verdict(&compound_file(&[("WordDocument", 2)])),
            (false, false)
        );
    }

    #[test]
    fn one_level_of_nesting_for_office_named_members() {
        let xlsm = zip(&[member("xl/vbaProject.bin", &[1; 2000])]);
        assert_eq!(
            verdict(&zip(&[member("Q3 report.XLSM", &xlsm)])),
            (true, false)
        );
        let doc = compound_file(&[("_VBA_PROJECT_CUR", 1)]);
        assert_eq!(verdict(&zip(&[member("old.doc", &doc)])), (true, false));
        // Not Office-named: not opened.
        assert_eq!(
            verdict(&zip(&[member("report.bin", &xlsm)])),
            (false, false)
        );
        // Two levels down is not looked at.
        let outer = zip(&[member("inner.docx", &zip(&[member("deeper.xlsm", &xlsm)]))]);
        assert_eq!(
            verdict(&zip(&[member("outer.docx", &outer)])),
            (false, false)
        );
    }

    #[test]
    fn the_ratio_bound_skips_a_member() {
        let xlsm = zip(&[member("xl/vbaProject.bin", &[0; 200_000])]);
        let stored = zip(&[Member {
            name: "a.xlsm",
            content: &xlsm,
            deflate: false,
            flags: 0,
        }]);
        assert_eq!(verdict(&stored), (true, false));
        // Deflating the archive again compresses its zero run well past ratio 100.
        let padded = [xlsm.as_slice(), &[0; 5_000_000]].concat();
        let bomb = zip(&[member("a.xlsm", &padded)]);
        assert_eq!(verdict(&bomb), (false, false));
    }

    #[test]
    fn the_message_budget_bounds_inflation() {
        let mut inspector = Inspector {
            budget: 10,
            ..Inspector::default()
        };
        let xlsm = zip(&[member("xl/vbaProject.bin", b"v")]);
        inspector.inspect(&zip(&[member("a.xlsm", &xlsm)]));
        assert!(!inspector.macros);
    }

    #[test]
    fn extensions() {
        assert_eq!(extension("Invoice.DOCM").as_deref(), Some(".docm"));
        assert_eq!(extension("a.tar.gz").as_deref(), Some(".gz"));
        assert_eq!(extension("README"), None);
        assert_eq!(extension("trailing."), None);
        assert_eq!(extension(".bashrc").as_deref(), Some(".bashrc"));
        assert!(is_html_like("Remittance.HTML"));
        assert!(is_html_like("logo.svg"));
        assert!(!is_html_like("page.html.txt"));
    }
}

//! The documents that call the beacon when opened: HTML, Word and PDF honeydocs.

use std::fmt::Write as _;

use super::{derive, xml_escape, zip};

/// The figures of the report, drawn from the slug so that no two reports read alike.
struct Figures {
    availability: String,
    p1: u8,
    p2: u8,
    mttr: String,
    spend: u8,
    tickets: u16,
}

impl Figures {
    fn of(slug: &str) -> Figures {
        let d = derive(slug, "report-figures");
        Figures {
            availability: format!("99.{}", 80 + u16::from(d[0]) % 20),
            p1: d[1] % 4,
            p2: 3 + d[2] % 12,
            mttr: format!("{}.{}", 1 + d[3] % 4, d[4] % 10),
            spend: 92 + d[5] % 18,
            tickets: 1200 + u16::from_be_bytes([d[6], d[7]]) % 900,
        }
    }

    /// The summary table, as (label, value) rows.
    fn rows(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "Service availability (SLA 99.9%)",
                format!("{}%", self.availability),
            ),
            ("Incidents P1 / P2", format!("{} / {}", self.p1, self.p2)),
            ("Mean time to restore", format!("{} h", self.mttr)),
            ("Cloud spend vs. budget", format!("{}%", self.spend)),
            ("Service desk tickets closed", self.tickets.to_string()),
        ]
    }
}

const OPEN_ITEMS: [&str; 4] = [
    "Finish migration of the legacy file server (fs01) to the new storage cluster",
    "Rotate service-account credentials flagged by the September audit",
    "Renew the VPN gateway support contract before 30 November",
    "Decide on the DR site: second region or co-location (budget in Appendix B)",
];

pub(super) fn honeydoc(slug: &str, beacon: &str) -> String {
    let figures = Figures::of(slug);
    let mut out = String::from(
        "<!DOCTYPE html>\n\
         <html lang=\"en\">\n\
         <head>\n\
         <meta charset=\"utf-8\">\n\
         <title>Q3 Operations Review \u{2014} DRAFT</title>\n\
         <style>\n\
         body { font-family: Calibri, Arial, sans-serif; margin: 40px auto; max-width: 860px; color: #222; }\n\
         h1 { font-size: 26px; border-bottom: 2px solid #1f4e79; padding-bottom: 6px; }\n\
         .draft { color: #b00020; }\n\
         table { border-collapse: collapse; margin: 12px 0; }\n\
         td, th { border: 1px solid #bbb; padding: 5px 12px; text-align: left; }\n\
         th { background: #dde6f0; }\n\
         .note { color: #666; font-size: 13px; }\n\
         </style>\n\
         </head>\n\
         <body>\n\
         <h1>Q3 Operations Review \u{2014} <span class=\"draft\">DRAFT</span></h1>\n\
         <p class=\"note\">Infrastructure &amp; Operations \u{b7} internal, do not forward \u{b7} figures not yet reconciled with Finance</p>\n\
         <h2>Summary</h2>\n\
         <table>\n<tr><th>Metric</th><th>Q3</th></tr>\n",
    );
    for (label, value) in figures.rows() {
        let _ = writeln!(out, "<tr><td>{label}</td><td>{value}</td></tr>");
    }
    out.push_str("</table>\n<h2>Open items</h2>\n<ul>\n");
    for item in OPEN_ITEMS {
        let _ = writeln!(out, "<li>{}</li>", xml_escape(item));
    }
    let _ = writeln!(
        out,
        "</ul>\n\
         <p class=\"note\">Next review: first week of January. Comments to the ops leads before the board pack is frozen.</p>\n\
         <img src=\"{}\" width=\"1\" height=\"1\" alt=\"\" style=\"border:0\">\n\
         </body>\n\
         </html>",
        xml_escape(beacon)
    );
    out
}

const W_NS: &str = "http://schemas.openxmlformats.org/wordprocessingml/2006/main";
const R_NS: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
const REL_NS: &str = "http://schemas.openxmlformats.org/package/2006/relationships";
const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\r\n";

fn w_paragraph(out: &mut String, text: &str, style: Option<&str>) {
    out.push_str("<w:p>");
    if let Some(style) = style {
        let _ = write!(out, "<w:pPr><w:pStyle w:val=\"{style}\"/></w:pPr>");
    }
    let _ = write!(
        out,
        "<w:r><w:t xml:space=\"preserve\">{}</w:t></w:r></w:p>",
        xml_escape(text)
    );
}

/// A minimal Word package: the drawing's picture links (`r:link`) an external image
/// relationship whose target is the beacon, so Word fetches it when the document opens.
pub(super) fn honeydoc_docx(slug: &str, beacon: &str) -> Vec<u8> {
    let content_types = format!(
        "{XML_DECL}<Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">\
         <Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/>\
         <Default Extension=\"xml\" ContentType=\"application/xml\"/>\
         <Override PartName=\"/word/document.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml\"/>\
         <Override PartName=\"/docProps/core.xml\" ContentType=\"application/vnd.openxmlformats-package.core-properties+xml\"/>\
         </Types>"
    );
    let package_rels = format!(
        "{XML_DECL}<Relationships xmlns=\"{REL_NS}\">\
         <Relationship Id=\"rId1\" Type=\"{R_NS}/officeDocument\" Target=\"word/document.xml\"/>\
         <Relationship Id=\"rId2\" Type=\"http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties\" Target=\"docProps/core.xml\"/>\
         </Relationships>"
    );
    let core = format!(
        "{XML_DECL}<cp:coreProperties xmlns:cp=\"http://schemas.openxmlformats.org/package/2006/metadata/core-properties\" \
         xmlns:dc=\"http://purl.org/dc/elements/1.1/\" xmlns:dcterms=\"http://purl.org/dc/terms/\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\
         <dc:title>Q3 Operations Review \u{2014} DRAFT</dc:title>\
         <dc:creator>J. Martin</dc:creator>\
         <cp:lastModifiedBy>J. Martin</cp:lastModifiedBy>\
         <cp:revision>7</cp:revision>\
         <dcterms:created xsi:type=\"dcterms:W3CDTF\">2025-09-29T08:02:00Z</dcterms:created>\
         <dcterms:modified xsi:type=\"dcterms:W3CDTF\">2025-10-02T09:14:00Z</dcterms:modified>\
         </cp:coreProperties>"
    );
    let document_rels = format!(
        "{XML_DECL}<Relationships xmlns=\"{REL_NS}\">\
         <Relationship Id=\"rId1\" Type=\"{R_NS}/image\" Target=\"{}\" TargetMode=\"External\"/>\
         </Relationships>",
        xml_escape(beacon)
    );
    let figures = Figures::of(slug);
    let mut body = String::new();
    w_paragraph(
        &mut body,
        "Q3 Operations Review \u{2014} DRAFT",
        Some("Title"),
    );
    w_paragraph(
        &mut body,
        "Infrastructure & Operations \u{b7} internal, do not forward \u{b7} figures not yet reconciled with Finance",
        None,
    );
    w_paragraph(&mut body, "Summary", Some("Heading1"));
    for (label, value) in figures.rows() {
        w_paragraph(&mut body, &format!("{label}: {value}"), None);
    }
    w_paragraph(&mut body, "Open items", Some("Heading1"));
    for item in OPEN_ITEMS {
        w_paragraph(&mut body, &format!("\u{2022} {item}"), None);
    }
    // The 1x1 px (9525 EMU) linked picture.
    body.push_str(
        "<w:p><w:r><w:drawing>\
         <wp:inline distT=\"0\" distB=\"0\" distL=\"0\" distR=\"0\">\
         <wp:extent cx=\"9525\" cy=\"9525\"/>\
         <wp:docPr id=\"1\" name=\"Picture 1\"/>\
         <wp:cNvGraphicFramePr><a:graphicFrameLocks noChangeAspect=\"1\"/></wp:cNvGraphicFramePr>\
         <a:graphic><a:graphicData uri=\"http://schemas.openxmlformats.org/drawingml/2006/picture\">\
         <pic:pic>\
         <pic:nvPicPr><pic:cNvPr id=\"1\" name=\"image1.gif\"/><pic:cNvPicPr/></pic:nvPicPr>\
         <pic:blipFill><a:blip r:link=\"rId1\"/><a:stretch><a:fillRect/></a:stretch></pic:blipFill>\
         <pic:spPr><a:xfrm><a:off x=\"0\" y=\"0\"/><a:ext cx=\"9525\" cy=\"9525\"/></a:xfrm>\
         <a:prstGeom prst=\"rect\"><a:avLst/></a:prstGeom></pic:spPr>\
         </pic:pic>\
         </a:graphicData></a:graphic>\
         </wp:inline>\
         </w:drawing></w:r></w:p>",
    );
    let document = format!(
        "{XML_DECL}<w:document xmlns:w=\"{W_NS}\" xmlns:r=\"{R_NS}\" \
         xmlns:wp=\"http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing\" \
         xmlns:a=\"http://schemas.openxmlformats.org/drawingml/2006/main\" \
         xmlns:pic=\"http://schemas.openxmlformats.org/drawingml/2006/picture\">\
         <w:body>{body}\
         <w:sectPr><w:pgSz w:w=\"11906\" w:h=\"16838\"/>\
         <w:pgMar w:top=\"1440\" w:right=\"1440\" w:bottom=\"1440\" w:left=\"1440\" w:header=\"708\" w:footer=\"708\" w:gutter=\"0\"/>\
         </w:sectPr></w:body></w:document>"
    );
    zip::stored(&[
        ("[Content_Types].xml", content_types.as_bytes()),
        ("_rels/.rels", package_rels.as_bytes()),
        ("docProps/core.xml", core.as_bytes()),
        ("word/document.xml", document.as_bytes()),
        ("word/_rels/document.xml.rels", document_rels.as_bytes()),
    ])
}

/// Escape a PDF literal string (ASCII only: anything else becomes `?`).
fn pdf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '(' | ')' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out
}

/// A one-page PDF whose catalog opens with a URI action to the beacon.
pub(super) fn honeydoc_pdf(slug: &str, beacon: &str) -> Vec<u8> {
    let figures = Figures::of(slug);
    let mut lines: Vec<(u8, String)> = vec![
        (20, "Q3 Operations Review - DRAFT".to_owned()),
        (
            9,
            "Infrastructure & Operations - internal, do not forward - figures not yet reconciled with Finance"
                .to_owned(),
        ),
        (14, "Summary".to_owned()),
    ];
    lines.extend(
        figures
            .rows()
            .into_iter()
            .map(|(label, value)| (11, format!("{label}: {value}"))),
    );
    lines.push((14, "Open items".to_owned()));
    lines.extend(OPEN_ITEMS.iter().map(|item| (11, format!("- {item}"))));
    let mut content = String::from("BT\n72 770 Td\n");
    for (size, text) in &lines {
        let lead = u16::from(*size) + 8;
        let _ = writeln!(
            content,
            "/F1 {size} Tf\n0 -{lead} Td\n({}) Tj",
            pdf_string(text)
        );
    }
    content.push_str("ET\n");

    let objects = [
        format!(
            "<< /Type /Catalog /Pages 2 0 R /OpenAction << /S /URI /URI ({}) >> >>",
            pdf_string(beacon)
        ),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] \
         /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>"
            .to_owned(),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_owned(),
        format!(
            "<< /Length {} >>\nstream\n{content}endstream",
            content.len()
        ),
        "<< /Title (Q3 Operations Review - DRAFT) /Author (J. Martin) \
         /Creator (Microsoft Word) /CreationDate (D:20250929080200Z) /ModDate (D:20251002091400Z) >>"
            .to_owned(),
    ];
    let mut out: Vec<u8> = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    let mut table = format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for offset in offsets {
        let _ = writeln!(table, "{offset:010} 00000 n ");
    }
    let _ = writeln!(
        table,
        "trailer\n<< /Size {} /Root 1 0 R /Info {} 0 R >>\nstartxref\n{xref}\n%%EOF",
        objects.len() + 1,
        objects.len()
    );
    out.extend_from_slice(table.as_bytes());
    out
}

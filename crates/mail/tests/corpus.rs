//! Every field of `MessageFeatures` on the crafted corpus in `tests/corpus/` (its README lists
//! what each file exercises). Hashes and SimHashes were computed when the corpus was built, by
//! an implementation independent of this crate, so a change in any derivation shows here.

use std::path::PathBuf;

use decnet_mail::{MessageFeatures, analyse, body_text, simhash_hex};

fn corpus(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The features every message shares unless its case says otherwise: nothing found.
fn nothing(body_sha256: &str) -> MessageFeatures {
    MessageFeatures {
        subject: None,
        from_domain: None,
        return_path_domain: None,
        x_mailer: None,
        dkim_signed: false,
        spf_pass: false,
        dkim_signature_present: false,
        auth_results_present: false,
        urls: vec![],
        attachment_count: 0,
        attachment_sha256s: vec![],
        attachment_extensions: vec![],
        attachment_macros: false,
        attachment_password_protected: false,
        html_smuggling: false,
        body_simhash: None,
        body_base64_bytes: 0,
        body_sha256: body_sha256.to_owned(),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn hash(hex: &str) -> Option<u64> {
    Some(u64::from_str_radix(hex, 16).expect("hex"))
}

/// The shared body of the attachment cases.
const STANDARD_BODY_SIMHASH: &str = "39038171b697d7c9";

/// A message whose one text/plain part is the standard body and whose one attachment is given.
fn with_attachment(
    sha: &str,
    subject: &str,
    from: &str,
    attachment_sha: &str,
    extension: &str,
) -> MessageFeatures {
    MessageFeatures {
        subject: Some(subject.to_owned()),
        from_domain: Some(from.to_owned()),
        attachment_count: 1,
        attachment_sha256s: strings(&[attachment_sha]),
        attachment_extensions: strings(&[extension]),
        body_simhash: hash(STANDARD_BODY_SIMHASH),
        ..nothing(sha)
    }
}

fn cases() -> Vec<(&'static str, MessageFeatures)> {
    vec![
        (
            "idn_url.eml",
            MessageFeatures {
                subject: Some("Delivery notice".into()),
                from_domain: Some("parcel.example".into()),
                urls: strings(&[
                    "http://xn--80ak6aa92e.com/track?id=42",
                    "https://www.example.org/help",
                ]),
                body_simhash: hash("8ca1929a10650aa0"),
                ..nothing("3733590cf49ddeef0cf71a923627f0c07298491d200b1c75ff433a72a2741421")
            },
        ),
        (
            "macro_docm.eml",
            MessageFeatures {
                attachment_macros: true,
                ..with_attachment(
                    "0f23e09e6ee3e0fdc27056ce39f02744c272e9e7ed5bb2f3fb462ce2ab37985d",
                    "Salary review",
                    "corp-payroll.example",
                    "9d810a4f6b71ec6d348f1ce89109fb00e41df4a1b840e6ec723f2d61dea1be5f",
                    ".docm",
                )
            },
        ),
        (
            "ole_macro.eml",
            MessageFeatures {
                attachment_macros: true,
                ..with_attachment(
                    "9ce6cb869de4e4aa4376976e098340560fd1bb55ba168fa690bf922f1cdf44f0",
                    "Invoice 4411",
                    "vendor.example",
                    "d76eac843ecf4b6bd1d350a0f2e399e1c48cbe0d9fc996dc230bd5e0cff85bd1",
                    ".doc",
                )
            },
        ),
        (
            "nested_zip_macro.eml",
            MessageFeatures {
                attachment_macros: true,
                ..with_attachment(
                    "d47781a5b3de6519f72816a660e45095f2375b6f65cc73786be5b17a3163f333",
                    "Q3 figures",
                    "finance.example",
                    "fc317e26059f3e66968b4fd1a2e206278dd2186ee1c934ff39997ae4cf96e0b0",
                    ".zip",
                )
            },
        ),
        (
            "encrypted_zip.eml",
            MessageFeatures {
                attachment_password_protected: true,
                body_simhash: hash("7430365006843824"),
                ..with_attachment(
                    "16b0edf521ab7ca0407b503d92cb7bd02985f421ae17ac11b822294f32b6a349",
                    "Your statement",
                    "secure-bank.example",
                    "73926fc1c9c0ae5d6ff0b6e56ee985466f5dcd632bccac0b3e99e2e0b5a8e722",
                    ".zip",
                )
            },
        ),
        (
            "seven_zip.eml",
            MessageFeatures {
                attachment_password_protected: true,
                ..with_attachment(
                    "5e8e1830aa3176eb5c18cf175009f0840382512a8722e64dd8bac0fec8060619",
                    "Updated tools",
                    "helpdesk.example",
                    "c2115b5da8dd1d28218301f6c8bf3a4ad6fa91987f39862c0a441dc66d09bf2d",
                    ".7z",
                )
            },
        ),
        (
            "encrypted_ooxml.eml",
            MessageFeatures {
                attachment_password_protected: true,
                ..with_attachment(
                    "0a8b66d155311eb96d03b948ba5266a278bb36ffaf5ad4cde17230692837d7cb",
                    "Contract draft",
                    "lawfirm.example",
                    "41bfdc01205a7b6476d4dc103f170c16f6cc7306d06a957b112bca818e17a273",
                    ".docx",
                )
            },
        ),
        (
            "html_smuggling.eml",
            MessageFeatures {
                html_smuggling: true,
                ..with_attachment(
                    "3ab5d62e4789262cd51a62e88fc006ee5acc2442d68e577961d54592ef8f238d",
                    "Shared invoice",
                    "share.example",
                    "1829fc56ebdb9ee6f17af5a8478e9d368c94d50bdd6fe9131fccce0384355353",
                    ".html",
                )
            },
        ),
        (
            "html_one_indicator.eml",
            MessageFeatures {
                urls: strings(&["https://letters.example/n.pdf"]),
                // The HTML body reduces to five words: too few for a SimHash.
                body_simhash: None,
                ..with_attachment(
                    "df2e463cdca75e573f03bab171419a09601c4dbf32885655cc4e533388ee56f5",
                    "Newsletter",
                    "letters.example",
                    "6ac56e50b06c222f630f893664f300f864281d064613a98e75c4bed5945563e5",
                    ".htm",
                )
            },
        ),
        (
            "return_path_mismatch.eml",
            MessageFeatures {
                subject: Some("Account notice".into()),
                from_domain: Some("paypal.example".into()),
                return_path_domain: Some("bulk-sender.example".into()),
                auth_results_present: true,
                urls: strings(&["https://paypal.example.account-check.example/login"]),
                body_simhash: hash("50ed19ef836403d6"),
                ..nothing("3cce3bb0d1eef28391c9734a68a3beb80729e710a44d248aafcae495e2be94e2")
            },
        ),
        (
            "bec.eml",
            MessageFeatures {
                subject: Some("Urgent wire transfer".into()),
                from_domain: Some("c0rp.example".into()),
                body_simhash: hash("700006a3136e1788"),
                ..nothing("0cbd534e0f1417a57976e7e8eeb8a02fe70e1e7d01cf9487a1daa15fa20878d3")
            },
        ),
        (
            "rfc2047_subject.eml",
            MessageFeatures {
                subject: Some("Rechnung für März (dringend)".into()),
                from_domain: Some("muenchen-mail.example".into()),
                x_mailer: Some("Leaf PHPMailer 2.8".into()),
                body_simhash: hash("e9b189ff2a7a5d24"),
                ..nothing("78155d24492eea109963e5a8f442dd0d2370610737f56aaa75bc99411d177440")
            },
        ),
        (
            "base64_body.eml",
            MessageFeatures {
                subject: Some("Your file".into()),
                from_domain: Some("cdn-files.example".into()),
                body_base64_bytes: 4100,
                ..nothing("6e1347087f1099acfcc763510c4ceb6d6902ca14f2de1dd93204163cc5317589")
            },
        ),
        (
            "plain_dkim_pass.eml",
            MessageFeatures {
                subject: Some("Your order 1043 has shipped".into()),
                from_domain: Some("shop.example".into()),
                return_path_domain: Some("shop.example".into()),
                x_mailer: Some("ShopMailer 3.1".into()),
                dkim_signed: true,
                spf_pass: true,
                dkim_signature_present: true,
                auth_results_present: true,
                urls: strings(&["https://shop.example/track/1043"]),
                body_simhash: hash("9465c03408f97268"),
                ..nothing("7f909c72c80379730acf1d79c0dfc02000389fb3278fb7f49ca4448b846bc86f")
            },
        ),
        (
            "unparseable.eml",
            nothing("5ff9cc8eedd5c2080033e25a29079ddc2ee0af53cc504a501ba33c08c8f6b947"),
        ),
        (
            "no_text_part.eml",
            MessageFeatures {
                subject: Some("Scan".into()),
                from_domain: Some("printers.example".into()),
                // The PDF and an empty attachment-disposed part; the unnamed PNG is inline.
                attachment_count: 2,
                attachment_sha256s: strings(&[
                    "92d4ef0d3bd81e9fe82b0920b20e8b02e81b98e79377609929b388ee763e7db5",
                ]),
                attachment_extensions: strings(&[".pdf"]),
                ..nothing("67755f5aabbcb4dd568a806bf7a05953ccc4ce759ffa632c296731bb0c013c20")
            },
        ),
        (
            "zip_bomb.eml",
            with_attachment(
                "157d8561d0b80e597272fb562c5ca439ef8185998dd3bf08fae4e0e72f78befb",
                "Archive",
                "bomb.example",
                "161dbb85f28c536d5093aa7bbf26771a0b40bc2e53ab96d90770bed308c12ae7",
                ".zip",
            ),
        ),
        (
            "forwarded.eml",
            MessageFeatures {
                urls: strings(&["http://inner.example/x", "http://inner.example/y"]),
                body_simhash: hash("2000492900dc8423"),
                ..with_attachment(
                    "a1db5745f91db3ee110aeef2cab00633a8d65e8b5e4e9eebb8b6cc69c585ab97",
                    "Fwd: original",
                    "outer.example",
                    "f7a2182081a5956879415fab0d673e723838856a8a31d17ad0c891291d21617d",
                    ".lnk",
                )
            },
        ),
    ]
}

#[test]
fn every_field_of_every_corpus_message() {
    let mut failures = Vec::new();
    for (name, expected) in cases() {
        let actual = analyse(&corpus(name));
        if actual != expected {
            failures.push(format!(
                "{name}:\n  expected {expected:?}\n  actual   {actual:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_corpus_readme_lists_exactly_the_corpus_files() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".eml"))
        .collect();
    on_disk.sort();
    let mut in_cases: Vec<String> = cases().into_iter().map(|(n, _)| n.to_owned()).collect();
    in_cases.sort();
    assert_eq!(on_disk, in_cases);
    for name in &on_disk {
        assert!(
            readme.contains(&format!("`{name}`")),
            "README.md does not list {name}"
        );
    }
}

#[test]
fn body_text_of_corpus_messages() {
    let bec = body_text(&corpus("bec.eml")).unwrap();
    assert!(bec.starts_with("Hi Anna,\r\n\r\nI need you to send a wire transfer today"));
    assert!(bec.contains("Please update banking details for the vendor"));
    assert!(bec.contains("confidential"));

    // HTML only: reduced to text, scripts and styles gone, entities decoded.
    assert_eq!(
        body_text(&corpus("idn_url.eml")).as_deref(),
        Some(
            "Your parcel is waiting.\u{a0}Confirm delivery at this link or help.\
             Thanks & regards, Parcel team 2025\r\n"
        )
    );
    // Transfer-decoded and read as lossy UTF-8 whatever the declared charset.
    assert_eq!(
        body_text(&corpus("rfc2047_subject.eml")).as_deref(),
        Some(
            "Sehr geehrte Damen und Herren, anbei die Rechnung f\u{fffd}r M\u{fffd}rz.\r\n\
             Bitte zahlen Sie bis Freitag.\r\n"
        )
    );
    assert_eq!(body_text(&corpus("no_text_part.eml")), None);
    assert_eq!(body_text(&corpus("unparseable.eml")), None);
}

#[test]
fn simhash_hex_of_a_corpus_body() {
    let features = analyse(&corpus("bec.eml"));
    assert_eq!(
        features.body_simhash.map(simhash_hex).as_deref(),
        Some("700006a3136e1788")
    );
}

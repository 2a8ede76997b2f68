//! The `Username` newtype: the one normalisation and the naming rules every
//! path (`user add`, the store, sign-in) goes through.
//!
//! Usernames used to be compared twice, differently: sign-in folded case with
//! Unicode rules and the store looked them up with SQLite's ASCII-only
//! `NOCASE`, so `Ölaf` could never sign in and `ÉMILE` reached a different
//! account than `émile`. Now a name is normalised once, here, and everything
//! downstream compares the normalised bytes exactly.

use std::fmt;
use std::str::FromStr;

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};
use unicode_script::{Script, UnicodeScript};
use unicode_security::{GeneralSecurityProfile, MixedScript};

/// Punctuation allowed besides letters and digits: enough for `first.last`,
/// `first-last`, `first_last` and e-mail addresses, and nothing that could
/// be mistaken for a separator in a log line or a URL path.
const PUNCTUATION: [char; 4] = ['.', '-', '_', '@'];

/// A validated, normalised username: Unicode NFC, then full Unicode
/// lowercase (then NFC again, since lowercasing can leave a string that is not
/// composed). Two spellings that a person would call the same name (`ÖLAF`,
/// `Ölaf`, `O` + combining diaeresis + `laf`) become the same `Username`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);

/// Which naming rule a username breaks. The `Display` text is shown to the
/// admin running `user add` and names the rule (and the character) so it can
/// be fixed without guessing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    #[error("a username cannot be empty")]
    Empty,
    #[error("a username can be at most {max} characters long (this one has {len})")]
    TooLong { max: usize, len: usize },
    #[error("a username cannot contain whitespace (found {})", describe(*.found))]
    Whitespace { found: char },
    #[error(
        "a username cannot contain control or invisible formatting characters \
         (found {})",
        describe(*.found)
    )]
    ControlOrFormat { found: char },
    #[error(
        "a username can contain only letters, digits and . - _ @ (found {})",
        describe(*.found)
    )]
    NotAllowed { found: char },
    #[error(
        "a username cannot contain {}: Unicode does not recommend it in \
         identifiers (UTS #39), often because it looks like a more common character",
        describe(*.found)
    )]
    NotRecommended { found: char },
    #[error(
        "a username cannot mix scripts ({}), because it could then look exactly like \
         another name",
        .scripts.join(" and ")
    )]
    MixedScripts { scripts: Vec<&'static str> },
}

/// `'x' (U+0078)`: the character itself may be invisible, so always give its
/// code point too.
fn describe(c: char) -> String {
    if c.is_control() || c.is_whitespace() || c.general_category() == GeneralCategory::Format {
        format!("U+{:04X}", u32::from(c))
    } else {
        format!("'{c}' (U+{:04X})", u32::from(c))
    }
}

impl Username {
    /// The longest username, counted in characters (Unicode scalar values)
    /// after normalisation. Long enough for an e-mail address as a login name,
    /// short enough that a name fits on the reviewer's inbox row.
    pub const MAX_CHARS: usize = 64;

    /// Normalises `input` and checks every naming rule, in this order (the
    /// first broken one is reported): not empty, not too long, no whitespace,
    /// no control or format characters, only letters / digits / `. - _ @`,
    /// only characters UTS #39 recommends for identifiers, and one script.
    ///
    /// Leading and trailing whitespace is not trimmed: a name typed with a
    /// stray space is refused rather than silently changed, so that what the
    /// admin sees in the error is what was typed.
    pub fn parse(input: &str) -> Result<Self, UsernameError> {
        let name = normalise(input);
        if name.is_empty() {
            return Err(UsernameError::Empty);
        }
        let len = name.chars().count();
        if len > Self::MAX_CHARS {
            return Err(UsernameError::TooLong {
                max: Self::MAX_CHARS,
                len,
            });
        }
        if let Some(found) = name.chars().find(|c| c.is_whitespace()) {
            return Err(UsernameError::Whitespace { found });
        }
        if let Some(found) = name.chars().find(|c| {
            matches!(
                c.general_category(),
                GeneralCategory::Control | GeneralCategory::Format
            )
        }) {
            return Err(UsernameError::ControlOrFormat { found });
        }
        check_characters(&name)?;
        check_single_script(&name)?;
        Ok(Self(name))
    }

    /// The normalised name: what the store keeps and compares byte for byte.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The normalised name, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// NFC, full lowercase, NFC. The second NFC makes `parse` idempotent: a few
/// lowercase mappings (`İ` → `i` + U+0307) produce sequences that a second
/// composition pass may change.
fn normalise(input: &str) -> String {
    let composed: String = input.nfc().collect();
    composed.to_lowercase().nfc().collect()
}

/// Letters, combining marks that follow a letter, decimal digits and the
/// allowed punctuation; and every letter or mark must be one UTS #39 allows in
/// identifiers. The second rule refuses fullwidth `ａｄｍｉｎ`, mathematical
/// `𝐚𝐝𝐦𝐢𝐧` and letters of historic scripts, which are letters but exist
/// mostly to look like others.
fn check_characters(name: &str) -> Result<(), UsernameError> {
    let mut after_letter = false;
    for c in name.chars() {
        if PUNCTUATION.contains(&c) {
            after_letter = false;
            continue;
        }
        let allowed = match c.general_category_group() {
            GeneralCategoryGroup::Letter => {
                after_letter = true;
                true
            }
            // Marks carry vowels and viramas in Indic scripts, accents not
            // composed by NFC elsewhere; alone they would decorate digits or
            // punctuation, which no real name needs.
            GeneralCategoryGroup::Mark => after_letter,
            GeneralCategoryGroup::Number => {
                after_letter = false;
                c.general_category() == GeneralCategory::DecimalNumber
            }
            _ => false,
        };
        if !allowed {
            return Err(UsernameError::NotAllowed { found: c });
        }
        if !c.identifier_allowed() {
            return Err(UsernameError::NotRecommended { found: c });
        }
    }
    Ok(())
}

/// UTS #39 mixed-script detection: the resolved script set of the whole name
/// must not be empty. Common and Inherited characters (digits, `.`, `-`, `_`,
/// `@`, most combining marks) belong to every script, and Han mixes with kana
/// or Hangul as the Japanese and Korean writing systems do, so `hans.müller`,
/// `田中.たろう` and `jürgen2` pass while `pаypal` with a Cyrillic `а` does not.
fn check_single_script(name: &str) -> Result<(), UsernameError> {
    if name.is_single_script() {
        return Ok(());
    }
    let mut scripts: Vec<&'static str> = Vec::new();
    for c in name.chars() {
        let script = c.script();
        if matches!(script, Script::Common | Script::Inherited | Script::Unknown) {
            continue;
        }
        let script = script.full_name();
        if !scripts.contains(&script) {
            scripts.push(script);
        }
    }
    Err(UsernameError::MixedScripts { scripts })
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Username {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for Username {
    type Err = UsernameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for Username {
    type Error = UsernameError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Username {
    type Error = UsernameError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

/// Serialised as the normalised string, so JSON and the ledger show the
/// same bytes the store compares.
impl serde::Serialize for Username {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_CHARS: usize = Username::MAX_CHARS;

    fn ok(s: &str) -> String {
        Username::parse(s)
            .unwrap_or_else(|e| panic!("{s:?} should be accepted: {e}"))
            .into_string()
    }

    fn err(s: &str) -> UsernameError {
        match Username::parse(s) {
            Ok(u) => panic!("{s:?} should be refused, got {u:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn case_and_composition_fold_to_one_name() {
        assert_eq!(ok("Ölaf"), "ölaf");
        assert_eq!(ok("ÖLAF"), "ölaf");
        assert_eq!(ok("ölaf"), "ölaf");
        // O + U+0308 COMBINING DIAERESIS, the decomposed spelling.
        assert_eq!(ok("O\u{0308}LAF"), "ölaf");
        assert_eq!(ok("ÉMILE"), "émile");
        assert_eq!(ok("E\u{0301}MILE"), "émile");
        assert_eq!(ok("e\u{0301}mile"), "émile");
        // The normalised form is composed: one code point for é.
        assert_eq!(ok("E\u{0301}MILE").chars().count(), 5);
        assert_eq!(ok("Alice"), "alice");
        assert_eq!(ok("ΟΔΥΣΣΕΥΣ"), "οδυσσευς");
        assert_eq!(ok("ДМИТРИЙ"), "дмитрий");
    }

    #[test]
    fn parse_is_idempotent_on_its_output() {
        for s in [
            "Ölaf",
            "E\u{0301}MILE",
            "İstanbul",
            "ΟΔΥΣΣΕΥΣ",
            "Jürgen.Groß",
            "田中.たろう",
            "देवनागरी",
            "first.last@example.com",
        ] {
            let once = ok(s);
            assert_eq!(ok(&once), once, "{s}");
        }
    }

    #[test]
    fn real_names_in_many_scripts_pass() {
        for s in [
            "alice",
            "bob_2",
            "first.last",
            "first-last",
            "first.last@example.com",
            "jürgen.groß",
            "łukasz",
            "søren",
            "дмитрий",
            "γιώργος",
            "田中.たろう",
            "김민준",
            "देवनागरी",
            "محمد",
            "İstanbul",
            "007",
        ] {
            ok(s);
        }
    }

    #[test]
    fn empty_is_refused() {
        assert_eq!(err(""), UsernameError::Empty);
        assert!(err("").to_string().contains("empty"));
    }

    #[test]
    fn length_is_counted_in_characters_after_normalisation() {
        let max = "a".repeat(MAX_CHARS);
        assert_eq!(ok(&max), max);
        assert_eq!(
            err(&"a".repeat(MAX_CHARS + 1)),
            UsernameError::TooLong {
                max: MAX_CHARS,
                len: MAX_CHARS + 1
            }
        );
        // 64 decomposed é are 128 code points but 64 characters once composed.
        let decomposed = "e\u{0301}".repeat(MAX_CHARS);
        assert_eq!(ok(&decomposed).chars().count(), MAX_CHARS);
        assert!(err(&"a".repeat(100)).to_string().contains("at most 64"));
    }

    #[test]
    fn whitespace_is_refused_and_named() {
        for s in [
            " alice",
            "alice ",
            "al ice",
            "al\tice",
            "al\u{00A0}ice",
            "al\u{3000}ice",
        ] {
            assert!(matches!(err(s), UsernameError::Whitespace { .. }), "{s:?}");
        }
        let msg = err("al\u{00A0}ice").to_string();
        assert!(
            msg.contains("whitespace") && msg.contains("U+00A0"),
            "{msg}"
        );
    }

    #[test]
    fn control_and_format_characters_are_refused() {
        for (s, c) in [
            ("al\u{200D}ice", '\u{200D}'), // zero-width joiner
            ("al\u{200B}ice", '\u{200B}'), // zero-width space (Cf)
            ("al\u{202E}ice", '\u{202E}'), // right-to-left override
            ("al\u{00AD}ice", '\u{00AD}'), // soft hyphen
            ("al\u{0000}ice", '\u{0000}'),
            ("al\u{007F}ice", '\u{007F}'),
            ("al\u{FEFF}ice", '\u{FEFF}'),
        ] {
            assert_eq!(err(s), UsernameError::ControlOrFormat { found: c }, "{s:?}");
        }
        let msg = err("al\u{200D}ice").to_string();
        assert!(
            msg.contains("control or invisible") && msg.contains("U+200D"),
            "{msg}"
        );
    }

    #[test]
    fn only_letters_digits_and_four_punctuation_marks() {
        for (s, c) in [
            ("al/ice", '/'),
            ("al:ice", ':'),
            ("al+ice", '+'),
            ("alice!", '!'),
            ("al'ice", '\''),
            ("a\u{2024}b", '\u{2024}'), // ONE DOT LEADER, looks like '.'
            ("a\u{2010}b", '\u{2010}'), // HYPHEN, looks like '-'
            ("ali😀", '😀'),
            ("x²", '²'),
            ("\u{0301}alice", '\u{0301}'), // a mark with no letter to sit on
            ("1\u{20E3}", '\u{20E3}'),     // a keycap on a digit
        ] {
            assert_eq!(err(s), UsernameError::NotAllowed { found: c }, "{s:?}");
        }
        let msg = err("al/ice").to_string();
        assert!(msg.contains("only letters, digits and . - _ @"), "{msg}");
        assert!(msg.contains("'/' (U+002F)"), "{msg}");
    }

    #[test]
    fn lookalike_letters_not_recommended_for_identifiers_are_refused() {
        // Fullwidth and mathematical letters are letters, but NFC keeps them,
        // and they are built to look like ASCII.
        assert!(matches!(
            err("ａｄｍｉｎ"),
            UsernameError::NotRecommended { found: 'ａ' }
        ));
        assert!(matches!(
            err("\u{1D41A}dmin"),
            UsernameError::NotRecommended { .. }
        ));
        let msg = err("ａｄｍｉｎ").to_string();
        assert!(msg.contains("UTS #39"), "{msg}");
    }

    #[test]
    fn mixed_scripts_are_refused_and_named() {
        // 'а' is CYRILLIC SMALL LETTER A.
        let e = err("p\u{0430}ypal");
        assert_eq!(
            e,
            UsernameError::MixedScripts {
                scripts: vec!["Latin", "Cyrillic"]
            }
        );
        let msg = e.to_string();
        assert!(msg.contains("mix scripts (Latin and Cyrillic)"), "{msg}");
        // Greek omicron in a Latin name.
        assert!(matches!(
            err("r\u{03BF}ot"),
            UsernameError::MixedScripts { .. }
        ));
        // Common characters do not count as a script.
        ok("dmitry.2024@example.com");
        ok("дмитрий.2024");
    }

    #[test]
    fn display_serde_and_conversions_show_the_normalised_name() {
        let u = Username::parse("ÖLAF").unwrap();
        assert_eq!(u.as_str(), "ölaf");
        assert_eq!(u.to_string(), "ölaf");
        assert_eq!(serde_json::to_string(&u).unwrap(), "\"ölaf\"");
        assert_eq!("Ölaf".parse::<Username>().unwrap(), u);
        assert_eq!(Username::try_from("O\u{0308}laf").unwrap(), u);
        assert_eq!(Username::try_from(String::from("ölaf")).unwrap(), u);
    }
}

//! Text that users type (reasons, tickets, review notes) shown to other people: which
//! characters hide or reorder text, and how reports show such text without letting it act.
//!
//! The API refuses invisible and bidi characters at input (`engine::check_text`); the renderers
//! here still mark them visibly, for anything stored before that rule or reaching a report
//! another way.

/// The name of a character that is invisible or changes how the text around it is displayed
/// (bidi controls and marks, zero-width characters, fillers, tags and other Unicode format
/// characters, line/paragraph separators); `None` for every other character.
pub fn invisible(c: char) -> Option<&'static str> {
    Some(match c {
        '\u{00AD}' => "SOFT HYPHEN",
        '\u{034F}' => "COMBINING GRAPHEME JOINER",
        '\u{061C}' => "ARABIC LETTER MARK",
        '\u{0600}'..='\u{0605}'
        | '\u{06DD}'
        | '\u{070F}'
        | '\u{0890}'
        | '\u{0891}'
        | '\u{08E2}' => "FORMAT CHARACTER",
        '\u{115F}' => "HANGUL CHOSEONG FILLER",
        '\u{1160}' => "HANGUL JUNGSEONG FILLER",
        '\u{17B4}' | '\u{17B5}' => "KHMER INHERENT VOWEL",
        '\u{180B}'..='\u{180F}' => "MONGOLIAN FORMAT CHARACTER",
        '\u{200B}' => "ZERO WIDTH SPACE",
        '\u{200C}' => "ZERO WIDTH NON-JOINER",
        '\u{200D}' => "ZERO WIDTH JOINER",
        '\u{200E}' => "LEFT-TO-RIGHT MARK",
        '\u{200F}' => "RIGHT-TO-LEFT MARK",
        '\u{2028}' => "LINE SEPARATOR",
        '\u{2029}' => "PARAGRAPH SEPARATOR",
        '\u{202A}' => "LEFT-TO-RIGHT EMBEDDING",
        '\u{202B}' => "RIGHT-TO-LEFT EMBEDDING",
        '\u{202C}' => "POP DIRECTIONAL FORMATTING",
        '\u{202D}' => "LEFT-TO-RIGHT OVERRIDE",
        '\u{202E}' => "RIGHT-TO-LEFT OVERRIDE",
        '\u{2060}' => "WORD JOINER",
        '\u{2061}'..='\u{2064}' => "INVISIBLE OPERATOR",
        '\u{2066}' => "LEFT-TO-RIGHT ISOLATE",
        '\u{2067}' => "RIGHT-TO-LEFT ISOLATE",
        '\u{2068}' => "FIRST STRONG ISOLATE",
        '\u{2069}' => "POP DIRECTIONAL ISOLATE",
        '\u{206A}'..='\u{206F}' => "DEPRECATED FORMAT CHARACTER",
        '\u{3164}' => "HANGUL FILLER",
        '\u{FEFF}' => "ZERO WIDTH NO-BREAK SPACE",
        '\u{FFA0}' => "HALFWIDTH HANGUL FILLER",
        '\u{FFF9}'..='\u{FFFB}' => "INTERLINEAR ANNOTATION CHARACTER",
        '\u{110BD}' | '\u{110CD}' => "KAITHI NUMBER SIGN",
        '\u{13430}'..='\u{1343F}' => "EGYPTIAN HIEROGLYPH FORMAT CHARACTER",
        '\u{1BCA0}'..='\u{1BCA3}' => "SHORTHAND FORMAT CHARACTER",
        '\u{1D173}'..='\u{1D17A}' => "MUSICAL SYMBOL FORMAT CHARACTER",
        '\u{E0001}' | '\u{E0020}'..='\u{E007F}' => "TAG CHARACTER",
        _ => return None,
    })
}

/// `U+202E`.
pub fn code_point(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

/// Whether a renderer must show `c` as a visible code point instead of the character.
fn hidden(c: char) -> bool {
    (c.is_control() && c != '\n') || invisible(c).is_some()
}

/// One line of plain text: a newline becomes `␤`, a tab a space, and every control,
/// invisible or bidi character its code point in angle brackets (`<U+202E>`).
pub fn plain(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => o.push('␤'),
            '\t' => o.push(' '),
            c if hidden(c) => {
                o.push('<');
                o.push_str(&code_point(c));
                o.push('>');
            }
            c => o.push(c),
        }
    }
    o
}

/// ASCII punctuation that means something in (GitHub-flavoured) Markdown in the middle of a
/// line: emphasis, code, links and images, HTML and entities, table cells, strikethrough,
/// math, and `\` itself. (Line-start syntax such as `#`, `-` or `1.` cannot occur: a value
/// never starts a line, since newlines are shown as `␤`.)
const MD_SPECIAL: &str = "\\`*_{}[]()<>#!|~&$";

/// A value as inert Markdown text on one line: [`plain`], then every Markdown metacharacter
/// backslash-escaped (CommonMark allows escaping any ASCII punctuation).
pub fn md(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 8);
    for c in plain(s).chars() {
        if MD_SPECIAL.contains(c) {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

/// A value as a Markdown code span inside a table cell: [`plain`], `|` escaped (GFM splits
/// cells before it parses code), delimited by more backticks than the value's longest run.
pub fn md_code(s: &str) -> String {
    let text = plain(s).replace('|', "\\|");
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    format!("{fence} {text} {fence}")
}

/// HTML text: `&`, `<`, `>`, `"` and `'` as entities.
pub fn html(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_characters_are_named() {
        for c in [
            '\u{202A}',
            '\u{202E}',
            '\u{2066}',
            '\u{2069}',
            '\u{200E}',
            '\u{200F}',
            '\u{061C}',
            '\u{200B}',
            '\u{200D}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{E0041}',
            '\u{2028}',
        ] {
            assert!(invisible(c).is_some(), "{}", code_point(c));
        }
        assert_eq!(invisible('\u{202E}'), Some("RIGHT-TO-LEFT OVERRIDE"));
        for c in ['a', 'é', 'ß', '—', '日', '\u{FE0F}', '😀'] {
            assert_eq!(invisible(c), None, "{}", code_point(c));
        }
    }

    #[test]
    fn markdown_values_stay_inert_on_one_line() {
        let forged = "ok\n\n## Review\n| verdict | appropriate |";
        assert_eq!(
            md(forged),
            "ok␤␤\\#\\# Review␤\\| verdict \\| appropriate \\|"
        );
        assert_eq!(
            md("[Approve](https://evil.example) <b>&amp; `x` *y*"),
            "\\[Approve\\]\\(https://evil.example\\) \\<b\\>\\&amp; \\`x\\` \\*y\\*"
        );
        assert_eq!(md("abc\u{202E}def"), "abc\\<U+202E\\>def");
        assert_eq!(md("INC-4711, orders."), "INC-4711, orders.");
        assert_eq!(plain("a\u{202E}b\tc\u{7}"), "a<U+202E>b c<U+0007>");
        assert_eq!(md_code("a|b"), "` a\\|b `");
        assert_eq!(md_code("x``y"), "``` x``y ```");
        assert_eq!(
            html("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
    }
}

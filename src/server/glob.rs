//! Redis-compatible glob matching for `SCAN ... MATCH` (case-sensitive) and
//! `CONFIG GET` (case-insensitive).
//!
//! Semantics are those of Redis's `stringmatchlen` (util.c), quirks included:
//! - `*` any run of bytes, `?` one byte, `\x` the byte `x` literally;
//! - `[abc]`, `[^abc]`, `[a-z]` (a reversed range `[z-a]` works too), `\`
//!   escapes inside a class; an unterminated class (`[abc`) ends the pattern;
//!   a trailing lone `\` matches a literal backslash;
//! - the empty string matches only the empty pattern (Redis even answers
//!   false for `*` against `""`; its SCAN skips matching for a bare `*`, so
//!   the SCAN executor should do the same).
//!
//! Unlike Redis's recursive matcher (which gives up past 1000 nested stars)
//! this one is iterative: one backtrack point, the last `*` seen, which is
//! enough because every other token matches exactly one byte. Time is
//! O(pattern * string), stack is O(1).

/// Whether `string` matches glob `pattern`, byte for byte.
pub fn glob_match(pattern: &[u8], string: &[u8]) -> bool {
    matches(pattern, string, false)
}

/// Whether `string` matches glob `pattern`, ignoring ASCII case.
pub fn glob_match_nocase(pattern: &[u8], string: &[u8]) -> bool {
    matches(pattern, string, true)
}

fn matches(pattern: &[u8], string: &[u8], nocase: bool) -> bool {
    if string.is_empty() {
        return pattern.is_empty();
    }
    let mut p = 0;
    let mut s = 0;
    // After the last `*`: (pattern index past it, string index it resumes at).
    let mut backtrack: Option<(usize, usize)> = None;
    loop {
        if s == string.len() {
            // Trailing stars match the empty rest; backtracking cannot help
            // once the string is used up.
            while pattern.get(p) == Some(&b'*') {
                p += 1;
            }
            return p == pattern.len();
        }
        if pattern.get(p) == Some(&b'*') {
            while pattern.get(p) == Some(&b'*') {
                p += 1;
            }
            if p == pattern.len() {
                return true;
            }
            backtrack = Some((p, s));
            continue;
        }
        let byte = string.get(s).copied().unwrap_or(0);
        if p < pattern.len() {
            let (matched, next) = match_token(pattern, p, byte, nocase);
            if matched {
                p = next;
                s += 1;
                continue;
            }
        }
        match backtrack {
            Some((after_star, from)) => {
                // Let the star swallow one more byte and retry.
                backtrack = Some((after_star, from + 1));
                p = after_star;
                s = from + 1;
            }
            None => return false,
        }
    }
}

/// Matches the single-byte token at `pattern[p]` (not a `*`) against
/// `byte`; returns whether it matched and where the next token starts.
fn match_token(pattern: &[u8], p: usize, byte: u8, nocase: bool) -> (bool, usize) {
    let fold = |b: u8| if nocase { b.to_ascii_lowercase() } else { b };
    match pattern.get(p).copied().unwrap_or(0) {
        b'?' => (true, p + 1),
        b'[' => match_class(pattern, p + 1, byte, nocase),
        b'\\' if p + 1 < pattern.len() => {
            let literal = pattern.get(p + 1).copied().unwrap_or(0);
            (fold(literal) == fold(byte), p + 2)
        }
        literal => (fold(literal) == fold(byte), p + 1),
    }
}

/// Matches the class whose body starts at `pattern[q]` (just past `[`).
/// Mirrors Redis, which reads a NUL past the pattern's end.
fn match_class(pattern: &[u8], mut q: usize, byte: u8, nocase: bool) -> (bool, usize) {
    let at = |i: usize| pattern.get(i).copied().unwrap_or(0);
    let fold = |b: u8| if nocase { b.to_ascii_lowercase() } else { b };
    let left = |i: usize| pattern.len().saturating_sub(i);
    let negate = at(q) == b'^';
    if negate {
        q += 1;
    }
    let mut matched = false;
    loop {
        if at(q) == b'\\' && left(q) >= 2 {
            q += 1;
            matched |= fold(at(q)) == fold(byte);
        } else if at(q) == b']' {
            break;
        } else if left(q) == 0 {
            // Unterminated class: the pattern ends here.
            return (matched != negate, pattern.len());
        } else if left(q) >= 3 && at(q + 1) == b'-' {
            let (mut low, mut high) = (at(q), at(q + 2));
            if low > high {
                std::mem::swap(&mut low, &mut high);
            }
            let (low, high, c) = (fold(low), fold(high), fold(byte));
            matched |= low <= c && c <= high;
            q += 2;
        } else {
            matched |= fold(at(q)) == fold(byte);
        }
        q += 1;
    }
    (matched != negate, q + 1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Straight port of Redis's recursive `stringmatchlen_impl` (without the
    /// skip-longer-matches shortcut), reading NUL past the pattern's end.
    fn reference(pattern: &[u8], string: &[u8], nocase: bool) -> bool {
        let at = |i: usize| pattern.get(i).copied().unwrap_or(0);
        let fold = |b: u8| if nocase { b.to_ascii_lowercase() } else { b };
        let (mut p, mut s) = (0usize, 0usize);
        while p < pattern.len() && s < string.len() {
            let c = string[s];
            match at(p) {
                b'*' => {
                    while p + 1 < pattern.len() && at(p + 1) == b'*' {
                        p += 1;
                    }
                    if p + 1 == pattern.len() {
                        return true;
                    }
                    return (s..string.len())
                        .any(|from| reference(&pattern[p + 1..], &string[from..], nocase));
                }
                b'?' => s += 1,
                b'[' => {
                    let (ok, next) = match_class(pattern, p + 1, c, nocase);
                    if !ok {
                        return false;
                    }
                    p = next - 1;
                    s += 1;
                }
                b'\\' if pattern.len() - p >= 2 => {
                    p += 1;
                    if fold(at(p)) != fold(c) {
                        return false;
                    }
                    s += 1;
                }
                lit => {
                    if fold(lit) != fold(c) {
                        return false;
                    }
                    s += 1;
                }
            }
            p += 1;
            if s == string.len() {
                while at(p) == b'*' && p < pattern.len() {
                    p += 1;
                }
                break;
            }
        }
        p == pattern.len() && s == string.len()
    }

    #[test]
    fn known_redis_cases() {
        for (pattern, string, expected) in [
            ("*", "anything", true),
            ("*", "", false),
            ("", "", true),
            ("", "a", false),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h*llo", "hllo", true),
            ("h*llo", "heeeello", true),
            ("h[ae]llo", "hello", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[b-a]llo", "hallo", true),
            ("h[a-b]llo", "hcllo", false),
            ("h\\*llo", "h*llo", true),
            ("h\\*llo", "hello", false),
            ("[\\]]", "]", true),
            ("[abc", "b", true),
            ("[abc", "bx", false),
            ("[", "a", false),
            ("[^", "a", true),
            ("a\\", "a\\", true),
            ("a*", "a", true),
            ("a*b*", "ab", true),
            ("*a*b", "xaxxb", true),
            ("*a*b", "xaxxbc", false),
            ("user:*:name", "user:42:name", true),
            ("user:*:name", "user:42:email", false),
        ] {
            assert_eq!(
                glob_match(pattern.as_bytes(), string.as_bytes()),
                expected,
                "{pattern:?} vs {string:?}"
            );
        }
    }

    #[test]
    fn nocase_for_config_get() {
        assert!(glob_match_nocase(b"MAXMEMORY*", b"maxmemory-policy"));
        assert!(glob_match_nocase(b"[A-C]x", b"bX"));
        assert!(!glob_match(b"MAXMEMORY*", b"maxmemory-policy"));
    }

    #[test]
    fn many_stars_neither_overflow_nor_explode() {
        let pattern = [b"*a".repeat(5000), b"b".to_vec()].concat();
        let string = vec![b'a'; 20_000];
        assert!(!glob_match(&pattern, &string));
        let stars = vec![b'*'; 1_000_000];
        assert!(glob_match(&stars, b"x"));
    }

    fn glob_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(b"ab*?[]^-\\".to_vec()), 0..10)
    }

    fn text_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(b"abAB*?[]\\-".to_vec()), 0..10)
    }

    proptest! {
        #[test]
        fn agrees_with_recursive_reference(
            pattern in glob_bytes(),
            string in text_bytes(),
            nocase in any::<bool>(),
        ) {
            prop_assert_eq!(
                matches(&pattern, &string, nocase),
                reference(&pattern, &string, nocase)
            );
        }

        #[test]
        fn literal_matches_itself_and_stars_find_it(
            needle in prop::collection::vec(b'a'..=b'z', 1..8),
            before in prop::collection::vec(any::<u8>(), 0..8),
            after in prop::collection::vec(any::<u8>(), 0..8),
        ) {
            prop_assert!(glob_match(&needle, &needle));
            let pattern = [b"*".as_slice(), &needle, b"*"].concat();
            let haystack = [before.as_slice(), &needle, &after].concat();
            prop_assert!(glob_match(&pattern, &haystack));
        }

        #[test]
        fn arbitrary_input_never_panics(
            pattern in prop::collection::vec(any::<u8>(), 0..20),
            string in prop::collection::vec(any::<u8>(), 0..20),
        ) {
            let _ = glob_match(&pattern, &string);
            let _ = glob_match_nocase(&pattern, &string);
        }
    }
}

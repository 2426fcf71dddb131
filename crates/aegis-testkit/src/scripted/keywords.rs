//! Keyword parsing for the scripted agent: a prompt's text decides what the turn does.
//!
//! Keywords are whole words, matched case-insensitively after trimming surrounding
//! punctuation (so `"Think,"` matches `think` but `rethink` does not). The phrase
//! `rate limit` (also `rate-limit` / `rate_limit`) is matched as a substring.
//! `write <file>` takes the next word as the file name; `bash <command…>` takes the
//! rest of its line as the command, and words inside that command are not keywords.

/// Default number of chunks for `slow`.
pub const SLOW_DEFAULT_CHUNKS: usize = 50;
/// Upper bound for `slow:N`.
pub const SLOW_MAX_CHUNKS: usize = 100_000;

/// What one prompt asks the scripted agent to do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Script {
    pub think: bool,
    pub plan: bool,
    /// `slow` / `slow:N`: number of chunks to stream.
    pub slow: Option<usize>,
    /// `write <filename>`.
    pub write: Option<String>,
    /// `bash <command words>`.
    pub bash: Option<String>,
    pub read: bool,
    pub usage: bool,
    pub title: bool,
    pub commands: bool,
    pub unknown_update: bool,
    pub stderr: bool,
    pub crash: bool,
    pub garbage: bool,
    pub rate_limit: bool,
    pub fail: bool,
    pub hang: bool,
    pub spawn_child: bool,
}

/// Characters trimmed from both ends of a word before keyword comparison.
const PUNCT: &[char] = &[
    '.', ',', ';', ':', '!', '?', '"', '\'', '`', '(', ')', '[', ']', '{', '}', '<', '>',
];

/// Characters trimmed from a `write` file name.
const NAME_PUNCT: &[char] = &[',', ';', ':', '!', '?', '"', '\'', '`', '(', ')', '[', ']'];

/// Split a line into words with their byte offsets.
fn words(line: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in line.char_indices() {
        if c.is_whitespace() {
            if let Some(s) = start.take() {
                out.push((s, &line[s..i]));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push((s, &line[s..]));
    }
    out
}

fn parse_slow(word: &str) -> Option<usize> {
    if word == "slow" {
        return Some(SLOW_DEFAULT_CHUNKS);
    }
    let n = word.strip_prefix("slow:")?;
    Some(
        n.parse::<usize>()
            .map_or(SLOW_DEFAULT_CHUNKS, |n| n.clamp(1, SLOW_MAX_CHUNKS)),
    )
}

/// Parse a prompt's text into a [`Script`].
#[must_use]
pub fn parse(text: &str) -> Script {
    let mut s = Script::default();
    let lower = text.to_lowercase();
    s.rate_limit = ["rate limit", "rate-limit", "rate_limit"]
        .iter()
        .any(|p| lower.contains(p));

    for line in text.lines() {
        let ws = words(line);
        let mut i = 0;
        while i < ws.len() {
            let (offset, raw) = ws[i];
            let word = raw.trim_matches(PUNCT).to_lowercase();
            match word.as_str() {
                "bash" => {
                    let rest = line[offset + raw.len()..].trim();
                    if !rest.is_empty() {
                        if s.bash.is_none() {
                            s.bash = Some(rest.to_string());
                        }
                        // The rest of the line is the command, not keywords.
                        break;
                    }
                }
                "write" => {
                    if let Some((_, name)) = ws.get(i + 1) {
                        let name = name
                            .trim_start_matches(NAME_PUNCT)
                            .trim_end_matches(|c| NAME_PUNCT.contains(&c) || c == '.');
                        if !name.is_empty() {
                            if s.write.is_none() {
                                s.write = Some(name.to_string());
                            }
                            i += 1;
                        }
                    }
                }
                "think" => s.think = true,
                "plan" => s.plan = true,
                "read" => s.read = true,
                "usage" => s.usage = true,
                "title" => s.title = true,
                "commands" => s.commands = true,
                "unknown-update" => s.unknown_update = true,
                "stderr" => s.stderr = true,
                "crash" => s.crash = true,
                "garbage" => s.garbage = true,
                "fail" => s.fail = true,
                "hang" => s.hang = true,
                "spawn-child" => s.spawn_child = true,
                other => {
                    if let Some(n) = parse_slow(other) {
                        s.slow.get_or_insert(n);
                    }
                }
            }
            i += 1;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_default() {
        assert_eq!(parse("Hello there, explain rethinking"), Script::default());
    }

    #[test]
    fn keywords_are_case_insensitive_words() {
        let s = parse("Please THINK, then Plan. usage! title commands");
        assert!(s.think && s.plan && s.usage && s.title && s.commands);
        assert!(!s.read);
    }

    #[test]
    fn slow_variants() {
        assert_eq!(parse("slow").slow, Some(SLOW_DEFAULT_CHUNKS));
        assert_eq!(parse("go slow:7 now").slow, Some(7));
        assert_eq!(parse("slow:abc").slow, Some(SLOW_DEFAULT_CHUNKS));
        assert_eq!(parse("slow:0").slow, Some(1));
    }

    #[test]
    fn write_takes_next_word() {
        assert_eq!(
            parse("write out.txt please").write.as_deref(),
            Some("out.txt")
        );
        assert_eq!(parse("Write \"x\".").write.as_deref(), Some("x"));
        assert_eq!(parse("write").write, None);
    }

    #[test]
    fn bash_takes_rest_of_line() {
        let s = parse("think\nbash echo hello > out.txt | read x\nplan");
        assert_eq!(s.bash.as_deref(), Some("echo hello > out.txt | read x"));
        assert!(s.think && s.plan && !s.read);
    }

    #[test]
    fn phrases_and_dashed_keywords() {
        let s = parse("hit the Rate Limit; unknown-update spawn-child");
        assert!(s.rate_limit && s.unknown_update && s.spawn_child);
        assert!(parse("rate-limit").rate_limit);
    }
}

//! Resolving a client-supplied path to a regular file under the served root, so that neither a
//! `..` component, an absolute path nor a symbolic link can reach a file outside it.

use std::io;
use std::path::{Component, Path, PathBuf};

/// Longest relative path accepted, in bytes; longer names are refused before touching the disk.
pub(crate) const MAX_PATH_LEN: usize = 1024;

/// Why a requested path was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum PathError {
    /// No root directory is served.
    #[error("no root directory is served")]
    NoRoot,
    /// The path is empty or names the root itself.
    #[error("path is empty")]
    Empty,
    /// The path is longer than [`MAX_PATH_LEN`].
    #[error("path is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    /// The path has a `..` component, is absolute, or holds a NUL or a backslash.
    #[error("path leaves the served root")]
    Traversal,
    /// A `%` escape is malformed or decodes to invalid UTF-8.
    #[error("path has an invalid percent-escape")]
    BadEscape,
    /// No regular file exists at the path.
    #[error("no such file")]
    NotFound,
    /// The path exists but resolves, through a symbolic link, outside the root.
    #[error("path resolves outside the served root")]
    OutsideRoot,
    /// The file system failed while resolving the path.
    #[error("file system error")]
    Io(#[source] io::Error),
}

/// Resolves `relative` (a `/`-separated path, already percent-decoded) to a regular file under
/// `root`, which must be canonical. Returns the canonical file path.
pub(crate) async fn resolve(root: Option<&Path>, relative: &str) -> Result<PathBuf, PathError> {
    let root = root.ok_or(PathError::NoRoot)?;
    let relative = check_relative(relative)?;
    let candidate = root.join(relative);
    let canonical = match tokio::fs::canonicalize(&candidate).await {
        Ok(path) => path,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Err(PathError::NotFound),
        Err(err) => return Err(PathError::Io(err)),
    };
    // A symbolic link inside the root may point anywhere; only the canonical path tells.
    if !canonical.starts_with(root) {
        return Err(PathError::OutsideRoot);
    }
    let metadata = tokio::fs::metadata(&canonical)
        .await
        .map_err(PathError::Io)?;
    if !metadata.is_file() {
        return Err(PathError::NotFound);
    }
    Ok(canonical)
}

/// The lexical checks: only normal components, no NUL, no backslash (a separator elsewhere).
fn check_relative(relative: &str) -> Result<&Path, PathError> {
    if relative.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    if relative.contains(['\0', '\\']) {
        return Err(PathError::Traversal);
    }
    let trimmed = relative.trim_start_matches('/');
    if trimmed.is_empty() {
        return Err(PathError::Empty);
    }
    let path = Path::new(trimmed);
    for component in path.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(PathError::Traversal);
            }
        }
    }
    Ok(path)
}

/// Decodes `%XX` escapes of a URL path. `+` is left alone (it means a space only in queries).
pub(crate) fn percent_decode(raw: &str) -> Result<String, PathError> {
    if !raw.contains('%') {
        return Ok(raw.to_owned());
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(PathError::BadEscape)?;
            let hi = hex_digit(hex[0]).ok_or(PathError::BadEscape)?;
            let lo = hex_digit(hex[1]).ok_or(PathError::BadEscape)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| PathError::BadEscape)
}

/// Encodes `path` for a service line: every byte but ASCII letters, digits, `-._~` and `/` as
/// `%XX`, so that [`percent_decode`] gives `path` back and the result holds no space.
pub(crate) fn percent_encode(path: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(path.len());
    for &byte in path.as_bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
    }
    out
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_checks_reject_escapes_from_the_root() {
        assert!(check_relative("a/b.txt").is_ok());
        assert!(check_relative("/a/./b.txt").is_ok());
        for bad in ["../etc/passwd", "a/../../b", "a\\..\\b", "a\0b"] {
            assert!(
                matches!(check_relative(bad), Err(PathError::Traversal)),
                "{bad}"
            );
        }
        assert!(matches!(check_relative("/"), Err(PathError::Empty)));
        let long = "a".repeat(MAX_PATH_LEN + 1);
        assert!(matches!(check_relative(&long), Err(PathError::TooLong)));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("/a%20b").unwrap(), "/a b");
        assert_eq!(percent_decode("/%2e%2E/x").unwrap(), "/../x");
        assert!(matches!(percent_decode("/%2"), Err(PathError::BadEscape)));
        assert!(matches!(percent_decode("/%zz"), Err(PathError::BadEscape)));
        assert!(matches!(percent_decode("/%ff"), Err(PathError::BadEscape)));
    }

    #[test]
    fn percent_encoding_round_trips() {
        for path in ["a/b.bin", "a b/%x+é.bin", "dir/über 1.txt"] {
            let encoded = percent_encode(path);
            assert!(!encoded.contains(' '), "{encoded}");
            assert_eq!(percent_decode(&encoded).unwrap(), path);
        }
        assert_eq!(percent_encode("a b/c"), "a%20b/c");
    }

    #[tokio::test]
    async fn resolve_finds_files_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let root = tokio::fs::canonicalize(dir.path()).await.unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/f.txt"), b"x").unwrap();
        let found = resolve(Some(&root), "/sub/f.txt").await.unwrap();
        assert_eq!(found, root.join("sub/f.txt"));
        assert!(matches!(
            resolve(Some(&root), "sub").await,
            Err(PathError::NotFound)
        ));
        assert!(matches!(
            resolve(Some(&root), "nope").await,
            Err(PathError::NotFound)
        ));
        assert!(matches!(
            resolve(None, "sub/f.txt").await,
            Err(PathError::NoRoot)
        ));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn resolve_refuses_a_symlink_out_of_the_root() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = tokio::fs::canonicalize(dir.path()).await.unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("link")).unwrap();
        assert!(matches!(
            resolve(Some(&root), "link").await,
            Err(PathError::OutsideRoot)
        ));
    }
}

//! Reading a small file that holds secrets (BMC credentials, a become
//! password) without hanging or leaking: the path is checked (a regular
//! file, small, readable by its owner only) before it is opened, it is
//! opened non-blocking so a FIFO swapped in meanwhile cannot block the
//! open, and the opened file is checked again before a byte is read.
//!
//! Owns those checks. It must not parse the content or quote it in errors.

use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Why a secret file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("{0}")]
    Io(#[from] io::Error),
    /// Group or other permission bits are set (the mode, masked to 0o777).
    #[error("readable by others (mode {0:04o})")]
    OthersCanRead(u32),
    /// A FIFO, device, directory or socket.
    #[error("not a regular file")]
    NotRegular,
    #[error("larger than {0} bytes")]
    TooLarge(u64),
}

/// The file's content, at most `max` bytes, after the checks above.
pub fn read(path: &Path, max: u64) -> Result<String, SecretFileError> {
    check(&std::fs::metadata(path)?, max)?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    // The path may have been swapped between the check and the open.
    check(&file.metadata()?, max)?;
    let mut bytes = Vec::new();
    (&mut file).take(max).read_to_end(&mut bytes)?;
    String::from_utf8(bytes).map_err(|_| SecretFileError::Io(io::Error::other("not UTF-8 text")))
}

fn check(meta: &std::fs::Metadata, max: u64) -> Result<(), SecretFileError> {
    if !meta.is_file() {
        return Err(SecretFileError::NotRegular);
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretFileError::OthersCanRead(mode));
    }
    if meta.len() > max {
        return Err(SecretFileError::TooLarge(max));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("creds");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a node.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(read(&fifo, 64), Err(SecretFileError::NotRegular)));
        let open = dir.path().join("open");
        std::fs::write(&open, "u:p\n").expect("write");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            read(&open, 64),
            Err(SecretFileError::OthersCanRead(0o644))
        ));
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(read(&open, 64).ok().as_deref(), Some("u:p\n"));
        assert!(matches!(read(&open, 2), Err(SecretFileError::TooLarge(2))));
    }
}

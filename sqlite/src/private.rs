//! The store's files hold every message in clear, so each one it creates is readable and
//! writable by the service user only (0600) whatever the process umask, and one it finds
//! looser (made by an earlier version, or opened up by hand) is tightened, with a
//! warning, when the store opens it.
//!
//! SQLite creates the `-wal` and `-shm` files with the permissions of the database file,
//! so creating that file 0600 before SQLite opens it covers them; the ones an earlier
//! process left are tightened before SQLite opens them. Append log segments are created
//! here. The store creates no directory.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

#[cfg(unix)]
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

/// Read and write for the owner only.
#[cfg(unix)]
const MODE: u32 = 0o600;

/// Open options that create a file 0600 (a umask can only take bits away from it).
pub(crate) fn options() -> OpenOptions {
    #[cfg_attr(not(unix), allow(unused_mut))]
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    options.mode(MODE);
    options
}

/// Sets `file` (found at `path`) to 0600 if it is anything else, warning when group or
/// others could reach it.
pub(crate) fn restrict(file: &File, path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let mode = file.metadata()?.permissions().mode() & 0o7777;
        if mode != MODE {
            file.set_permissions(std::fs::Permissions::from_mode(MODE))?;
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), was = %format!("{mode:04o}"),
                    "file was open to group or others: set to 0600");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (file, path);
    Ok(())
}

/// Creates the file at `path` 0600 if it is missing, and sets it to 0600 if it exists.
pub(crate) fn create(path: &Path) -> io::Result<()> {
    let file = options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    restrict(&file, path)
}

/// Sets the file at `path` to 0600 if it exists.
pub(crate) fn restrict_existing(path: &Path) -> io::Result<()> {
    match File::open(path) {
        Ok(file) => restrict(&file, path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn created_files_are_0600_and_looser_ones_are_tightened() {
        let dir = tempfile::tempdir().unwrap();
        // GIVEN a missing file and one left 0644
        let fresh = dir.path().join("fresh");
        let loose = dir.path().join("loose");
        std::fs::write(&loose, b"kept").unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();

        // WHEN both are created, and a missing file restricted
        create(&fresh).unwrap();
        create(&loose).unwrap();
        restrict_existing(&dir.path().join("missing")).unwrap();

        // THEN both are 0600, the old one keeps its content, and nothing else appeared
        assert_eq!(mode(&fresh), 0o600);
        assert_eq!(mode(&loose), 0o600);
        assert_eq!(std::fs::read(&loose).unwrap(), b"kept");
        assert!(!dir.path().join("missing").exists());
    }
}

//! One daemon per data folder. A second twofoldd started on the same folder (a manual run beside the
//! service, a second unit) must stop before it touches anything: sled would refuse the store, but only
//! after the second daemon had loaded the master key, and with an OS error for a message. The folder's
//! lock file is taken first, and holds the pid of the daemon holding it, so the refusal can name it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result};

/// Held for the daemon's life; the kernel lets go of the lock when the file closes (also on a crash).
#[derive(Debug)]
pub struct DataFolderLock {
    _file: File,
}

/// Takes the data folder for this process, or says which daemon has it.
pub fn lock(dir: &Path) -> Result<DataFolderLock> {
    let path = dir.join("twofoldd.lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(in_use(dir, holder.trim()));
        }
        Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
    }
    let pid = format!("{}\n", std::process::id());
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(pid.as_bytes()))
        .map_err(|e| Error::io(&path, e))?;
    Ok(DataFolderLock { _file: file })
}

fn in_use(dir: &Path, holder: &str) -> Error {
    let who = match holder.parse::<u32>() {
        Ok(pid) => format!("twofoldd (pid {pid})"),
        Err(_) => "another twofoldd".to_owned(),
    };
    Error::Conflict(format!(
        "data folder {} is in use by {who}: stop it first, or give this daemon another data_dir",
        dir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder_and_the_first_release_frees_the_folder() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("twofold-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let first = lock(&dir)?;
        let refused = lock(&dir).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            refused.contains(&format!("in use by twofoldd (pid {})", std::process::id())),
            "{refused}"
        );
        drop(first);
        let again = lock(&dir);
        assert!(again.is_ok(), "{again:?}");
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}

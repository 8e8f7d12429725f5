//! Keys and the primitives that protect stored secrets.
//!
//! - TOTP seeds are sealed with XChaCha20-Poly1305 under the master key, with the owning user and device ids
//!   as associated data, so a sealed seed copied onto another device record does not open.
//! - Backup codes (50 bits each) are below the 112 bits at which NIST allows a fast hash, so they are kept
//!   as argon2id hashes. One salt per set lets a guess be hashed once and compared with every code.
//! - API keys are 256-bit random values: SHA-256 is enough, and checking one costs microseconds.
//! - Every comparison of a secret value is constant-time.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{Error, Result, StoreError};

pub const MASTER_KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;
/// systemd `LoadCredential=master-key:...` puts the key here.
pub const MASTER_KEY_CREDENTIAL: &str = "master-key";
/// The master key, wiped from memory when dropped.
pub type MasterKey = Zeroizing<[u8; MASTER_KEY_BYTES]>;

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    OsRng.fill_bytes(&mut out);
    out
}

/// Picks an index below `n` without modulo bias.
pub(crate) fn random_below(n: u32) -> u32 {
    let zone = u32::MAX - (u32::MAX % n);
    loop {
        let v = OsRng.next_u32();
        if v < zone {
            return v % n;
        }
    }
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

pub fn sha256_hex(data: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(data))
}

/// Seals and opens secrets under the master key.
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    pub fn new(key: &[u8; MASTER_KEY_BYTES]) -> Self {
        SecretBox {
            cipher: XChaCha20Poly1305::new(key.into()),
        }
    }

    /// nonce || ciphertext+tag
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>> {
        let nonce: [u8; NONCE_BYTES] = random_bytes();
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .map_err(|_| Error::Crypto("seal failed".into()))?;
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The plaintext, wiped from memory when dropped.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_BYTES {
            return Err(Error::Crypto("sealed value too short".into()));
        }
        let (nonce, body) = sealed.split_at(NONCE_BYTES);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: context,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| Error::Crypto("sealed value does not open with this master key".into()))
    }
}

/// Where the master key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeySource {
    /// `[store] master_key_file`.
    Configured(PathBuf),
    /// The systemd credential `master-key` (`LoadCredential=`, from `/etc/credstore`).
    Credential(PathBuf),
    /// `master.key` in the data folder: beside the store it protects.
    DataFolder(PathBuf),
}

/// Loads the master key, in this order: the configured file (created when absent); the systemd
/// credential `master-key` in `credentials` (`$CREDENTIALS_DIRECTORY`), which the daemon can only
/// read; `master.key` in the data folder, created on a first start that finds no key anywhere.
///
/// A key in the data folder is kept apart from nothing: a copy of the folder holds the seeds and the
/// key that opens them. It keeps working (existing installs), with a warning saying how to move it.
/// A credential and a data-folder key that differ are refused: the store was sealed under one of them,
/// and guessing which would fail every verification or hide the other key.
pub fn load_master_key(
    configured: Option<&Path>,
    data_dir: &Path,
    credentials: Option<&Path>,
) -> Result<(MasterKey, MasterKeySource)> {
    if let Some(path) = configured {
        return Ok((
            load_or_create_master_key(path, false)?,
            MasterKeySource::Configured(path.to_owned()),
        ));
    }
    let in_data = data_dir.join("master.key");
    let credential = credentials
        .map(|dir| dir.join(MASTER_KEY_CREDENTIAL))
        .filter(|p| p.exists());
    if let Some(credential) = credential {
        let key = load_or_create_master_key(&credential, true)?;
        if in_data.exists() {
            let old = load_or_create_master_key(&in_data, false)?;
            if !constant_time_eq(old.as_slice(), key.as_slice()) {
                return Err(Error::Crypto(format!(
                    "two different master keys: the systemd credential {MASTER_KEY_CREDENTIAL} and {}; keep the one the store was sealed with (the other fails every TOTP check) and remove the other",
                    in_data.display()
                )));
            }
            tracing::warn!(
                old = %in_data.display(),
                "the master key comes from the systemd credential; its old copy in the data folder is the same key: delete it once the credential is backed up"
            );
        }
        return Ok((key, MasterKeySource::Credential(credential)));
    }
    let key = load_or_create_master_key(&in_data, false)?;
    tracing::warn!(
        path = %in_data.display(),
        "the master key is in the data folder, beside the store it protects: keep it apart with `install -m 0600 -o root {} /etc/credstore/twofold.master-key`, restart twofoldd (the unit loads it as the credential master-key), check it starts, then delete the copy in the data folder; back the key up apart from the data",
        in_data.display()
    );
    Ok((key, MasterKeySource::DataFolder(in_data)))
}

/// Reads the master key, creating it (mode 0600, never overwritten) when absent.
/// A key file readable by group or others is refused: it protects every seed. A credential is exempt:
/// systemd decides its mode and it is readable by the service alone.
fn load_or_create_master_key(path: &Path, credential: bool) -> Result<MasterKey> {
    match std::fs::read(path).map(Zeroizing::new) {
        Ok(bytes) => {
            let mode = std::fs::metadata(path)
                .map_err(|e| Error::io(path, e))?
                .permissions()
                .mode();
            if !credential && mode & 0o077 != 0 {
                return Err(Error::Crypto(format!(
                    "{}: master key must not be readable by group or others (mode {:o}); chmod 600 it",
                    path.display(),
                    mode & 0o777
                )));
            }
            let mut key = Zeroizing::new([0u8; MASTER_KEY_BYTES]);
            if bytes.len() != MASTER_KEY_BYTES {
                return Err(Error::Crypto(format!(
                    "{}: master key must be exactly {MASTER_KEY_BYTES} bytes",
                    path.display()
                )));
            }
            key.copy_from_slice(&bytes);
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !credential => {
            let mut key = Zeroizing::new([0u8; MASTER_KEY_BYTES]);
            OsRng.fill_bytes(key.as_mut_slice());
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| Error::io(path, e))?;
            file.write_all(key.as_slice())
                .map_err(|e| Error::io(path, e))?;
            file.sync_all().map_err(|e| Error::io(path, e))?;
            tracing::info!(path = %path.display(), "created a new master key");
            Ok(key)
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Alphabet of backup codes: Crockford's base32 (no i, l, o, u), so codes read out over a phone survive.
pub(crate) const BACKUP_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
pub const BACKUP_CODE_CHARS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Argon2Cost {
    pub memory_kib: u32,
    pub iterations: u32,
}

/// A set of backup codes as stored: one salt, the cost it was hashed with, and one hash per code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupCodeSet {
    pub salt: String,
    pub cost: Argon2Cost,
    /// base64 of each code's argon2id hash; `None` once used.
    pub hashes: Vec<Option<String>>,
    pub created: i64,
}

impl BackupCodeSet {
    /// Makes `count` fresh codes; returns the stored form and the codes to show once.
    pub fn generate(
        count: u8,
        cost: Argon2Cost,
        now: i64,
        memory: &mut HashMemory,
    ) -> Result<(BackupCodeSet, Vec<String>)> {
        let salt: [u8; 16] = random_bytes();
        let mut codes = Vec::with_capacity(count.into());
        let mut hashes = Vec::with_capacity(count.into());
        for _ in 0..count {
            let raw: String = (0..BACKUP_CODE_CHARS)
                .map(|_| char::from(BACKUP_ALPHABET[random_below(32) as usize]))
                .collect();
            let hash = argon2id(raw.as_bytes(), &salt, cost, memory)?;
            hashes.push(Some(data_encoding::BASE64.encode(&hash)));
            codes.push(format!("{}-{}", &raw[..5], &raw[5..]));
        }
        let set = BackupCodeSet {
            salt: data_encoding::BASE64.encode(&salt),
            cost,
            hashes,
            created: now,
        };
        Ok((set, codes))
    }

    pub fn remaining(&self) -> u32 {
        u32::try_from(self.hashes.iter().filter(|h| h.is_some()).count()).unwrap_or(u32::MAX)
    }

    /// Index of the unused code matching `candidate` (already normalised), comparing against every
    /// code in constant time.
    pub fn find(&self, candidate: &str, memory: &mut HashMemory) -> Result<Option<usize>> {
        let salt = data_encoding::BASE64
            .decode(self.salt.as_bytes())
            .map_err(|_| StoreError::corrupt("backup code salt is not base64"))?;
        let guess = argon2id(candidate.as_bytes(), &salt, self.cost, memory)?;
        let mut found = None;
        for (i, stored) in self.hashes.iter().enumerate() {
            if let Some(stored) = stored {
                let stored = data_encoding::BASE64
                    .decode(stored.as_bytes())
                    .map_err(|_| StoreError::corrupt("backup code hash is not base64"))?;
                if constant_time_eq(&stored, &guess) && found.is_none() {
                    found = Some(i);
                }
            }
        }
        Ok(found)
    }
}

/// A backup code as typed: case and separators do not matter. `None` if it cannot be one.
pub fn normalise_backup_code(input: &str) -> Option<String> {
    let s: String = input
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (s.len() == BACKUP_CODE_CHARS && s.bytes().all(|b| BACKUP_ALPHABET.contains(&b))).then_some(s)
}

/// One secret kept as an argon2id hash with its own salt (a restore code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlowHash {
    pub salt: String,
    pub cost: Argon2Cost,
    pub hash: String,
}

impl SlowHash {
    pub fn new(secret: &str, cost: Argon2Cost, memory: &mut HashMemory) -> Result<SlowHash> {
        let salt: [u8; 16] = random_bytes();
        let hash = argon2id(secret.as_bytes(), &salt, cost, memory)?;
        Ok(SlowHash {
            salt: data_encoding::BASE64.encode(&salt),
            cost,
            hash: data_encoding::BASE64.encode(&hash),
        })
    }

    /// Constant-time comparison of `candidate`'s hash with the stored one.
    pub fn matches(&self, candidate: &str, memory: &mut HashMemory) -> Result<bool> {
        let salt = data_encoding::BASE64
            .decode(self.salt.as_bytes())
            .map_err(|_| StoreError::corrupt("hash salt is not base64"))?;
        let stored = data_encoding::BASE64
            .decode(self.hash.as_bytes())
            .map_err(|_| StoreError::corrupt("hash is not base64"))?;
        let guess = argon2id(candidate.as_bytes(), &salt, self.cost, memory)?;
        Ok(constant_time_eq(&stored, &guess))
    }
}

/// Runs argon2 work (backup and restore codes) off the async workers, at most `size` hashes at a time,
/// each in memory of its own that the pool keeps for the next: argon2 needs `argon2_memory_kib` (19 MiB
/// by default) per hash, and 64 parallel requests took the daemon from 80 MB to 1.3 GB. So the memory
/// for hashing is `size` times the cost, whatever the allocator makes of memory freed by many threads
/// (a semaphore alone still left 806 MiB, measured). Requests beyond the bound wait for a turn. One
/// turn per core: more would only share the cores, not finish sooner.
pub struct HashPool {
    turns: Arc<tokio::sync::Semaphore>,
    memories: Arc<Mutex<Vec<HashMemory>>>,
}

/// Memory for argon2, reused from one hash to the next (argon2 overwrites every block it uses).
#[derive(Default)]
pub struct HashMemory(Vec<argon2::Block>);

impl HashMemory {
    fn blocks(&mut self, count: usize) -> &mut [argon2::Block] {
        if self.0.len() < count {
            self.0.resize(count, argon2::Block::default());
        }
        &mut self.0[..count]
    }
}

/// A turn in the `HashPool`, with its memory. A verification takes it before it asks the lockout, so
/// that a request that queued behind a flood of guesses sees the failures counted while it waited.
pub struct HashTurn {
    memory: HashMemory,
    memories: Arc<Mutex<Vec<HashMemory>>>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl HashPool {
    pub fn new(size: usize) -> HashPool {
        HashPool {
            turns: Arc::new(tokio::sync::Semaphore::new(size.max(1))),
            memories: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// A pool with one turn per core the daemon may use.
    pub fn per_core() -> HashPool {
        HashPool::new(std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get))
    }

    pub async fn turn(&self) -> Result<HashTurn> {
        let permit = self
            .turns
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Crypto("the hash pool is closed".into()))?;
        let memory = self
            .memories
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default();
        Ok(HashTurn {
            memory,
            memories: self.memories.clone(),
            _permit: permit,
        })
    }

    /// Waits for a turn and runs `work` in it.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut HashMemory) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.turn().await?.run(work).await
    }
}

impl HashTurn {
    /// Runs `work` on the blocking threads. The turn ends when the work does, even when the request
    /// that asked for it was dropped meanwhile (a client that hung up): the memory is in use until then.
    pub async fn run<T: Send + 'static>(
        mut self,
        work: impl FnOnce(&mut HashMemory) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        tokio::task::spawn_blocking(move || work(&mut self.memory))
            .await
            .map_err(|e| Error::Crypto(format!("hash task: {e}")))?
    }
}

impl Drop for HashTurn {
    /// The memory goes back to the pool before the turn does.
    fn drop(&mut self) {
        let memory = std::mem::take(&mut self.memory);
        self.memories
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(memory);
    }
}

fn argon2id(
    secret: &[u8],
    salt: &[u8],
    cost: Argon2Cost,
    memory: &mut HashMemory,
) -> Result<[u8; 32]> {
    let params = argon2::Params::new(cost.memory_kib, cost.iterations, 1, Some(32))
        .map_err(|e| Error::Crypto(format!("argon2 parameters: {e}")))?;
    let blocks = params.block_count();
    let hasher = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; 32];
    hasher
        .hash_password_into_with_memory(secret, salt, &mut out, memory.blocks(blocks))
        .map_err(|e| Error::Crypto(format!("argon2: {e}")))?;
    Ok(out)
}

/// A new API key: `tfk_` and 43 base64url characters (256 bits). Returns (key, stored hash).
pub fn new_api_key() -> (String, String) {
    let bytes: [u8; 32] = random_bytes();
    let key = format!("tfk_{}", data_encoding::BASE64URL_NOPAD.encode(&bytes));
    let hash = sha256_hex(key.as_bytes());
    (key, hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: Argon2Cost = Argon2Cost {
        memory_kib: 1024,
        iterations: 1,
    };

    #[test]
    fn sealed_seed_opens_only_with_its_context() -> Result<()> {
        let b = SecretBox::new(&random_bytes());
        let sealed = b.seal(b"seed", b"user1/dev1")?;
        assert_eq!(b.open(&sealed, b"user1/dev1")?.as_slice(), b"seed");
        assert!(b.open(&sealed, b"user1/dev2").is_err());
        let other = SecretBox::new(&random_bytes());
        assert!(other.open(&sealed, b"user1/dev1").is_err());
        Ok(())
    }

    #[test]
    fn backup_codes_match_once_each_and_nothing_else() -> Result<()> {
        let memory = &mut HashMemory::default();
        let (set, codes) = BackupCodeSet::generate(10, CHEAP, 0, memory)?;
        assert_eq!(codes.len(), 10);
        for (i, code) in codes.iter().enumerate() {
            let n = normalise_backup_code(&code.to_uppercase()).unwrap_or_default();
            assert_eq!(set.find(&n, memory)?, Some(i));
        }
        assert_eq!(set.find("0000000000", memory)?, None);
        assert!(normalise_backup_code("123456").is_none());
        assert!(
            normalise_backup_code("abcde-fghiL").is_none(),
            "l is not in the alphabet"
        );
        Ok(())
    }

    #[test]
    fn master_key_created_0600_and_group_readable_refused() -> Result<()> {
        let dir = std::env::temp_dir().join(format!(
            "tf-key-{}",
            data_encoding::HEXLOWER.encode(&random_bytes::<6>())
        ));
        let path = dir.join("master.key");
        let key = load_or_create_master_key(&path, false)?;
        let mode = std::fs::metadata(&path)
            .map_err(|e| Error::io(&path, e))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create_master_key(&path, false)?, key);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640))
            .map_err(|e| Error::io(&path, e))?;
        assert!(load_or_create_master_key(&path, false).is_err());
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn the_master_key_comes_from_the_credential_before_the_data_folder() -> Result<()> {
        let root = std::env::temp_dir().join(format!(
            "tf-keys-{}",
            data_encoding::HEXLOWER.encode(&random_bytes::<6>())
        ));
        let (data, credentials) = (root.join("data"), root.join("credentials"));
        for dir in [&data, &credentials] {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let write = |path: &Path, byte: u8| -> Result<()> {
            std::fs::write(path, [byte; MASTER_KEY_BYTES]).map_err(|e| Error::io(path, e))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| Error::io(path, e))
        };
        let credential = credentials.join(MASTER_KEY_CREDENTIAL);
        let in_data = data.join("master.key");
        let configured = root.join("configured.key");

        // No key anywhere, no credential folder: a new key in the data folder.
        let (created, source) = load_master_key(None, &data, None)?;
        assert_eq!(source, MasterKeySource::DataFolder(in_data.clone()));
        // A credential folder without the key (the unit's LoadCredential= found no file): the
        // data folder's key keeps being used.
        let (kept, source) = load_master_key(None, &data, Some(&credentials))?;
        assert_eq!(
            (kept, source),
            (
                created.clone(),
                MasterKeySource::DataFolder(in_data.clone())
            )
        );
        // The same key as a credential: the credential is used.
        std::fs::copy(&in_data, &credential).map_err(|e| Error::io(&credential, e))?;
        let (from_credential, source) = load_master_key(None, &data, Some(&credentials))?;
        assert_eq!(source, MasterKeySource::Credential(credential.clone()));
        assert_eq!(from_credential, created);
        // A different credential: refused, naming both.
        write(&credential, 9)?;
        let refused = load_master_key(None, &data, Some(&credentials)).map(|_| ());
        assert!(
            matches!(&refused, Err(Error::Crypto(m)) if m.contains("two different master keys")),
            "{refused:?}"
        );
        // Once the old copy is gone, the credential alone.
        std::fs::remove_file(&in_data).map_err(|e| Error::io(&in_data, e))?;
        let (key, source) = load_master_key(None, &data, Some(&credentials))?;
        assert_eq!(
            (*key, source),
            (
                [9; MASTER_KEY_BYTES],
                MasterKeySource::Credential(credential.clone())
            )
        );
        assert!(!in_data.exists(), "nothing created beside the store");
        // A configured file wins over both, and is created when absent.
        let (_, source) = load_master_key(Some(&configured), &data, Some(&credentials))?;
        assert_eq!(source, MasterKeySource::Configured(configured.clone()));
        let _ = std::fs::remove_dir_all(&root);
        Ok(())
    }
}

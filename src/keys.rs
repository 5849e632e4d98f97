//! WireGuard key files: generated like `wg genkey`, stored 0600, never logged.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use mesh_core::wg::Key;

/// A new private key from the kernel's random source, clamped as Curve25519
/// (and `wg genkey`) does.
pub fn generate() -> io::Result<Key> {
    let mut k = [0u8; 32];
    File::open("/dev/urandom")?.read_exact(&mut k)?;
    k[0] &= 248;
    k[31] &= 127;
    k[31] |= 64;
    Ok(Key(k))
}

pub fn public_key(private: &Key) -> Key {
    mesh_core::wg::boring::public_key(private)
}

/// Reads the private key at `path`, creating it (mode 0600, parent 0700) when
/// it does not exist yet. A key file others may read is refused.
pub fn load_or_create(path: &Path) -> io::Result<Key> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let mode = fs::metadata(path)?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "{}: private key readable by others (mode {:o}); run: chmod 600 {}",
                        path.display(),
                        mode & 0o777,
                        path.display()
                    ),
                ));
            }
            text.trim().parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: not a WireGuard private key (44 characters of base64)",
                        path.display()
                    ),
                )
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                if !dir.as_os_str().is_empty() && !dir.exists() {
                    fs::create_dir_all(dir)?;
                    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
                }
            }
            let key = generate()?;
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            f.write_all(format!("{key}\n").as_bytes())?;
            f.sync_all()?;
            log::info!("created a new private key in {}", path.display());
            Ok(key)
        }
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_file_is_private_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("meshd-keys-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let path = dir.join("sub").join("private.key");
        let k = load_or_create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create(&path).unwrap(), k);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_or_create(&path).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn generated_keys_are_clamped_and_differ() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.0[0] & 7, 0);
        assert_eq!(a.0[31] & 0xc0, 0x40);
    }
}

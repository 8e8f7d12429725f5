//! TOTP (RFC 6238) on top of totp-rs: secrets, `otpauth://` URIs, QR codes, and the check with replay
//! protection.
//!
//! The rule: a code is accepted if it matches a time step within `window` steps of now, and that step is
//! later than the last step accepted for the device. So a code is never accepted twice, nor is an older
//! code after a newer one. The step is persisted before the answer (see `service`), which makes the rule
//! hold across restarts and crashes. Every step in the window is computed and compared in constant time,
//! so timing does not tell which step matched.

use serde::{Deserialize, Serialize};
use totp_rs::{Algorithm, Totp};
use twofold_wire::TotpAlgorithm;

use crate::error::{Error, Result};

/// 160 bits, RFC 4226's recommendation.
pub const SECRET_BYTES: usize = 20;
pub const PERIOD_SECONDS: u64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpParams {
    pub algorithm: TotpAlgorithm,
    pub digits: u8,
    pub period: u64,
}

impl Default for TotpParams {
    /// What Google Authenticator reads: SHA1, 6 digits, 30 s.
    fn default() -> Self {
        TotpParams {
            algorithm: TotpAlgorithm::Sha1,
            digits: 6,
            period: PERIOD_SECONDS,
        }
    }
}

impl TotpParams {
    pub fn new(algorithm: Option<TotpAlgorithm>, digits: Option<u8>) -> Result<Self> {
        let digits = digits.unwrap_or(6);
        if digits != 6 && digits != 8 {
            return Err(Error::invalid("digits must be 6 or 8"));
        }
        Ok(TotpParams {
            algorithm: algorithm.unwrap_or(TotpAlgorithm::Sha1),
            digits,
            period: PERIOD_SECONDS,
        })
    }
}

fn algorithm(a: TotpAlgorithm) -> Algorithm {
    match a {
        TotpAlgorithm::Sha1 => Algorithm::SHA1,
        TotpAlgorithm::Sha256 => Algorithm::SHA256,
        TotpAlgorithm::Sha512 => Algorithm::SHA512,
    }
}

/// A TOTP generator for one secret. Account and issuer only matter for the URI.
pub fn totp(params: TotpParams, secret: &[u8], issuer: &str, account: &str) -> Result<Totp> {
    totp_rs::Builder::new()
        .with_algorithm(algorithm(params.algorithm))
        .with_digits(params.digits)
        .with_step_duration(params.period)
        .with_skew(0)
        .with_secret(secret.to_vec())
        .with_issuer(Some(issuer))
        .with_account_name(account)
        .build()
        .map_err(|e| Error::invalid(format!("TOTP parameters: {e}")))
}

pub fn otpauth_uri(t: &Totp) -> Result<String> {
    t.to_url()
        .map_err(|e| Error::invalid(format!("otpauth URI: {e}")))
}

pub fn base32(secret: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(secret)
}

/// The code for a given time, as an authenticator app shows it.
pub fn code_at(params: TotpParams, secret: &[u8], unix_time: i64) -> Result<String> {
    let t = totp(params, secret, "x", "")?;
    Ok(t.generate(u64::try_from(unix_time).unwrap_or(0))
        .to_string())
}

/// Whether a TOTP check accepted, and for which step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpCheck {
    /// Matched `step`, later than any step used before. `drift` is `step - current step`.
    Accepted {
        step: u64,
        drift: i64,
    },
    /// Matched a step already used (or older than one used).
    Replayed,
    NoMatch,
}

/// Checks `code` against every step in `now ± window`. `last_step` is the last accepted step, if any.
pub fn check(
    params: TotpParams,
    secret: &[u8],
    code: &str,
    now: i64,
    window: u8,
    last_step: Option<u64>,
) -> Result<TotpCheck> {
    let t = totp(params, secret, "x", "")?;
    let current = u64::try_from(now).unwrap_or(0) / params.period;
    let first = current.saturating_sub(window.into());
    let last = current + u64::from(window);
    let mut matched = None;
    for step in first..=last {
        // skew 0: `check` compares exactly this step's code, in constant time.
        if t.check(code, step * params.period).is_some() && matched.is_none() {
            matched = Some(step);
        }
    }
    Ok(match matched {
        None => TotpCheck::NoMatch,
        Some(step) if last_step.is_some_and(|used| step <= used) => TotpCheck::Replayed,
        Some(step) => TotpCheck::Accepted {
            step,
            drift: i64::try_from(step).unwrap_or(0) - i64::try_from(current).unwrap_or(0),
        },
    })
}

/// True when the input has the shape of a TOTP code (6 or 8 digits, spaces ignored).
pub fn looks_like_totp(code: &str) -> Option<String> {
    let digits: String = code.chars().filter(|c| *c != ' ').collect();
    ((digits.len() == 6 || digits.len() == 8) && digits.bytes().all(|b| b.is_ascii_digit()))
        .then_some(digits)
}

/// The QR code of a URI as a PNG.
pub fn qr_png(uri: &str) -> Result<Vec<u8>> {
    let code =
        qrcode::QrCode::new(uri.as_bytes()).map_err(|e| Error::invalid(format!("QR code: {e}")))?;
    let image = code
        .render::<image::Luma<u8>>()
        .min_dimensions(256, 256)
        .build();
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| Error::Crypto(format!("PNG encoding: {e}")))?;
    Ok(png)
}

pub fn qr_svg(uri: &str) -> Result<String> {
    let code =
        qrcode::QrCode::new(uri.as_bytes()).map_err(|e| Error::invalid(format!("QR code: {e}")))?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(256, 256)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B: the seeds are the ASCII strings below, 8 digits.
    const SEED_SHA1: &[u8] = b"12345678901234567890";
    const SEED_SHA256: &[u8] = b"12345678901234567890123456789012";
    const SEED_SHA512: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

    #[test]
    fn rfc6238_test_vectors() -> Result<()> {
        let table: &[(i64, &str, &str, &str)] = &[
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for &(time, sha1, sha256, sha512) in table {
            let p = |a| TotpParams {
                algorithm: a,
                digits: 8,
                period: 30,
            };
            assert_eq!(
                code_at(p(TotpAlgorithm::Sha1), SEED_SHA1, time)?,
                sha1,
                "SHA1 at {time}"
            );
            assert_eq!(
                code_at(p(TotpAlgorithm::Sha256), SEED_SHA256, time)?,
                sha256,
                "SHA256 at {time}"
            );
            assert_eq!(
                code_at(p(TotpAlgorithm::Sha512), SEED_SHA512, time)?,
                sha512,
                "SHA512 at {time}"
            );
        }
        Ok(())
    }

    #[test]
    fn window_replay_and_drift() -> Result<()> {
        let p = TotpParams::default();
        let now = 1_700_000_000;
        let current = (now / 30) as u64;
        let prev = code_at(p, SEED_SHA1, now - 30)?;
        let next = code_at(p, SEED_SHA1, now + 30)?;
        let far = code_at(p, SEED_SHA1, now + 90)?;
        assert_eq!(
            check(p, SEED_SHA1, &prev, now, 1, None)?,
            TotpCheck::Accepted {
                step: current - 1,
                drift: -1
            }
        );
        assert_eq!(
            check(p, SEED_SHA1, &next, now, 1, None)?,
            TotpCheck::Accepted {
                step: current + 1,
                drift: 1
            }
        );
        assert_eq!(check(p, SEED_SHA1, &far, now, 1, None)?, TotpCheck::NoMatch);
        assert_eq!(
            check(p, SEED_SHA1, &prev, now, 0, None)?,
            TotpCheck::NoMatch
        );
        // once step `current` is used, it and every earlier step are replays
        let cur = code_at(p, SEED_SHA1, now)?;
        assert_eq!(
            check(p, SEED_SHA1, &cur, now, 1, Some(current))?,
            TotpCheck::Replayed
        );
        assert_eq!(
            check(p, SEED_SHA1, &prev, now, 1, Some(current))?,
            TotpCheck::Replayed
        );
        assert!(matches!(
            check(p, SEED_SHA1, &next, now, 1, Some(current))?,
            TotpCheck::Accepted { .. }
        ));
        Ok(())
    }

    #[test]
    fn shape_of_codes() {
        assert_eq!(looks_like_totp("123 456").as_deref(), Some("123456"));
        assert_eq!(looks_like_totp("12345678").as_deref(), Some("12345678"));
        assert!(looks_like_totp("1234567").is_none());
        assert!(looks_like_totp("12345a").is_none());
    }
}

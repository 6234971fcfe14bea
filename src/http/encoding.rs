//! Content-Encoding: which coding a response body arrived in, and gzip
//! decoded as the body streams in (LIST answers of big clusters are
//! compressed by API servers that are asked to). A coding kwatchd did not
//! ask for is refused by name rather than misread as JSON.

use std::io::Write;

/// Compressed bytes handed to the inflater at a time: deflate expands at
/// most ~1032:1, so one step adds about 1 MiB at most before the caller's
/// size limit is checked again.
const STEP: usize = 1024;

/// The body's content coding, from the head's `Content-Encoding`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
    /// Anything else (or several codings), as the server named it.
    Other(String),
}

impl Coding {
    /// From the `Content-Encoding` items (`identity` and empty items do
    /// not count).
    pub fn of<'a>(items: impl Iterator<Item = &'a [u8]>) -> Coding {
        let named: Vec<String> = items
            .map(|i| String::from_utf8_lossy(i).trim().to_ascii_lowercase())
            .filter(|i| !i.is_empty() && i != "identity")
            .collect();
        match named.as_slice() {
            [] => Coding::Identity,
            [one] if one == "gzip" || one == "x-gzip" => Coding::Gzip,
            _ => Coding::Other(named.join(", ")),
        }
    }
}

/// A gzip body being decoded.
pub struct Gunzip {
    decoder: flate2::write::GzDecoder<Vec<u8>>,
}

impl std::fmt::Debug for Gunzip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gunzip").finish_non_exhaustive()
    }
}

impl Clone for Gunzip {
    /// A reader is cloned only in tests, before any body byte.
    fn clone(&self) -> Self {
        Gunzip::new()
    }
}

impl Default for Gunzip {
    fn default() -> Self {
        Gunzip::new()
    }
}

impl Gunzip {
    pub fn new() -> Self {
        Gunzip {
            decoder: flate2::write::GzDecoder::new(Vec::new()),
        }
    }

    /// Decodes `input` onto `out` in steps, calling `check` on `out` after
    /// each (a size limit stops a small body that inflates to gigabytes
    /// early). Errors say what is wrong with the gzip data.
    pub fn decode<E>(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        mut check: impl FnMut(&Vec<u8>) -> Result<(), E>,
        bad: impl Fn(String) -> E,
    ) -> Result<(), E> {
        for step in input.chunks(STEP) {
            let mut rest = step;
            while !rest.is_empty() {
                let n = self.decoder.write(rest).map_err(|e| bad(e.to_string()))?;
                if n == 0 {
                    return Err(bad("data after the end of the gzip stream".into()));
                }
                rest = rest.get(n..).unwrap_or_default();
                out.append(self.decoder.get_mut());
                check(out)?;
            }
        }
        Ok(())
    }

    /// The body ended: the rest of the output, and the gzip trailer checked.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        self.decoder
            .try_finish()
            .map_err(|e| format!("the gzip stream is incomplete or its checksum is wrong ({e})"))?;
        out.append(self.decoder.get_mut());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn codings_are_named() {
        let of = |v: &[&str]| Coding::of(v.iter().map(|s| s.as_bytes()));
        assert_eq!(of(&[]), Coding::Identity);
        assert_eq!(of(&["identity", ""]), Coding::Identity);
        assert_eq!(of(&["GZIP"]), Coding::Gzip);
        assert_eq!(of(&["x-gzip"]), Coding::Gzip);
        assert_eq!(of(&["br"]), Coding::Other("br".into()));
        assert_eq!(of(&["gzip", "br"]), Coding::Other("gzip, br".into()));
    }

    #[test]
    fn decodes_in_any_split_and_checks_the_trailer() {
        let data: Vec<u8> = (0..20_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let z = gzip(&data);
        for cut in [1, 7, 1000, z.len()] {
            let mut g = Gunzip::new();
            let mut out = Vec::new();
            for piece in z.chunks(cut) {
                g.decode(piece, &mut out, |_| Ok::<_, String>(()), |e| e)
                    .unwrap();
            }
            g.finish(&mut out).unwrap();
            assert_eq!(out, data, "cut {cut}");
        }
        let mut g = Gunzip::new();
        let mut out = Vec::new();
        g.decode(&z[..z.len() - 4], &mut out, |_| Ok::<_, String>(()), |e| e)
            .unwrap();
        assert!(g.finish(&mut out).unwrap_err().contains("incomplete"));
        let mut g = Gunzip::new();
        let err = g
            .decode(b"not gzip at all", &mut out, |_| Ok::<_, String>(()), |e| e)
            .unwrap_err();
        assert!(!err.is_empty());
    }

    #[test]
    fn a_bomb_is_stopped_by_the_limit_about_a_step_past_it() {
        let z = gzip(&vec![0u8; 64 << 20]);
        assert!(z.len() < 100 << 10, "{}", z.len());
        let mut g = Gunzip::new();
        let mut out = Vec::new();
        let mut peak = 0;
        let r = g.decode(
            &z,
            &mut out,
            |o| {
                peak = peak.max(o.len());
                if o.len() > 1 << 20 {
                    Err("too large".to_owned())
                } else {
                    Ok(())
                }
            },
            |e| e,
        );
        assert_eq!(r.unwrap_err(), "too large");
        assert!(peak <= 3 << 20, "{peak}");
    }
}

//! Compression codecs of v2 record batches, each decoder bounded so that a small batch can never
//! inflate into unbounded memory (a decompression bomb).
//!
//! The codecs follow what Kafka's Java client writes: gzip (level 6), snappy in xerial framing
//! (32 KiB blocks), the LZ4 frame format (64 KiB independent blocks, no checksums) and zstd
//! (level 3). Snappy decoding also accepts raw blocks without framing, as some clients write them.

use std::io::{Read, Write};

use bytes::Bytes;

use super::batch::Compression;
use crate::error::{Error, Result};

/// The magic of snappy-java's stream framing: 0x82 "SNAPPY" 0x00.
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// Magic, then the format version and the minimum compatible version, both i32 1.
const XERIAL_HEADER_BYTES: usize = 16;
/// Uncompressed bytes per xerial block, snappy-java's default.
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;
/// Kafka's default zstd level (`compression.zstd.level`).
const ZSTD_LEVEL: i32 = 3;
/// Kafka's default gzip level (`compression.gzip.level`, zlib's default).
const GZIP_LEVEL: u32 = 6;
/// First output allocation of a streaming decoder, grown by doubling up to the bound.
const INITIAL_OUTPUT_BYTES: usize = 8 * 1024;

/// Decompresses a batch's records section (the bytes after the 61-byte header) into at most
/// `max_bytes` bytes, or fails with [`Error::TooLarge`] whose `size_bytes` is `max_bytes + 1`
/// (the decoder stops there, so the true size is unknown). Undecodable input is
/// [`Error::CorruptBatch`]. Output memory never exceeds `max_bytes`.
pub fn decompress(compression: Compression, data: &[u8], max_bytes: usize) -> Result<Bytes> {
    match compression {
        Compression::None => {
            if data.len() > max_bytes {
                return Err(too_large(data.len(), max_bytes));
            }
            Ok(Bytes::copy_from_slice(data))
        }
        Compression::Gzip => {
            // Java's GZIPInputStream reads concatenated gzip members, so this does too.
            read_bounded(
                flate2::read::MultiGzDecoder::new(data),
                data.len(),
                max_bytes,
                compression,
            )
        }
        Compression::Snappy => snappy_decompress(data, max_bytes),
        Compression::Lz4 => read_bounded(
            lz4_flex::frame::FrameDecoder::new(data),
            data.len(),
            max_bytes,
            compression,
        ),
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(data).map_err(|e| undecodable(compression, &e))?;
            read_bounded(decoder, data.len(), max_bytes, compression)
        }
    }
}

/// Compresses a records section with `compression`, as Kafka's Java client would.
pub fn compress(compression: Compression, data: &[u8]) -> Result<Vec<u8>> {
    let failed = |e: std::io::Error| Error::io(format!("compressing a record batch with {}", compression.name()), e);
    match compression {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => {
            let level = flate2::Compression::new(GZIP_LEVEL);
            let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 2), level);
            encoder.write_all(data).map_err(failed)?;
            encoder.finish().map_err(failed)
        }
        Compression::Snappy => Ok(snappy_compress_xerial(data)),
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut encoder = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::with_capacity(data.len() / 2));
            encoder.write_all(data).map_err(failed)?;
            encoder.finish().map_err(|e| failed(std::io::Error::other(e)))
        }
        Compression::Zstd => zstd::stream::encode_all(data, ZSTD_LEVEL).map_err(failed),
    }
}

/// Reads `reader` to its end into at most `max_bytes` bytes of output.
fn read_bounded<R: Read>(reader: R, input_bytes: usize, max_bytes: usize, compression: Compression) -> Result<Bytes> {
    // The `take` makes the bound hold even if a decoder ignored the buffer length it was given.
    let mut reader = reader.take((max_bytes as u64).saturating_add(1));
    let mut out = Vec::new();
    let mut filled = 0;
    loop {
        if filled == out.len() {
            if out.len() >= max_bytes {
                // The output is full: one more byte means the bound is exceeded.
                let mut probe = [0u8; 1];
                match read_some(&mut reader, &mut probe, compression)? {
                    0 => break,
                    _ => return Err(too_large(max_bytes.saturating_add(1), max_bytes)),
                }
            }
            let next = if out.is_empty() {
                input_bytes.saturating_mul(4).max(INITIAL_OUTPUT_BYTES)
            } else {
                out.len().saturating_mul(2)
            };
            out.resize(next.min(max_bytes), 0);
        }
        match read_some(&mut reader, &mut out[filled..], compression)? {
            0 => break,
            n => filled += n,
        }
    }
    out.truncate(filled);
    Ok(Bytes::from(out))
}

/// One `read`, retried on interruption, with decoder errors as corrupt batches.
fn read_some<R: Read>(reader: &mut R, buf: &mut [u8], compression: Compression) -> Result<usize> {
    loop {
        match reader.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(undecodable(compression, &e)),
        }
    }
}

/// Decodes xerial-framed snappy (what Java writes) or, without the magic, one raw snappy block.
fn snappy_decompress(data: &[u8], max_bytes: usize) -> Result<Bytes> {
    if !data.starts_with(&XERIAL_MAGIC) {
        let mut out = Vec::new();
        snappy_block(data, &mut out, max_bytes)?;
        return Ok(Bytes::from(out));
    }
    if data.len() < XERIAL_HEADER_BYTES {
        return Err(Error::CorruptBatch(format!(
            "xerial snappy header needs {XERIAL_HEADER_BYTES} bytes, the records section has {}",
            data.len()
        )));
    }
    let mut out = Vec::new();
    let mut pos = XERIAL_HEADER_BYTES;
    while pos < data.len() {
        let Some(len_bytes) = data.get(pos..pos + 4) else {
            return Err(Error::CorruptBatch(format!(
                "xerial snappy block length at byte {pos} is truncated"
            )));
        };
        let block_bytes = i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        let start = pos + 4;
        let end = usize::try_from(block_bytes)
            .ok()
            .and_then(|n| start.checked_add(n))
            .filter(|&end| end <= data.len());
        let Some(end) = end else {
            return Err(Error::CorruptBatch(format!(
                "xerial snappy block at byte {pos} declares {block_bytes} bytes, only {} remain",
                data.len() - start
            )));
        };
        snappy_block(&data[start..end], &mut out, max_bytes)?;
        pos = end;
    }
    Ok(Bytes::from(out))
}

/// Appends the decoding of one raw snappy block to `out`, keeping `out` within `max_bytes`.
fn snappy_block(block: &[u8], out: &mut Vec<u8>, max_bytes: usize) -> Result<()> {
    let corrupt = |e: snap::Error| Error::CorruptBatch(format!("snappy records section does not decompress: {e}"));
    let len = snap::raw::decompress_len(block).map_err(corrupt)?;
    let total = out.len().saturating_add(len);
    if total > max_bytes {
        return Err(too_large(total, max_bytes));
    }
    let start = out.len();
    out.reserve_exact(len);
    out.resize(total, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(corrupt)?;
    out.truncate(start + written);
    Ok(())
}

/// Compresses in xerial framing with 32 KiB blocks, as snappy-java's `SnappyOutputStream` does.
fn snappy_compress_xerial(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(XERIAL_HEADER_BYTES + snap::raw::max_compress_len(data.len()));
    out.extend_from_slice(&XERIAL_MAGIC);
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    let mut encoder = snap::raw::Encoder::new();
    for chunk in data.chunks(XERIAL_BLOCK_BYTES) {
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let start = out.len();
        out.resize(start + snap::raw::max_compress_len(chunk.len()), 0);
        // A chunk of at most 32 KiB always fits the buffer sized by max_compress_len.
        let written = encoder
            .compress(chunk, &mut out[start..])
            .expect("snappy output buffer sized by max_compress_len");
        out.truncate(start + written);
        out[len_at..start].copy_from_slice(&(written as i32).to_be_bytes());
    }
    out
}

fn undecodable(compression: Compression, e: &std::io::Error) -> Error {
    Error::CorruptBatch(format!(
        "{} records section does not decompress: {e}",
        compression.name()
    ))
}

fn too_large(size_bytes: usize, limit_bytes: usize) -> Error {
    Error::TooLarge {
        what: "decompressed record batch",
        size_bytes,
        limit_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn every_codec_round_trips() {
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for compression in ALL {
            for input in [&data[..0], &data[..1], &data[..XERIAL_BLOCK_BYTES + 7], &data[..]] {
                let packed = compress(compression, input).unwrap();
                let unpacked = decompress(compression, &packed, input.len()).unwrap();
                assert_eq!(&unpacked[..], input, "{compression:?} len {}", input.len());
            }
        }
    }

    #[test]
    fn decompression_bombs_are_bounded() {
        let zeros = vec![0u8; 10 * 1024 * 1024];
        for compression in ALL {
            let packed = compress(compression, &zeros).unwrap();
            let err = decompress(compression, &packed, 1024 * 1024).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::TooLarge {
                        limit_bytes: 1_048_576,
                        ..
                    }
                ),
                "{compression:?}: {err}"
            );
        }
    }

    #[test]
    fn output_exactly_at_the_bound_is_accepted() {
        let data = vec![7u8; 70_000];
        for compression in ALL {
            let packed = compress(compression, &data).unwrap();
            assert_eq!(decompress(compression, &packed, data.len()).unwrap().len(), data.len());
            assert!(
                decompress(compression, &packed, data.len() - 1).is_err(),
                "{compression:?}"
            );
        }
    }

    #[test]
    fn gzip_of_ten_megabytes_of_zeros_is_too_large_for_one_megabyte() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&vec![0u8; 10 * 1024 * 1024]).unwrap();
        let packed = encoder.finish().unwrap();
        assert!(packed.len() < 20_000);
        let err = decompress(Compression::Gzip, &packed, 1024 * 1024).unwrap_err();
        assert_eq!(
            err.to_string(),
            "decompressed record batch of 1048577 bytes exceeds the limit of 1048576"
        );
    }

    /// A raw snappy block holding `text` as one literal (tag byte `(len - 1) << 2`).
    fn literal_block(text: &[u8]) -> Vec<u8> {
        assert!(!text.is_empty() && text.len() <= 60);
        let mut block = vec![text.len() as u8, ((text.len() - 1) << 2) as u8];
        block.extend_from_slice(text);
        block
    }

    #[test]
    fn hand_built_xerial_snappy_decodes() {
        // Header: magic 0x82 "SNAPPY" 0x00, version 1, minimum compatible version 1.
        let mut framed = vec![0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1];
        for text in [&b"hello "[..], &b"xerial world"[..]] {
            let block = literal_block(text);
            framed.extend_from_slice(&(block.len() as i32).to_be_bytes());
            framed.extend_from_slice(&block);
        }
        let out = decompress(Compression::Snappy, &framed, 1024).unwrap();
        assert_eq!(&out[..], b"hello xerial world");
        // The same header and blocks as Java writes them are what the encoder produces.
        let ours = compress(Compression::Snappy, b"abc").unwrap();
        assert_eq!(&ours[..16], &framed[..16]);
        assert_eq!(
            i32::from_be_bytes(ours[16..20].try_into().unwrap()) as usize,
            ours.len() - 20
        );
    }

    #[test]
    fn raw_snappy_without_framing_decodes() {
        let out = decompress(Compression::Snappy, &literal_block(b"librdkafka"), 1024).unwrap();
        assert_eq!(&out[..], b"librdkafka");
        assert!(matches!(
            decompress(Compression::Snappy, &literal_block(b"librdkafka"), 9),
            Err(Error::TooLarge { .. })
        ));
    }

    #[test]
    fn truncated_xerial_snappy_is_corrupt() {
        let framed = compress(Compression::Snappy, &[5u8; 1000]).unwrap();
        for end in [10, 17, 21, framed.len() - 1] {
            let err = decompress(Compression::Snappy, &framed[..end], 1 << 20).unwrap_err();
            assert!(matches!(err, Error::CorruptBatch(_)), "end {end}: {err}");
        }
    }

    #[test]
    fn garbage_is_corrupt_for_every_codec() {
        for compression in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let err = decompress(compression, &[0xff; 64], 1 << 20).unwrap_err();
            assert!(matches!(err, Error::CorruptBatch(_)), "{compression:?}: {err}");
        }
    }
}

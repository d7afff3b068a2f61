//! Tests of the v2 batch format: golden bytes built by hand, round trips through every codec,
//! and property tests that corruption is detected and that no input makes the decoders panic.

use proptest::prelude::*;

use super::*;

/// One record (key "k", value "v") at offset 0, timestamp 1000, no producer: built by hand.
const GOLDEN_SIMPLE: [u8; 70] = [
    0, 0, 0, 0, 0, 0, 0, 0, // baseOffset 0
    0, 0, 0, 58, // batchLength
    0xff, 0xff, 0xff, 0xff, // partitionLeaderEpoch -1
    2,    // magic
    0x71, 0x6a, 0x61, 0x89, // crc
    0, 0, // attributes
    0, 0, 0, 0, // lastOffsetDelta
    0, 0, 0, 0, 0, 0, 0x03, 0xe8, // baseTimestamp 1000
    0, 0, 0, 0, 0, 0, 0x03, 0xe8, // maxTimestamp 1000
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // producerId -1
    0xff, 0xff, // producerEpoch -1
    0xff, 0xff, 0xff, 0xff, // baseSequence -1
    0, 0, 0, 1,    // recordCount
    0x10, // record length 8
    0, 0, 0, // attributes, timestampDelta 0, offsetDelta 0
    0x02, b'k', 0x02, b'v', // key, value
    0,    // no headers
];

/// Two records of idempotent producer 42 (epoch 3, sequence 7): a null key with the header "h"
/// twice (once null), then a tombstone two milliseconds earlier. Built by hand.
const GOLDEN_IDEMPOTENT: [u8; 84] = [
    0, 0, 0, 0, 0, 0, 0, 0, // baseOffset 0
    0, 0, 0, 72, // batchLength
    0xff, 0xff, 0xff, 0xff, // partitionLeaderEpoch -1
    2,    // magic
    0xf4, 0xf9, 0xdc, 0x1a, // crc
    0, 0, // attributes
    0, 0, 0, 1, // lastOffsetDelta
    0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, // baseTimestamp 1_700_000_000_000
    0, 0, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, // maxTimestamp
    0, 0, 0, 0, 0, 0, 0, 42, // producerId
    0, 3, // producerEpoch
    0, 0, 0, 7, // baseSequence
    0, 0, 0, 2,    // recordCount
    0x1c, // record length 14
    0, 0, 0,    // attributes, timestampDelta 0, offsetDelta 0
    0x01, // null key
    0x02, b'a', // value
    0x04, // two headers
    0x02, b'h', 0x02, b'1', // "h" = "1"
    0x02, b'h', 0x01, // "h" = null
    0x0e, // record length 7
    0, 0x03, 0x02, // attributes, timestampDelta -2, offsetDelta 1
    0x02, b'b', // key
    0x01, // null value
    0,    // no headers
];

fn new_record(
    timestamp_ms: i64,
    key: Option<&str>,
    value: Option<&str>,
    headers: &[(&str, Option<&str>)],
) -> NewRecord {
    let bytes = |s: &str| Bytes::copy_from_slice(s.as_bytes());
    NewRecord {
        timestamp_ms,
        key: key.map(bytes),
        value: value.map(bytes),
        headers: headers.iter().map(|(k, v)| (bytes(k), v.map(bytes))).collect(),
    }
}

fn options(compression: Compression) -> EncodeOptions {
    EncodeOptions {
        base_offset: 0,
        compression,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        transactional: false,
        partition_leader_epoch: -1,
    }
}

const ALL: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

#[test]
fn crc_is_castagnoli() {
    assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
}

#[test]
fn golden_simple_batch_encodes_and_decodes() {
    let encoded = encode_batch(
        &[new_record(1000, Some("k"), Some("v"), &[])],
        &options(Compression::None),
    )
    .unwrap();
    assert_eq!(&encoded[..], &GOLDEN_SIMPLE[..]);
    let headers = validate_batches(&GOLDEN_SIMPLE).unwrap();
    assert_eq!(headers.len(), 1);
    let h = headers[0];
    assert_eq!(
        (h.batch_length, h.crc, h.record_count, h.base_timestamp),
        (58, 0x716a_6189, 1, 1000)
    );
    assert_eq!((h.total_bytes(), h.last_offset(), h.last_sequence()), (70, 0, -1));
    let records = decode_records(&GOLDEN_SIMPLE, 1 << 20).unwrap();
    assert_eq!(
        records,
        vec![Record {
            offset: 0,
            timestamp: 1000,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: vec![]
        }]
    );
}

#[test]
fn golden_idempotent_batch_keeps_duplicate_headers_and_nulls() {
    let records = [
        new_record(1_700_000_000_000, None, Some("a"), &[("h", Some("1")), ("h", None)]),
        new_record(1_699_999_999_998, Some("b"), None, &[]),
    ];
    let options = EncodeOptions {
        producer_id: 42,
        producer_epoch: 3,
        base_sequence: 7,
        ..options(Compression::None)
    };
    let encoded = encode_batch(&records, &options).unwrap();
    assert_eq!(&encoded[..], &GOLDEN_IDEMPOTENT[..]);
    let h = validate_batches(&GOLDEN_IDEMPOTENT).unwrap()[0];
    assert_eq!(
        (h.producer_id, h.producer_epoch, h.base_sequence, h.last_sequence()),
        (42, 3, 7, 8)
    );
    let mut stored = GOLDEN_IDEMPOTENT;
    set_base_offset(&mut stored, 100);
    set_partition_leader_epoch(&mut stored, 9);
    assert!(crc_ok(&stored));
    let decoded = decode_records(&stored, 1 << 20).unwrap();
    assert_eq!(decoded.len(), 2);
    assert_eq!(
        (decoded[0].offset, decoded[0].timestamp, decoded[0].key.clone()),
        (100, 1_700_000_000_000, None)
    );
    let header_values: Vec<_> = decoded[0].headers.iter().map(|(k, v)| (&k[..], v.as_deref())).collect();
    assert_eq!(header_values, vec![(&b"h"[..], Some(&b"1"[..])), (&b"h"[..], None)]);
    assert_eq!(
        (decoded[1].offset, decoded[1].timestamp, decoded[1].value.clone()),
        (101, 1_699_999_999_998, None)
    );
    let err = require_keys(&stored, 1 << 20).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid record: record at offset 100 has no key, which a compacted topic requires"
    );
    require_keys(&GOLDEN_SIMPLE, 1 << 20).unwrap();
}

#[test]
fn every_codec_round_trips_with_duplicate_headers_and_nulls() {
    let records: Vec<NewRecord> = (0..300)
        .map(|i| {
            let key = (i % 3 != 0).then(|| format!("key-{i}"));
            let value = (i % 5 != 0).then(|| "v".repeat(i));
            new_record(
                5000 + (i as i64 % 7),
                key.as_deref(),
                value.as_deref(),
                &[("dup", Some("1")), ("dup", None), ("x", Some(""))],
            )
        })
        .collect();
    for compression in ALL {
        let options = EncodeOptions {
            base_offset: 77,
            transactional: true,
            producer_id: 5,
            producer_epoch: 0,
            base_sequence: 0,
            ..options(compression)
        };
        let batch = encode_batch(&records, &options).unwrap();
        let header = validate_batches(&batch).unwrap()[0];
        assert_eq!(header.compression().unwrap(), compression);
        assert!(header.is_transactional() && !header.is_control() && !header.is_log_append_time());
        assert_eq!(
            (header.record_count, header.last_offset_delta, header.max_timestamp),
            (300, 299, 5006)
        );
        let decoded = decode_records(&batch, 1 << 20).unwrap();
        assert_eq!(decoded.len(), records.len(), "{compression:?}");
        for (i, (got, want)) in decoded.iter().zip(&records).enumerate() {
            assert_eq!(got.offset, 77 + i as i64);
            assert_eq!(got.timestamp, want.timestamp_ms);
            assert_eq!(
                (&got.key, &got.value, &got.headers),
                (&want.key, &want.value, &want.headers),
                "{compression:?} record {i}"
            );
        }
    }
}

#[test]
fn compressed_batches_respect_the_decompression_bound() {
    let records = [new_record(0, Some("k"), Some(&"z".repeat(100_000)), &[])];
    for compression in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let batch = encode_batch(&records, &options(compression)).unwrap();
        let err = decode_records(&batch, 50_000).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{compression:?}: {err}");
    }
}

#[test]
fn log_append_time_sets_max_timestamp_and_keeps_the_crc_valid() {
    let records = [
        new_record(10, Some("a"), None, &[]),
        new_record(30, Some("b"), None, &[]),
    ];
    let mut batch = encode_batch(&records, &options(Compression::Lz4)).unwrap();
    set_log_append_time(&mut batch, 99_999);
    let header = validate_batches(&batch).unwrap()[0];
    assert!(header.is_log_append_time());
    assert_eq!(
        (
            header.base_timestamp,
            header.max_timestamp,
            header.compression().unwrap()
        ),
        (10, 99_999, Compression::Lz4)
    );
    let timestamps: Vec<i64> = decode_records(&batch, 1 << 20)
        .unwrap()
        .iter()
        .map(|r| r.timestamp)
        .collect();
    assert_eq!(timestamps, vec![99_999, 99_999]);
}

#[test]
fn last_sequence_wraps_like_kafka() {
    let mut h = BatchHeader::parse(&GOLDEN_SIMPLE).unwrap();
    h.base_sequence = i32::MAX - 1;
    h.last_offset_delta = 3;
    assert_eq!(h.last_sequence(), 1);
    h.base_sequence = i32::MAX;
    h.last_offset_delta = 0;
    assert_eq!(h.last_sequence(), i32::MAX);
    h.base_sequence = 5;
    assert_eq!(h.last_sequence(), 5);
}

#[test]
fn compression_names_and_ids_agree() {
    for compression in ALL {
        assert_eq!(Compression::from_name(compression.name()), Some(compression));
        assert_eq!(
            Compression::from_attributes(compression.id() | 0x18).unwrap(),
            compression
        );
    }
    assert_eq!(Compression::from_name("brotli"), None);
    assert!(Compression::from_attributes(5).is_err());
}

/// Re-encodes the header fields of a valid batch after `change`, fixing up the CRC.
fn with_header(batch: &[u8], change: impl FnOnce(&mut BatchHeader)) -> Vec<u8> {
    let mut out = batch.to_vec();
    let mut header = BatchHeader::parse(batch).unwrap();
    change(&mut header);
    header.write(&mut out);
    let crc = crc32c::crc32c(&out[ATTRIBUTES_AT..]);
    out[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
    out
}

#[test]
fn validation_applies_kafkas_client_batch_rules() {
    let cases: [(&str, Vec<u8>, &str); 8] = [
        (
            "count",
            with_header(&GOLDEN_SIMPLE, |h| h.record_count = 2),
            "invalid record: batch at byte 0 has lastOffsetDelta 0 inconsistent with its 2 records",
        ),
        (
            "empty",
            with_header(&GOLDEN_SIMPLE, |h| h.record_count = 0),
            "invalid record: batch at byte 0 reports 0 records, at least 1 is required",
        ),
        (
            "control",
            with_header(&GOLDEN_SIMPLE, |h| h.attributes = 0x20),
            "invalid record: batch at byte 0 is a control batch, which clients may not write",
        ),
        (
            "transactional",
            with_header(&GOLDEN_SIMPLE, |h| h.attributes = 0x10),
            "invalid record: batch at byte 0 is transactional but has no producer id",
        ),
        (
            "sequence",
            with_header(&GOLDEN_SIMPLE, |h| h.producer_id = 1),
            "invalid record: batch at byte 0 has producer id 1 but invalid base sequence -1",
        ),
        (
            "codec",
            with_header(&GOLDEN_SIMPLE, |h| h.attributes = 6),
            "corrupt record batch: batch at byte 0: unknown compression codec id 6",
        ),
        (
            "magic",
            with_header(&GOLDEN_SIMPLE, |h| h.magic = 1),
            "corrupt record batch: batch at byte 0 has magic 1, only magic 2 is supported",
        ),
        (
            "length",
            with_header(&GOLDEN_SIMPLE, |h| h.batch_length = 48),
            "corrupt record batch: batch at byte 0 has batchLength 48, below the minimum of 49",
        ),
    ];
    for (name, batch, message) in cases {
        assert_eq!(validate_batches(&batch).unwrap_err().to_string(), message, "{name}");
    }
    let mut two = GOLDEN_SIMPLE.to_vec();
    two.extend_from_slice(&GOLDEN_SIMPLE);
    assert_eq!(validate_batches(&two).unwrap().len(), 2);
    two.push(0);
    assert_eq!(
        validate_batches(&two).unwrap_err().to_string(),
        "corrupt record batch: batch at byte 140 is truncated: 1 bytes remain, a header needs 61"
    );
    assert_eq!(validate_batches(&[]).unwrap(), vec![]);
    let mut bad_crc = GOLDEN_SIMPLE;
    bad_crc[69] ^= 1;
    assert_eq!(
        validate_batches(&bad_crc).unwrap_err().to_string(),
        format!(
            "corrupt record batch: batch at byte 0 has CRC 0x716a6189, its contents give {:#010x}",
            crc32c::crc32c(&bad_crc[21..])
        )
    );
}

#[test]
fn scan_stops_cleanly_at_a_torn_tail() {
    let mut log = GOLDEN_SIMPLE.to_vec();
    log.extend_from_slice(&GOLDEN_IDEMPOTENT);
    for cut in 0..=log.len() {
        let mut scan = scan_headers(&log[..cut]);
        let positions: Vec<usize> = scan.by_ref().map(|item| item.unwrap().0).collect();
        let expected: &[usize] = if cut == log.len() {
            &[0, 70]
        } else if cut >= 70 {
            &[0]
        } else {
            &[]
        };
        assert_eq!(positions, expected, "cut {cut}");
        let stopped_at = [0, 70, log.len()][expected.len()];
        assert_eq!(scan.position(), stopped_at, "cut {cut}");
    }
    let mut bad = log.clone();
    bad[70 + MAGIC_AT] = 0;
    let items: Vec<_> = scan_headers(&bad).collect();
    assert_eq!(items.len(), 2);
    assert!(items[1].is_err());
}

#[test]
fn decode_rejects_records_that_overrun_or_leave_bytes() {
    // Record length 8 claimed as 9, and one byte too many in the section.
    let mut overrun = GOLDEN_SIMPLE;
    overrun[61] = 0x12;
    assert!(decode_records(&overrun, 1 << 20)
        .unwrap_err()
        .to_string()
        .contains("record 0 of the batch: declares 9 bytes"));
    let mut extra = GOLDEN_SIMPLE.to_vec();
    extra.push(0);
    let extra = with_header(&extra, |h| h.batch_length += 1);
    assert_eq!(
        decode_records(&extra, 1 << 20).unwrap_err().to_string(),
        "corrupt record batch: 1 bytes follow the batch's last record (of 1 declared)"
    );
}

/// Strategy for a few records with small random keys, values and (repeating) headers.
fn records_strategy() -> impl Strategy<Value = Vec<NewRecord>> {
    let bytes = || proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20).prop_map(Bytes::from));
    let header = (
        prop_oneof![Just(Bytes::from_static(b"a")), Just(Bytes::from_static(b"b"))],
        bytes(),
    );
    let record = (any::<i32>(), bytes(), bytes(), proptest::collection::vec(header, 0..4)).prop_map(
        |(ts, key, value, headers)| NewRecord {
            timestamp_ms: i64::from(ts),
            key,
            value,
            headers,
        },
    );
    proptest::collection::vec(record, 1..6)
}

fn compression_strategy() -> impl Strategy<Value = Compression> {
    proptest::sample::select(ALL.to_vec())
}

/// A buffer of several valid batches and the byte ranges of each.
fn multi_batch() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    proptest::collection::vec((records_strategy(), compression_strategy()), 1..4).prop_map(|batches| {
        let mut buf = Vec::new();
        let mut starts = Vec::new();
        for (i, (records, compression)) in batches.iter().enumerate() {
            starts.push(buf.len());
            let options = EncodeOptions {
                base_offset: i as i64 * 10,
                ..options(*compression)
            };
            buf.extend_from_slice(&encode_batch(records, &options).unwrap());
        }
        (buf, starts)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_flipped_byte_is_detected_unless_outside_the_crc((buf, starts) in multi_batch(), index in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let at = index.index(buf.len());
        let mut damaged = buf.clone();
        damaged[at] ^= flip;
        let start = *starts.iter().rev().find(|&&s| s <= at).unwrap();
        let within = at - start;
        let outside_crc = within < 8 || (PARTITION_LEADER_EPOCH_AT..MAGIC_AT).contains(&within);
        let result = validate_batches(&damaged);
        prop_assert_eq!(result.is_ok(), outside_crc, "byte {} of batch at {}: {:?}", within, start, result);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = validate_batches(&bytes);
        let _ = decode_records(&bytes, 1 << 16);
        let _ = require_keys(&bytes, 1 << 16);
        let _ = crc_ok(&bytes);
        let _ = scan_headers(&bytes).count();
    }

    #[test]
    fn truncations_are_errors_and_never_panic((buf, starts) in multi_batch(), index in any::<prop::sample::Index>()) {
        let cut = index.index(buf.len());
        prop_assert_eq!(validate_batches(&buf[..cut]).is_ok(), starts.contains(&cut));
        let first = BatchHeader::parse(&buf).unwrap().total_bytes();
        if cut < first {
            prop_assert!(decode_records(&buf[..cut], 1 << 20).is_err());
        }
    }

    #[test]
    fn damaged_records_with_a_fixed_crc_never_panic(records in records_strategy(), compression in compression_strategy(), index in any::<prop::sample::Index>(), value in any::<u8>()) {
        let batch = encode_batch(&records, &options(compression)).unwrap();
        let mut damaged = batch.to_vec();
        let at = HEADER_BYTES + index.index(batch.len() - HEADER_BYTES);
        damaged[at] = value;
        let crc = crc32c::crc32c(&damaged[ATTRIBUTES_AT..]);
        damaged[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
        prop_assert!(validate_batches(&damaged).is_ok());
        let _ = decode_records(&damaged, 1 << 20);
        let _ = require_keys(&damaged, 1 << 20);
    }

    #[test]
    fn encode_then_decode_is_identity(records in records_strategy(), compression in compression_strategy(), base_offset in 0i64..1 << 40) {
        let batch = encode_batch(&records, &EncodeOptions { base_offset, ..options(compression) }).unwrap();
        let header = validate_batches(&batch).unwrap()[0];
        prop_assert_eq!(header.max_timestamp, records.iter().map(|r| r.timestamp_ms).max().unwrap());
        let decoded = decode_records(&batch, 1 << 20).unwrap();
        prop_assert_eq!(decoded.len(), records.len());
        for (i, (got, want)) in decoded.iter().zip(&records).enumerate() {
            prop_assert_eq!(got.offset, base_offset + i as i64);
            prop_assert_eq!(got.timestamp, want.timestamp_ms);
            prop_assert_eq!(&got.key, &want.key);
            prop_assert_eq!(&got.value, &want.value);
            prop_assert_eq!(&got.headers, &want.headers);
        }
    }
}
